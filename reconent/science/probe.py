"""The cascade probe (SCIENCE §2): how much of the input survives to each layer of an untrained body.

One decoder g_ℓ: h_ℓ → h_{ℓ-1} per layer, each trained with its own Adam on MSE(g_ℓ(h_ℓ), h_{ℓ-1}) while the
body stays frozen, for a budget of `steps` mini-batch steps (default `DEFAULT_STEPS` = 938, one epoch of the
60,000-image MNIST at batch 64; `epochs=N` is N passes over the split at hand). A split smaller than the budget
is cycled in reshuffled passes. Then x̂^(ℓ) = g_1 ∘ … ∘ g_ℓ(h_ℓ) on held-out samples gives the relative-entropy
profile S_ℓ and the cutoff. The cutoff depends on the budget, so the probe can also read the profile at
`checkpoints` on the way (the anytime probe): one training, a cutoff per budget.

`probe` is a plain function: no Ray, no files. It has two training paths with the same maths:
- stacked: when every block is a Dense layer of the same square width (the paper's wide MLP),
  all decoders live in one (L, w, w) tensor, their forward is one batched matmul, their
  gradients are written by hand and one fused Adam steps the whole stack. This is the hot loop
  of every sweep (measured figures in docs/performance.md; rerun with `reconent bench probe`).
- generic: any blocks with any decoders, through autograd. Summing the per-layer losses and
  calling backward once gives each decoder exactly its own gradient, since no gradient flows
  between layers, and Adam is elementwise, so one optimiser over all decoders equals one each.
When the split is cycled, the frozen body's activations of the whole split are computed once and gathered
per mini-batch (`cache`), which saves the body's forward matmul in every later pass.
"""
from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.adam import adam as _adam  # Adam's functional form (_StackAdam)

from reconent.errors import UserError

from .budget import (DEFAULT_STEPS, checkpoints_text, default_checkpoints, parse_checkpoints,  # noqa: F401
                     resolve_steps, steps_per_pass)
from .entropy import as_distribution, cutoff_from_normalised, differential_entropy_rows, kl, normalised
from . import archs, models
from .models import DATA, Body, Dense, stream
from .settings import ENTROPY_DTYPES, EVAL_DEPTHS, PROBE  # noqa: F401 -- EVAL_DEPTHS, ENTROPY_DTYPES re-exported

# The body's activations h_0..h_L of the whole training split are kept (`cache=None`) only below this size:
# depth 200 × 4,000 images × 784 × 4 B ≈ 2.5 GB fits; the 60,000-image MNIST at depth 200 would not (and is
# not cycled at the default budget anyway).
CACHE_BYTES = 4 * 2**30


