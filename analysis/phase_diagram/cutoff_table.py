"""The measurement behind the probe's evaluation settings (docs/performance.md, "Deep probes").

For the wide tanh MLP on mnist5k at depth 200 and σ_b² = 0.05, for each σ_w² in 0.5, 1.2, 1.76, 3.0: train
the decoders once, then reconstruct 500 held-out samples from every depth (the reference: exhaustive,
float64 entropies on 500 samples) and compare the cutoff the reference gives with
- float32 entropies on the same reconstructions;
- 100 and 200 samples (20 random subsets of the 500 each: min, median, max of the cutoff);
- eval_depths=search (its grid and refinement replayed on the reference profile, and run for real to time it).
Writes cutoff_table.json next to this file; prints one line per σ_w². Run from the repository root:
    .venv/bin/python analysis/phase_diagram/cutoff_table.py [--depth 200]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from reconent.science import archs, data
from reconent.science import probe as P
from reconent.science.entropy import as_distribution, cutoff_from_normalised, kl, normalised

RTOL = 0.005


def cutoff(S: np.ndarray) -> int:
    return cutoff_from_normalised(np.median(normalised(S), axis=1), RTOL)


@torch.no_grad()
def reconstructions(body, decoders, x: torch.Tensor, chunk: int = 100) -> torch.Tensor:
    """x̂ from every depth, (L, N, w), float32: the cascades of `probe._evaluate_levels`, kept."""
    L, out = len(body), []
    for i in range(0, len(x), chunk):
        hs = body.activations(x[i:i + chunk])
        partial = None
        for k in range(L, 0, -1):
            cur = hs[k].unsqueeze(0) if partial is None else torch.cat([hs[k].unsqueeze(0), partial])
            m, n = cur.shape[:2]
            partial = decoders[k - 1](cur.reshape(m * n, -1)).reshape(m, n, -1)
        out.append(partial)
    return torch.cat(out, dim=1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--depth", type=int, default=200)
    ap.add_argument("--sigma-w2", type=float, nargs="+", default=[0.5, 1.2, 1.76, 3.0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("cutoff_table.json")))
    a = ap.parse_args()
    d = data.load("mnist5k", None, False)
    rows = []
    for sw in a.sigma_w2:
        body = archs.build("mlp", a.depth, d.shape, seed=0, sigma_w2=sw, sigma_b2=0.05, activation="tanh", width=None)
        load0, cpu0, t0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
        # 63 decoder steps (one pass over mnist5k), the budget cutoff_table.json was measured at; eval here is trivial
        r = P.probe(body, d.train_x, d.test_x, epochs=1, checkpoints="none", eval_samples=2)
        train_s, train_cpu = r.train_seconds, time.process_time() - cpu0
        gen = P.stream(0, 0, P.DATA)  # the probe's own choice of the 500 evaluation samples
        x = d.test_x[torch.randperm(len(d.test_x), generator=gen)[:500]].reshape(500, -1)
        frozen = body.eval().requires_grad_(False)
        cpu1, t1 = time.process_time(), time.perf_counter()
        xh = reconstructions(frozen, r.decoders, x)
        S64 = kl(as_distribution(x)[None], as_distribution(xh.reshape(-1, xh.shape[-1])).reshape(xh.shape[0], 500, -1))
        all_s, all_cpu = time.perf_counter() - t1, time.process_time() - cpu1
        S32 = kl(as_distribution(x, dtype=torch.float32)[None],
                 as_distribution(xh.reshape(-1, xh.shape[-1]), dtype=torch.float32).reshape(xh.shape[0], 500, -1))
        S64, S32 = S64.numpy(), S32.double().numpy()
        ref = cutoff(S64)
        rng = np.random.default_rng(0)
        sub = {n: [cutoff(S64[:, rng.choice(500, n, replace=False)]) for _ in range(20)] for n in (100, 200)}
        search_replayed, _ = P.search_replay(np.median(normalised(S64), axis=1), RTOL)
        cpu2, t2 = time.process_time(), time.perf_counter()
        S_s, _, _, ev = P._evaluate(frozen, r.decoders, x, torch.device("cpu"), 0, 256, "search", "float64", RTOL)
        search_s, search_cpu = time.perf_counter() - t2, time.process_time() - cpu2
        search_run = cutoff_from_normalised(np.where(ev, np.median(normalised(S_s), axis=1), np.nan), RTOL,
                                            skip_nan=True)
        row = {"sigma_w2": sw, "depth": a.depth, "cutoff_reference": ref, "cutoff_float32": cutoff(S32),
               "max_abs_S_float32_vs_64": float(np.abs(S32 - S64).max()),
               **{f"cutoff_{n}_samples_min_median_max": [int(min(v)), int(np.median(v)), int(max(v))]
                  for n, v in sub.items()},
               "cutoff_search_replayed": search_replayed, "cutoff_search_run": search_run,
               "search_layers_evaluated": int(ev.sum()),
               "norm_median_reference": [float(v) for v in np.median(normalised(S64), axis=1)],
               "train_seconds": train_s, "train_cpu_seconds": train_cpu,
               "eval_all_500_seconds": all_s, "eval_all_500_cpu_seconds": all_cpu,
               "eval_search_500_seconds": search_s, "eval_search_500_cpu_seconds": search_cpu,
               "load_average_at_start": load0, "threads": torch.get_num_threads()}
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "norm_median_reference"}), flush=True)
        Path(a.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
