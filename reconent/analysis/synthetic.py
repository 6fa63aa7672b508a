"""Synthetic result rows in the documented row schema (docs/CONTRACT.md) with a boundary you choose.

For tests, examples and for checking the analysis without running a sweep. A probe row's normalised profile
is built so that its cutoff at rtol 0.005 is exactly `cutoff` (in units of depth: a cnn/resnet profile has 3
stem layers first), with its decoder budget (`steps`, default 938) and optionally the anytime probe's checkpoints;
a training row's accuracy curve reaches `peak` at its last epoch, or is the curve you give.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from reconent.sweep.columns import SCHEMA_VERSION, point_id


def _common(kind, sweep, dataset, arch, activation, width, channels, depth, sigma_w2, sigma_b2, seed, settings,
            seconds):
    point = dict(kind=kind, dataset=dataset, arch=arch, activation=activation, width=width, channels=channels,
                 depth=int(depth), sigma_w2=float(sigma_w2), sigma_b2=float(sigma_b2), seed=int(seed), **settings)
    pid = point_id(point)  # the same id a real sweep gives this point
    now = pd.Timestamp("2024-06-01", tz="UTC")
    return dict(schema_version=SCHEMA_VERSION, sweep=sweep, point_id=pid, spec_hash="synthetic", **point, status="ok",
                error=None, seconds=float(seconds), device="cpu", node="synthetic", started_at=now,
                finished_at=now + pd.Timedelta(seconds=seconds), reconent_version="0.1.0", torch_version="n/a",
                ray_version="n/a", python_version="3.11", code_version="synthetic")


def profile(depth: int, cutoff: int, drift: float = 0.003) -> np.ndarray:
    """A normalised median profile S_ℓ/S_L (ℓ = 1..depth) whose cutoff is `cutoff` for any rtol in
    (drift, 0.5/(cutoff+1)): a rise to the plateau at `cutoff`, then a slow drift of at most `drift`."""
    l = np.arange(1, depth + 1)
    rise = 1 - 0.5 * np.clip(cutoff + 1 - l, 0, None) / (cutoff + 1)
    tail = drift * np.clip(depth - l, 0, None) / max(depth - cutoff, 1)  # inside the plateau, below drift
    return np.where(l <= cutoff, rise - drift, 1 - tail)


def probe_row(sigma_w2, depth, cutoff, seed=0, sigma_b2=0.05, dataset="mnist5k", arch="mlp", activation="tanh",
              width=784, channels=None, rtol=0.005, seconds=10.0, sweep="synthetic", status="ok", steps=938,
              epochs=None, steps_run=None, checkpoints=None) -> dict:
    """A probe row whose final profile has cutoff `cutoff`. The decoder budget is `steps` Adam steps (the
    `steps` setting, `epochs` null), or, with steps=None, `epochs` passes (`steps_run` then defaults to 63 per
    pass: the 4,000-image mnist5k in batches of 64). `checkpoints` {steps: cutoff} adds the anytime probe's
    readings on the way (`checkpoint_steps`, `checkpoint_norm_median` from `profile()`); the final budget
    is always the last checkpoint, with `cutoff`."""
    from reconent.science import archs

    stem = archs.get(arch).stem  # cnn/resnet profiles also cover the conv stem
    if steps is None and epochs is None:
        epochs = 1
    run = int(steps if steps is not None else (steps_run if steps_run is not None else 63 * epochs))
    r = profile(depth + stem, cutoff + stem)
    S = 0.5 * r  # S_L = 0.5 nats
    ck = None
    if checkpoints:
        ck = {int(k): int(v) for k, v in checkpoints.items() if int(k) < run}
        ck[run] = int(cutoff)
    d = _common("probe", sweep, dataset, arch, activation, width, channels, depth, sigma_w2, sigma_b2, seed,
                dict(epochs=epochs, steps=steps, checkpoints=",".join(map(str, sorted(ck))) if ck else "none",
                     batch_size=64, lr=1e-3, rtol=rtol, train_samples=4000, eval_samples=500), seconds)
    return dict(d, status=status, cutoff=cutoff, relative_entropy_median=list(S), relative_entropy_mean=list(S),
                relative_entropy_q25=list(0.9 * S), relative_entropy_q75=list(1.1 * S),
                relative_entropy_norm_median=list(r), differential_entropy=list(-7.0 + np.log(r)),
                decoder_loss=[0.01] * (depth + stem), steps_run=run,
                checkpoint_steps=sorted(ck) if ck else None,
                checkpoint_norm_median=[list(profile(depth + stem, c + stem)) for _, c in sorted(ck.items())]
                if ck else None,
                train_seconds=0.8 * seconds, path="stacked")


def train_row(sigma_w2, depth, peak=None, seed=0, epochs=5, threshold=0.8, stop_early=True, sigma_b2=0.05,
              dataset="mnist5k", arch="mlp", activation="tanh", width=784, channels=None, seconds=100.0,
              sweep="synthetic", status="ok", curve=None) -> dict:
    """Accuracy climbs linearly to `peak` at the last epoch, or follows `curve` (accuracy after each epoch, at
    most `epochs` of them); with stop_early the run ends at the first epoch above `threshold`, as
    reconent.train does."""
    if curve is None:
        if peak is None:
            raise ValueError("train_row needs a peak accuracy or an explicit curve")
        acc = list(np.linspace(0.1, peak, epochs))
    else:
        acc = [float(a) for a in curve]
        if not 1 <= len(acc) <= epochs:
            raise ValueError(f"a curve has 1 .. epochs ({epochs}) accuracies, got {len(acc)}")
    if stop_early and any(a > threshold for a in acc):
        acc = acc[:next(i for i, a in enumerate(acc) if a > threshold) + 1]
    d = _common("train", sweep, dataset, arch, activation, width, channels, depth, sigma_w2, sigma_b2, seed,
                dict(epochs=epochs, threshold=threshold, lr=1e-3, batch_size=64, train_samples=4000,
                     accuracy_on="test"), seconds * len(acc) / epochs)
    return dict(d, status=status, accuracy=acc, train_loss=[2.3 - a for a in acc], epochs_run=len(acc),
                reached=bool(acc[-1] > threshold), final_accuracy=acc[-1])


def grid(boundary: dict, probe_depth: int, train_depths, seeds=(0,), probe_kw=None, train_kw=None, **kw):
    """Probe and training frames for a known boundary {σ_w²: L*}: one probe of `probe_depth` per σ_w² and seed
    with cutoff L*, and training at each depth that reaches 0.9 when depth <= L* and stalls at 0.2 otherwise.
    `kw` goes to both row makers; `probe_kw` (e.g. steps, checkpoints) and `train_kw` (e.g. epochs) to one."""
    pk, tk = dict(kw, **(probe_kw or {})), dict(kw, **(train_kw or {}))
    probes = [probe_row(w, probe_depth, c, seed=s, **pk) for w, c in boundary.items() for s in seeds]
    trains = [train_row(w, d, 0.9 if d <= c else 0.2, seed=s, **tk) for w, c in boundary.items()
              for d in train_depths for s in seeds]
    return pd.DataFrame(probes), pd.DataFrame(trains)