@dataclass
class ProbeResult:
    relative_entropy: np.ndarray  # (L, n_eval): S_ℓ per held-out sample, nats
    differential_entropy: np.ndarray  # (L,)
    decoder_loss: np.ndarray  # (L,) mean training MSE per decoder over the last pass that ran (maybe partial)
    steps_run: int  # mini-batch steps each decoder took: the budget
    seconds: float  # wall time of the whole probe
    train_seconds: float  # wall time of the decoder training (the hot loop), checkpoint evaluations excluded
    device: str
    path: str  # "stacked" or "generic"
    rtol: float
    examples: np.ndarray  # (L+1, n_show, *in_shape): the inputs, then x̂^(1..L) for a few samples (NaN: not evaluated)
    decoders: nn.ModuleList = field(repr=False)
    evaluated: np.ndarray | None = None  # (L,) bool: layers whose cascade ran (eval_depths); None: all
    settings: dict = field(default_factory=dict)  # the evaluation settings, for the summary
    checkpoint_steps: list[int] | None = None  # steps at which the cascade was evaluated, ascending; last: steps_run
    checkpoint_norm_median: np.ndarray | None = None  # (n_checkpoints, L); NaN: not evaluated; last: norm_median
    checkpoint_evaluated: np.ndarray | None = None  # (n_checkpoints, L) bool; last: evaluated
    checkpoint_seconds: float = 0.0  # wall time of the intermediate evaluations
    cached: bool = False  # whether the body's activations of the split were computed once and reused

    def __post_init__(self):
        if self.evaluated is None:
            self.evaluated = np.ones(self.depth, dtype=bool)
        if self.checkpoint_steps is None:  # only the final reading
            self.checkpoint_steps = [self.steps_run]
            self.checkpoint_norm_median = self.norm_median[None]
            self.checkpoint_evaluated = self.evaluated[None]

    @property
    def depth(self) -> int:
        return self.relative_entropy.shape[0]

    @property
    def status(self) -> str:
        """'diverged' when any entropy or loss is not finite; that is a result, not an error."""
        ok = np.isfinite(self.relative_entropy[self.evaluated]).all() and np.isfinite(self.decoder_loss).all()
        return "ok" if ok else "diverged"

    def quantile(self, q: float) -> np.ndarray:
        return np.quantile(self.relative_entropy, q, axis=1)

    @property
    def median(self) -> np.ndarray:
        return np.median(self.relative_entropy, axis=1)

    @property
    def mean(self) -> np.ndarray:
        return self.relative_entropy.mean(axis=1)

    @property
    def norm_median(self) -> np.ndarray:
        """Median over samples of S_ℓ/S_L: enough to re-derive the cutoff for any rtol later."""
        return np.median(normalised(self.relative_entropy), axis=1)

    def cutoff(self, rtol: float | None = None) -> int:
        return _cutoff(self.norm_median, self.evaluated, self.rtol if rtol is None else rtol)

    def checkpoint_cutoff(self, i: int | str | None = None, rtol: float | None = None, *,
                          steps: int | None = None) -> int:
        """The cutoff read at one checkpoint: `i` an index into `checkpoint_steps` (an int, negative from the
        end) or its step count as a string (a key of `cutoff_by_steps`), or `steps=k`."""
        if (i is None) == (steps is None):
            raise ValueError("give a checkpoint index, its steps as a string, or steps=k")
        if isinstance(i, str):
            steps = int(i)
        if steps is not None:
            if steps not in self.checkpoint_steps:
                raise ValueError(f"no checkpoint at {steps} steps; checkpoints: {self.checkpoint_steps}")
            i = self.checkpoint_steps.index(steps)
        rtol = self.rtol if rtol is None else rtol
        return _cutoff(self.checkpoint_norm_median[i], self.checkpoint_evaluated[i], rtol)

    def cutoff_by_steps(self, rtol: float | None = None) -> dict[str, int]:
        """{steps: cutoff} at every checkpoint, ascending; the last is the probe's own budget and `cutoff()`."""
        return {str(k): self.checkpoint_cutoff(i, rtol) for i, k in enumerate(self.checkpoint_steps)}

    def summary(self) -> dict:
        """JSON-ready numbers (lists per layer, layer 1 first)."""
        ev = self.evaluated
        # layers whose cascade did not run (eval_depths: search) are None (null in Parquet and JSON)
        f = lambda a, ev=ev: [float(v) if ev[i] else None for i, v in enumerate(a)]  # noqa: E731
        return {
            "status": self.status, "layers": self.depth, "cutoff": self.cutoff(), "rtol": self.rtol,
            "relative_entropy_median": f(self.median), "relative_entropy_mean": f(self.mean),
            "relative_entropy_q25": f(self.quantile(0.25)), "relative_entropy_q75": f(self.quantile(0.75)),
            "relative_entropy_norm_median": f(self.norm_median),
            "differential_entropy": f(self.differential_entropy),
            "decoder_loss": [float(v) for v in self.decoder_loss],
            "eval_samples": int(self.relative_entropy.shape[1]), "steps_run": self.steps_run,
            "checkpoint_steps": [int(k) for k in self.checkpoint_steps],
            "checkpoint_norm_median": [f(r, e) for r, e in zip(self.checkpoint_norm_median, self.checkpoint_evaluated)],
            "cutoff_by_steps": self.cutoff_by_steps(),
            "seconds": self.seconds, "train_seconds": self.train_seconds, "checkpoint_seconds": self.checkpoint_seconds,
            "eval_seconds": self.seconds - self.train_seconds - self.checkpoint_seconds,
            "device": self.device, "path": self.path, "evaluated_layers": int(self.evaluated.sum()),
            "cached": bool(self.cached), **self.settings,
        }


def _cutoff(norm_median: np.ndarray, evaluated: np.ndarray, rtol: float) -> int:
    r = np.array(norm_median, dtype=float)
    r[evaluated & np.isnan(r)] = np.inf  # a NaN where the cascade ran: off the plateau (diverged)
    r[~evaluated] = np.nan
    return cutoff_from_normalised(r, rtol, skip_nan=not evaluated.all())


def probe(body: Body, train_x: torch.Tensor, eval_x: torch.Tensor, *, steps: int | None = None,
          epochs: int | None = None, checkpoints=PROBE.checkpoints, batch_size: int = PROBE.batch_size,
          lr: float = PROBE.lr, rtol: float | None = None, train_samples: int | None = None,
          eval_samples: int | None = None, device: str | torch.device = "cpu", stacked: bool | None = None,
          n_show: int = 8, eval_chunk: int = 256, per_chunk: int = 8, eval_depths: str = PROBE.eval_depths,
          entropy_dtype: str = PROBE.entropy_dtype, tf32: bool = PROBE.tf32,
          cache: bool | None = None) -> ProbeResult:
    """Train the decoder cascade of `body` and measure its entropy profile on `eval_x`.

    train_x/eval_x: any shape (N, ...) whose per-sample size matches body.in_shape, pixels in [0, 1].
    The budget: `steps` mini-batch steps, or `epochs` passes over the (subset) training split (N passes of
    ceil(n/batch_size) steps each, the same as steps = N·ceil(n/batch_size)); neither: `DEFAULT_STEPS`. Pass k
    uses the k-th `randperm` of the body's DATA stream, all drawn up front; a `steps` budget may end inside a
    pass. The mini-batch order and any subsetting come from the body's seed, so the result is deterministic for
    a given seed on CPU. `stacked=None` picks the stacked path when it applies.

    checkpoints: "auto" (steps/16, steps/4, steps), "none" (None, []) or steps such as [58, 234] or "58,234,938"
    (the budget itself is always the last). At each one before the end, training pauses and the cascade is
    evaluated with `eval_depths="search"` on the same held-out samples; only its normalised median profile is
    kept (`checkpoint_norm_median`, `cutoff_by_steps`). The evaluation touches neither the decoders nor the
    batch order: the final decoders are those of a probe without checkpoints.

    cache: keep the frozen body's activations of the whole split and gather each mini-batch's rows instead of
    recomputing the body (None: when the split is cycled and they take at most `CACHE_BYTES`). The decoders
    are the same to float32 rounding either way.

    The caller's `body` is left as it was (device, requires_grad, train/eval mode): the probe
    moves and freezes a copy of it.
    """
    t0 = time.perf_counter()
    rtol = archs.rtol(body.arch, rtol)
    device = models.device(device)
    if batch_size < 1 or lr <= 0 or per_chunk < 1:
        raise UserError(f"need batch_size >= 1, lr > 0, per_chunk >= 1; got {batch_size}, {lr}, {per_chunk}")
    if eval_depths not in EVAL_DEPTHS:  # checked before the training, not after it
        raise UserError(f"eval_depths must be one of {EVAL_DEPTHS}, got {eval_depths!r}")
    if entropy_dtype not in ENTROPY_DTYPES:
        raise UserError(f"entropy_dtype must be one of {ENTROPY_DTYPES}, got {entropy_dtype!r}")
    gen = stream(body.seed, 0, DATA)
    train_x = _subset(train_x, train_samples, gen).reshape(-1, *body.in_shape)
    eval_x = _subset(eval_x, eval_samples, gen).reshape(-1, *body.in_shape)
    if len(train_x) == 0 or len(eval_x) < 2:
        raise UserError(f"need >= 1 training and >= 2 evaluation samples, got {len(train_x)} and {len(eval_x)}")
    total = resolve_steps(steps, epochs, len(train_x), batch_size)
    marks = parse_checkpoints(checkpoints, total)  # ascending, the last is `total`
    body = copy.deepcopy(body).to(device).eval().requires_grad_(False)  # the caller's body stays as it was
    if device.type == "cuda":  # the data lives on the device: one upload, every batch gathered there
        train_x, eval_x = train_x.to(device), eval_x.to(device)
    can_stack = _stackable(body)
    if stacked and not can_stack:
        raise ValueError("stacked=True needs a body of Dense layers that all have the same square width")
    use_stacked = can_stack if stacked is None else stacked

    order = pass_orders(gen, len(train_x), batch_size, total)  # drawn up front, as always
    use_cache = _use_cache(cache, body, train_x, batch_size, total, device)
    readings, ck_seconds = [], 0.0  # (normalised median, evaluated) per intermediate checkpoint

    def at_checkpoint(decoders: nn.ModuleList, k: int) -> None:
        nonlocal ck_seconds
        if device.type == "cuda":  # the training's queued work is the training's time
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        S, _, _, ev = _evaluate(body, decoders, eval_x, device, 0, eval_chunk, "search", entropy_dtype, rtol)
        readings.append((np.median(normalised(S), axis=1), ev))
        ck_seconds += time.perf_counter() - t

    with _tf32(device, tf32):
        t1 = time.perf_counter()
        train = _train_generic if not use_stacked else _train_stacked_cuda if device.type == "cuda" else _train_stacked
        decoders, losses, steps_run = train(body, train_x, order, batch_size, lr, device, per_chunk, total,
                                            marks[:-1], at_checkpoint, use_cache)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t1 - ck_seconds
        S, H, examples, evaluated = _evaluate(body, decoders, eval_x, device, n_show, eval_chunk, eval_depths,
                                              entropy_dtype, rtol)
    norm = np.stack([r for r, _ in readings] + [np.median(normalised(S), axis=1)])
    ck_evaluated = np.stack([e for _, e in readings] + [evaluated])
    settings = {"eval_depths": eval_depths, "entropy_dtype": entropy_dtype, "tf32": bool(tf32),
                "checkpoints": checkpoints_text(checkpoints)}
    return ProbeResult(S, H, losses, steps_run, time.perf_counter() - t0, train_seconds, str(device),
                       "stacked" if use_stacked else "generic", rtol, examples, decoders.cpu(), evaluated, settings,
                       list(marks), norm, ck_evaluated, ck_seconds, use_cache)


@contextlib.contextmanager
def _tf32(device: torch.device, on: bool):
    """TF32 for matmuls and cuDNN convolutions on CUDA exactly as the setting says, restored on exit."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = bool(on)
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _subset(x: torch.Tensor, n: int | None, gen: torch.Generator) -> torch.Tensor:
    if n is None or n >= len(x):
        return x
    if n < 1:
        raise UserError(f"sample counts must be >= 1, got {n}")
    return x[torch.randperm(len(x), generator=gen)[:n]]


def pass_orders(gen: torch.Generator, n: int, batch_size: int, steps: int) -> list[torch.Tensor]:
    """One `torch.randperm(n, generator=gen)` per pass a budget of `steps` needs, all drawn up front (the
    probe draws them from the body's DATA stream after its subsets)."""
    return [torch.randperm(n, generator=gen) for _ in range(-(-steps // steps_per_pass(n, batch_size)))]


def step_schedule(order: list[torch.Tensor], batch_size: int, steps: int) -> list[torch.Tensor]:
    """The sample indices of each of `steps` mini-batch steps: pass k's batches are consecutive slices of
    order[k], the last one of a pass possibly smaller. The training loops follow exactly this schedule."""
    per_pass = steps_per_pass(len(order[0]), batch_size)
    return [order[s // per_pass][(s % per_pass) * batch_size:(s % per_pass + 1) * batch_size] for s in range(steps)]


def _plan(order: list[torch.Tensor], batch_size: int, per_chunk: int, steps: int, cuts=()):
    """`step_schedule` in chunks: yield (in the last pass that runs, the chunk's sample indices, its number of
    mini-batches). A chunk holds up to `per_chunk` consecutive batches of one pass and ends at `steps` and at
    every step count in `cuts` (the CUDA graph path stops exactly there for a checkpoint). The body is frozen,
    so its forward for a chunk runs as one larger matmul (M = per_chunk·batch): at M = 64 a CPU GEMM reaches
    only about half of its peak."""
    per_pass = steps_per_pass(len(order[0]), batch_size)
    ends = sorted({k for k in cuts if 0 < k < steps} | {steps})
    done = 0
    for e, perm in enumerate(order):
        last = (e + 1) * per_pass >= steps
        j = 0
        while j < per_pass and done < steps:
            k = min(per_chunk, per_pass - j, next(t for t in ends if t > done) - done)
            yield last, perm[j * batch_size:(j + k) * batch_size], k
            j, done = j + k, done + k
        if done >= steps:
            return


def _slices(n: int, batch_size: int) -> list[slice]:
    return [slice(j, min(j + batch_size, n)) for j in range(0, n, batch_size)]


def _budget(x, order, batch_size, steps) -> int:
    return len(order) * steps_per_pass(len(x), batch_size) if steps is None else steps


def _use_cache(cache: bool | None, body: Body, x: torch.Tensor, batch_size: int, steps: int, device) -> bool:
    if cache is not None:
        return bool(cache)
    if steps <= steps_per_pass(len(x), batch_size):  # one pass: each activation is used once anyway
        return False
    with torch.no_grad():
        per_sample = sum(h[0].numel() for h in body.activations(x[:1].to(device)))
    return 4 * per_sample * len(x) <= CACHE_BYTES


def _activations(body: Body, x: torch.Tensor, device, chunk: int = 512) -> list[torch.Tensor]:
    """[h_0, ..., h_L] of the whole split on `device` (the generic path's cache), computed in chunks."""
    out = None
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            hs = body.activations(x[i:i + chunk].to(device))
            if out is None:
                out = [torch.empty(len(x), *h.shape[1:], dtype=h.dtype, device=device) for h in hs]
            for o, h in zip(out, hs):
                o[i:i + len(h)] = h
    return out


def _stacked_activations(body: Body, x: torch.Tensor, device, chunk: int = 512) -> torch.Tensor:
    """(L+1, n, w): h_0..h_L of the whole split for a stackable body, with the training loop's addmm and
    in-place activation."""
    L, w, n = len(body), body[0].n_in, len(x)
    A = torch.empty(L + 1, n, w, device=device)
    Wt, bs, phis = [b.weight.t() for b in body], [b.bias for b in body], [_INPLACE[b.act] for b in body]
    with torch.no_grad():
        for i in range(0, n, chunk):
            m = min(chunk, n - i)
            A[0, i:i + m].copy_(x[i:i + m].reshape(m, w))
            for l in range(L):
                phis[l](torch.addmm(bs[l], A[l, i:i + m], Wt[l], out=A[l + 1, i:i + m]))
    return A


def _train_generic(body: Body, x, order, batch_size, lr, device, per_chunk, steps=None, at=(), on_checkpoint=None,
                   cache=False):
    """Any body, through autograd. The body's forward runs per chunk of `per_chunk` batches, or once for the
    whole split (`cache`)."""
    steps, at = _budget(x, order, batch_size, steps), set(at)
    decoders = body.decoders().to(device)
    opt = torch.optim.Adam(list(decoders.parameters()), lr=lr, **_fast_adam(device))
    acts = _activations(body, x, device) if cache else None
    loss_sum, n_last, done = torch.zeros(len(body), device=device, dtype=torch.float64), 0, 0
    for last, idx, _ in _plan(order, batch_size, per_chunk, steps):
        if acts is None:
            with torch.no_grad():
                hs_chunk = body.activations(x[idx.to(x.device)].to(device))
        else:
            i = idx.to(device)
            hs_chunk = [h[i] for h in acts]
        for sl in _slices(len(idx), batch_size):
            hs = [h[sl] for h in hs_chunk]
            # Mean-squared error per decoder (nn.MSELoss's mean); independent layers, one backward.
            losses = torch.stack([torch.mean((g(h_out) - h_in) ** 2) for g, h_in, h_out in zip(decoders, hs, hs[1:])])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            done += 1
            if last:
                loss_sum += losses.detach().double()
                n_last += 1
            if done in at:
                mode = decoders.training
                on_checkpoint(decoders, done)
                decoders.train(mode)  # the evaluation sets eval mode
    return decoders, (loss_sum / n_last).cpu().numpy(), done


def _stackable(body: Body) -> bool:
    blocks = list(body)
    return all(isinstance(b, Dense) and b.n_in == b.n_out == blocks[0].n_in for b in blocks)


def _fast_adam(device: torch.device) -> dict:
    # fused Adam is ~8x faster than foreach on CPU for the stacked decoders (docs/performance.md).
    return {"fused": True} if device.type in ("cpu", "cuda") else {}


_INPLACE = {"tanh": torch.Tensor.tanh_, "relu": torch.Tensor.relu_}


class _StackAdam:
    """`torch.optim.Adam(params, lr)` for the stacked decoders (defaults: betas (0.9, 0.999), eps 1e-8), stepped
    through its functional form `torch.optim.adam.adam`: the same kernel and the same numbers, without
    `torch.optim.Optimizer`, whose first use imports torch._dynamo (about 1 s of a CPU probe).
    tests/test_probe.py checks the stacked path against the generic one, which uses torch.optim.Adam."""

    def __init__(self, params: list[torch.Tensor], lr: float, device: torch.device):
        self.params, self.lr, self.fused = params, lr, _fast_adam(device).get("fused")
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device if self.fused else "cpu") for p in params]

    def step(self) -> None:
        _adam(self.params, [p.grad for p in self.params], self.m, self.v, [], self.steps,
              fused=self.fused, amsgrad=False, beta1=0.9, beta2=0.999, lr=self.lr, weight_decay=0.0,
              eps=1e-8, maximize=False)


def _stack_decoders(body: Body, device):
    """The decoders' initial weights as (L, w, w) and (L, w) leaves, and the modules as views of them: the
    views follow the training, so a checkpoint evaluates them without a copy."""
    init = body.decoders()  # same streams and init as the generic path
    D = torch.stack([g.weight.data for g in init]).to(device).requires_grad_(True)  # (L, w, w)
    c = torch.stack([g.bias.data for g in init]).to(device).requires_grad_(True)  # (L, w)
    for l, g in enumerate(init):
        g.weight, g.bias = nn.Parameter(D[l].detach()), nn.Parameter(c[l].detach())
    return init, D, c


def _train_stacked(body: Body, x, order, batch_size, lr, device, per_chunk, steps=None, at=(), on_checkpoint=None,
                   cache=False):
    """The wide-MLP hot loop: every decoder at once, gradients by hand, one fused Adam step.

    For decoder ℓ with input h = h_ℓ and target t = h_{ℓ-1} (batch B, width w):
        y = tanh(h Dᵀ + c),   loss = mean((y − t)²) over B·w,
        dz = (y − t)(1 − y²),   dD = (2/(B·w)) dzᵀ h,   dc = (2/(B·w)) Σ_batch dz.
    Without `cache` the body's forward runs per chunk of `per_chunk` batches (one larger matmul); with it,
    h_0..h_L of the whole split are computed once and each batch's rows gathered.
    """
    steps, at = _budget(x, order, batch_size, steps), set(at)
    L, w = len(body), body[0].n_in
    init, D, c = _stack_decoders(body, device)
    D.grad, c.grad = torch.empty_like(D), torch.empty_like(c)  # written whole every step
    opt = _StackAdam([D, c], lr, device)
    Wt, bs, phis = [b.weight.t() for b in body], [b.bias for b in body], [_INPLACE[b.act] for b in body]
    A = _stacked_activations(body, x, device) if cache else None
    H = torch.empty(L + 1, batch_size * per_chunk if A is None else 0, w, device=device)  # h_0..h_L of a chunk
    G: dict[int, torch.Tensor] = {}  # batch size -> gathered h_0..h_L of one batch (cache)
    Y = torch.empty(L, batch_size, w, device=device)
    R = torch.empty(L, batch_size, w, device=device)
    loss_sum, n_last, done = torch.zeros(L, device=device, dtype=torch.float64), 0, 0
    with torch.no_grad():
        for last, idx, _ in _plan(order, batch_size, per_chunk, steps):
            n = len(idx)
            if A is None:
                H[0, :n].copy_(x[idx.to(x.device)].to(device).reshape(n, w))
                for l in range(L):
                    phis[l](torch.addmm(bs[l], H[l, :n], Wt[l], out=H[l + 1, :n]))
            for sl in _slices(n, batch_size):
                B = sl.stop - sl.start
                if A is None:
                    h = H[:, sl]
                else:
                    if B not in G:
                        G[B] = torch.empty(L + 1, B, w, device=device)
                    h = torch.index_select(A, 1, idx[sl].to(device), out=G[B])
                y, r = Y[:, :B], R[:, :B]  # the last batch of a pass may be smaller
                torch.baddbmm(c.unsqueeze(1), h[1:], D.transpose(1, 2), out=y).tanh_()
                torch.sub(y, h[:-1], out=r)
                if last:
                    loss_sum += torch.linalg.vector_norm(r, dim=(1, 2)).double().square_() / (B * w)  # fp32 norm: 40× faster
                    n_last += 1
                torch.addcmul(r, r, y.mul_(y), value=-1.0, out=r)  # dz = r(1 − y²), in place
                scale = 2.0 / (B * w)
                for l in range(L):  # a per-layer mm beats one bmm with K = B (docs/performance.md)
                    torch.addmm(D.grad[l], r[l].t(), h[l + 1], beta=0.0, alpha=scale, out=D.grad[l])
                torch.sum(r, dim=1, out=c.grad).mul_(scale)
                opt.step()
                done += 1
                if done in at:
                    on_checkpoint(init, done)
    return init, (loss_sum / n_last).cpu().numpy(), done


def _train_stacked_cuda(body: Body, x, order, batch_size, lr, device, per_chunk, steps=None, at=(),
                        on_checkpoint=None, cache=False):
    """The stacked hot loop made for a GPU: the same maths as `_train_stacked`, with

    - the training set uploaded once and each chunk gathered on the device (no host copies), or with `cache`
      h_0..h_L of the whole split computed once on the device and each chunk's rows gathered in the graph;
    - the decoder weight gradients as one batched matmul (L launches become 1);
    - each chunk (the body's forward or the gather, then its decoder steps with a capturable fused Adam)
      recorded once as a CUDA graph per chunk size and replayed, so a step costs one graph launch
      instead of hundreds of kernel launches. The first chunk runs eagerly: it initialises Adam's
      state and cuBLAS. Chunks end at the end of a pass, at the budget and at every checkpoint (so a
      checkpoint sees exactly its steps); each other chunk size gets a graph of its own.
    - no host sync until the end (or a checkpoint): losses are summed on the device.
    """
    steps, at = _budget(x, order, batch_size, steps), sorted(at)
    L, w = len(body), body[0].n_in
    init, D, c = _stack_decoders(body, device)
    D.grad, c.grad = torch.zeros_like(D), torch.zeros_like(c)
    graphs = device.type == "cuda"  # elsewhere (tests on a CPU) the same steps run eagerly
    opt = torch.optim.Adam([D, c], lr=lr, fused=True, capturable=graphs)
    Wt, bs, phis = [b.weight.t() for b in body], [b.bias for b in body], [_INPLACE[b.act] for b in body]
    A = _stacked_activations(body, x.to(device), device) if cache else None
    xd = x.reshape(len(x), w).to(device) if A is None else None  # the data lives on the device: one upload
    Y = torch.empty(L, batch_size, w, device=device)
    R = torch.empty(L, batch_size, w, device=device)
    loss_sum = torch.zeros(L, device=device, dtype=torch.float64)
    bufs: dict[int, list] = {}  # chunk size -> [static input (rows, or indices with cache), activations, graph]
    pool = None

    def chunk_step(X: torch.Tensor, H: torch.Tensor):
        n = len(X)
        if A is None:
            H[0].copy_(X)
            for l in range(L):
                phis[l](torch.addmm(bs[l], H[l], Wt[l], out=H[l + 1]))
        else:
            torch.index_select(A, 1, X, out=H)
        for j in range(0, n, batch_size):
            B = min(batch_size, n - j)
            h, y, r = H[:, j:j + B], Y[:, :B], R[:, :B]
            torch.baddbmm(c.unsqueeze(1), h[1:], D.transpose(1, 2), out=y).tanh_()
            torch.sub(y, h[:-1], out=r)
            loss_sum.add_(torch.linalg.vector_norm(r, dim=(1, 2)).double().square_(), alpha=1.0 / (B * w))
            torch.addcmul(r, r, y.mul_(y), value=-1.0, out=r)
            scale = 2.0 / (B * w)
            torch.bmm(r.transpose(1, 2), h[1:], out=D.grad).mul_(scale)
            torch.sum(r, dim=1, out=c.grad).mul_(scale)
            opt.step()

    done, n_last, in_last = 0, 0, False
    with torch.no_grad():
        for last, idx, k in _plan([p.to(device) for p in order], batch_size, per_chunk, steps, tuple(at)):
            if last and not in_last:
                loss_sum.zero_()  # only the last pass's losses are reported
                in_last = True
            n = len(idx)
            if n not in bufs:
                static = torch.empty(n, dtype=torch.long, device=device) if A is not None else \
                    torch.empty(n, w, device=device)
                bufs[n] = [static, torch.empty(L + 1, n, w, device=device), None]
            X, H, g = bufs[n]
            if A is None:
                torch.index_select(xd, 0, idx, out=X)
            else:
                X.copy_(idx)
            if not graphs:
                chunk_step(X, H)
            elif done == 0:  # the first chunk runs eagerly, on a side stream as CUDA graphs want
                side = torch.cuda.Stream(device)
                side.wait_stream(torch.cuda.current_stream(device))
                with torch.cuda.stream(side):
                    chunk_step(X, H)
                torch.cuda.current_stream(device).wait_stream(side)
            else:
                if g is None:  # capture records without running; the replay below runs it
                    g = bufs[n][2] = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g, pool=pool):
                        chunk_step(X, H)
                    pool = g.pool()
                g.replay()
            done += k
            if last:
                n_last += k
            if at and done == at[0]:
                at.pop(0)
                on_checkpoint(init, done)
    return init, (loss_sum / n_last).cpu().numpy(), done


_EVAL_BYTES = 2**30



SEARCH_SPAN = 2  # each finer level covers the layers up to this many evaluated layers above the cutoff so far


def search_strides(L: int) -> list[int]:
    """The strides of `eval_depths="search"`, coarse to fine: about L/8, then each about 2.5 times finer,
    down to 1 (25, 10, 4, 2, 1 at L = 200; 12, 5, 2, 1 at L = 100). Chosen by replaying the search on every
    exhaustive profile we had (analysis/phase_diagram/search_check.py; docs/performance.md, "Deep probes")."""
    s = max(2, round(L / 8))
    out = [s]
    while s > 1:
        s = max(1, round(s / 2.5))
        out.append(s)
    return out


def search_layers(L: int, rtol: float, run) -> list[int]:
    """The layers `eval_depths="search"` evaluates, and the order it evaluates them in.

    First every s-th layer and L (s = `search_strides(L)[0]`). Then, level by level, it reads the cutoff c
    off the layers evaluated so far and evaluates, at the next finer stride, the layers from c up to the
    `SEARCH_SPAN`-th evaluated layer above c. The last stride is 1, so the cutoff is exactly the exhaustive
    one unless a layer off the plateau hides between evaluated layers above that span, all of which read
    as plateau. `run(depths)` evaluates `depths` and returns the normalised median profile (L,) of every
    layer evaluated so far, NaN elsewhere. Returns the sorted layers evaluated.
    """
    strides = search_strides(L)
    new, done = sorted(set(range(strides[0], L + 1, strides[0])) | {L}), set()
    for finer in strides[1:] + [None]:
        if new:  # the first level always has L
            r = run(new)
            done.update(new)
        if finer is None:
            break
        c = cutoff_from_normalised(r, rtol, skip_nan=True)
        above = sorted(l for l in done if l > c)
        hi = above[min(SEARCH_SPAN, len(above)) - 1] if above else c
        new = [l for l in range(c + finer, hi, finer) if l not in done]
    return sorted(done)


def search_replay(norm_median: np.ndarray, rtol: float) -> tuple[int, list[int]]:
    """What `eval_depths="search"` finds on a known, exhaustive normalised profile (L,): its cutoff and the
    layers it evaluates. A layer's normalised median does not depend on which other layers ran, so the
    replay is exact (analysis/phase_diagram checks the search this way)."""
    r = np.asarray(norm_median, dtype=float)
    seen = np.full(len(r), np.nan)

    def run(depths: list[int]) -> np.ndarray:
        seen[np.array(depths) - 1] = r[np.array(depths) - 1]
        return seen

    layers = search_layers(len(r), rtol, run)
    return cutoff_from_normalised(seen, rtol, skip_nan=True), layers


@torch.no_grad()
def _evaluate(body: Body, decoders: nn.ModuleList, x: torch.Tensor, device, n_show: int, chunk: int,
              eval_depths: str = "all", entropy_dtype: str = "float64", rtol: float = 0.005):
    """Run the cascades C^ℓ on held-out samples; return S (L, N), H (L,), a few reconstructions, and
    the layers evaluated.

    eval_depths="all" runs every cascade: O(L²) decoder applications. "search" runs the cascades of
    `search_layers`, coarse to fine (about 1,800 decoder applications instead of 20,100 at L = 200;
    docs/performance.md). Layers not evaluated are NaN in S and H.
    """
    L = len(body)
    if eval_depths not in EVAL_DEPTHS:
        raise UserError(f"eval_depths must be one of {EVAL_DEPTHS}, got {eval_depths!r}")
    if entropy_dtype not in ENTROPY_DTYPES:
        raise UserError(f"entropy_dtype must be one of {ENTROPY_DTYPES}, got {entropy_dtype!r}")
    dtype = getattr(torch, entropy_dtype)
    decoders = decoders.to(device).eval()
    S, H = np.full((L, len(x)), np.nan), np.full(L, np.nan)
    shown = np.full((L + 1, *x[:n_show].shape), np.nan, dtype=np.float32) if n_show else None
    # the body's activations are the same for every level: keep them when they fit (an MLP's do)
    sizes = [h[0].numel() for h in body.activations(x[:1].to(device))]
    acts = {} if eval_depths == "search" and 4 * sum(sizes) * len(x) <= _EVAL_BYTES else None

    evaluated = np.zeros(L, dtype=bool)

    def run(depths: list[int]) -> np.ndarray:
        _evaluate_levels(body, decoders, x, device, n_show, chunk, depths, dtype, S, H, shown, acts, max(sizes))
        evaluated[np.array(depths) - 1] = True
        return np.median(normalised(S), axis=1)

    if eval_depths == "all" or L <= 8:
        run(list(range(1, L + 1)))
    else:
        search_layers(L, rtol, run)
    return S, H, shown, evaluated


def _evaluate_levels(body: Body, decoders: nn.ModuleList, x: torch.Tensor, device, n_show: int, chunk: int,
                     depths: list[int], dtype: torch.dtype, S: np.ndarray, H: np.ndarray, shown: np.ndarray | None,
                     acts: dict | None, widest: int) -> None:
    """The cascades from `depths` (sorted, 1-based): write their rows of S (L, N), H (L,) and `shown`.

    Cascades are run together level by level: at level k, h_k (when k is a cascade's start) and all
    partial reconstructions from deeper starts pass g_k in one batch, which keeps the decoder
    applications as large matmuls. Everything stays on the device until the end of a chunk: one
    host sync per chunk, none per layer. `acts` (when not None) keeps the body's activations per chunk
    for the next call.
    """
    N = len(x)
    starts = set(depths)
    # The partial reconstructions of a chunk take about 2·L·chunk·max_ℓ|h_ℓ| floats (with the cat):
    # cap the chunk to ~1 GiB of them, which wide conv layers (cnn with 128 channels at 28×28, VGG at
    # 224×224) would otherwise exceed many times over. MLP-sized bodies keep the requested chunk.
    chunk = max(1, min(chunk, max(n_show, _EVAL_BYTES // (8 * len(depths) * widest))))  # n_show: from chunk 1
    if acts is not None and acts.get("chunk") != chunk:  # kept activations are per chunk: one chunking at a time
        acts.clear()
        acts["chunk"] = chunk
    out = torch.empty(len(depths), N, dtype=dtype, device=device)
    # Per-pixel mean and sum of squared deviations, per chunk (two-pass, accurate in float32 too) and
    # merged across chunks in float64 (Chan et al.), give σ_i for H without keeping all x̂. The naive
    # E[q²] − E[q]² cancels catastrophically in float32 where deep reconstructions barely vary.
    n_seen, mean, m2 = 0, None, None
    for i in range(0, N, chunk):
        xb = x[i:i + chunk].to(device, non_blocking=True)
        hs = acts.get(i) if acts is not None else None
        if hs is None:
            hs = body.activations(xb)
            if acts is not None:
                acts[i] = hs
        partial = None  # (m, n, *shape): partial reconstructions from the starts > k, now at level k
        for k in range(depths[-1], 0, -1):
            if k in starts:
                cur = hs[k].unsqueeze(0) if partial is None else torch.cat([hs[k].unsqueeze(0), partial])
            elif partial is None:
                continue
            else:
                cur = partial
            m, n = cur.shape[:2]
            partial = decoders[k - 1](cur.reshape(m * n, *cur.shape[2:])).reshape(m, n, *hs[k - 1].shape[1:])
        # partial[j] is now the reconstruction from depths[j]
        q = as_distribution(partial.reshape(len(depths) * len(xb), -1), dtype=dtype).reshape(len(depths), len(xb), -1)
        mean_c = q.mean(1, keepdim=True)
        m2_c, mean_c, n_c = (q - mean_c).square().sum(1).double(), mean_c.squeeze(1).double(), q.shape[1]
        if mean is None:
            mean, m2 = mean_c, m2_c
        else:
            delta = mean_c - mean
            m2 = m2 + m2_c + delta.square() * (n_seen * n_c / (n_seen + n_c))
            mean = mean + delta * (n_c / (n_seen + n_c))
        n_seen += n_c
        p = as_distribution(xb, dtype=dtype)
        out[:, i:i + len(xb)] = kl(p, q)  # relative_entropy(xb, x̂), sharing q with H
        if i == 0 and shown is not None:
            shown[0], shown[depths] = xb[:n_show].float().cpu().numpy(), partial[:, :n_show].float().cpu().numpy()
    rows = np.array(depths) - 1
    S[rows] = out.double().cpu().numpy()
    H[rows] = differential_entropy_rows((m2 / N).sqrt()).double().cpu().numpy()
