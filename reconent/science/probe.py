"""The cascade probe (SCIENCE §2): how much of the input survives to each layer of an untrained body.

One decoder g_ℓ: h_ℓ → h_{ℓ-1} per layer, each trained for `epochs` with its own Adam on
MSE(g_ℓ(h_ℓ), h_{ℓ-1}) while the body stays frozen. Then x̂^(ℓ) = g_1 ∘ … ∘ g_ℓ(h_ℓ) on held-out
samples gives the relative-entropy profile S_ℓ and the cutoff.

`probe` is a plain function: no Ray, no files. It has two training paths with the same maths:
- stacked: when every block is a Dense layer of the same square width (the paper's wide MLP),
  all decoders live in one (L, w, w) tensor, their forward is one batched matmul, their
  gradients are written by hand and one fused Adam steps the whole stack. This is the hot loop
  of every sweep (measured figures in docs/performance.md; rerun with `reconent bench probe`).
- generic: any blocks with any decoders, through autograd. Summing the per-layer losses and
  calling backward once gives each decoder exactly its own gradient, since no gradient flows
  between layers, and Adam is elementwise, so one optimiser over all decoders equals one each.
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

from .entropy import as_distribution, cutoff_from_normalised, differential_entropy_rows, kl, normalised
from . import models
from .models import DATA, Body, Dense, stream


@dataclass
class ProbeResult:
    relative_entropy: np.ndarray  # (L, n_eval): S_ℓ per held-out sample, nats
    differential_entropy: np.ndarray  # (L,)
    decoder_loss: np.ndarray  # (L,) mean training MSE per decoder over the last epoch
    steps: int
    seconds: float  # wall time of the whole probe
    train_seconds: float  # wall time of the decoder training (the hot loop); the rest is mostly evaluation
    device: str
    path: str  # "stacked" or "generic"
    rtol: float
    examples: np.ndarray  # (L+1, n_show, *in_shape): the inputs, then x̂^(1..L) for a few samples (NaN: not evaluated)
    decoders: nn.ModuleList = field(repr=False)
    evaluated: np.ndarray | None = None  # (L,) bool: layers whose cascade ran (eval_depths); None: all
    settings: dict = field(default_factory=dict)  # the evaluation settings, for the summary

    def __post_init__(self):
        if self.evaluated is None:
            self.evaluated = np.ones(self.depth, dtype=bool)

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
        r = self.norm_median.copy()
        r[self.evaluated & np.isnan(r)] = np.inf  # a NaN where the cascade ran: off the plateau (diverged)
        r[~self.evaluated] = np.nan
        return cutoff_from_normalised(r, self.rtol if rtol is None else rtol, skip_nan=not self.evaluated.all())

    def summary(self) -> dict:
        """JSON-ready numbers (lists per layer, layer 1 first)."""
        ev = self.evaluated
        # layers whose cascade did not run (eval_depths: search) are None (null in Parquet and JSON)
        f = lambda a: [float(v) if ev[i] else None for i, v in enumerate(a)]  # noqa: E731
        return {
            "status": self.status, "layers": self.depth, "cutoff": self.cutoff(), "rtol": self.rtol,
            "relative_entropy_median": f(self.median), "relative_entropy_mean": f(self.mean),
            "relative_entropy_q25": f(self.quantile(0.25)), "relative_entropy_q75": f(self.quantile(0.75)),
            "relative_entropy_norm_median": f(self.norm_median),
            "differential_entropy": f(self.differential_entropy),
            "decoder_loss": [float(v) for v in self.decoder_loss],
            "eval_samples": int(self.relative_entropy.shape[1]), "steps": self.steps,
            "seconds": self.seconds, "train_seconds": self.train_seconds, "eval_seconds": self.seconds - self.train_seconds,
            "device": self.device, "path": self.path, "evaluated_layers": int(self.evaluated.sum()), **self.settings,
        }


def probe(body: Body, train_x: torch.Tensor, eval_x: torch.Tensor, *, epochs: int = 1, batch_size: int = 64,
          lr: float = 1e-3, rtol: float = 0.005, train_samples: int | None = None, eval_samples: int | None = None,
          device: str | torch.device = "cpu", stacked: bool | None = None, n_show: int = 8,
          eval_chunk: int = 256, per_chunk: int = 8, eval_depths: str = "all",
          entropy_dtype: str = "float64", tf32: bool = False) -> ProbeResult:
    """Train the decoder cascade of `body` and measure its entropy profile on `eval_x`.

    train_x/eval_x: any shape (N, ...) whose per-sample size matches body.in_shape, pixels in [0, 1].
    The mini-batch order and any subsetting come from the body's seed, so the result is
    deterministic for a given seed on CPU. `stacked=None` picks the stacked path when it applies.

    The caller's `body` is left as it was (device, requires_grad, train/eval mode): the probe
    moves and freezes a copy of it.
    """
    t0 = time.perf_counter()
    device = models.device(device)
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}")
    gen = stream(body.seed, 0, DATA)
    train_x = _subset(train_x, train_samples, gen).reshape(-1, *body.in_shape)
    eval_x = _subset(eval_x, eval_samples, gen).reshape(-1, *body.in_shape)
    if len(train_x) == 0 or len(eval_x) < 2:
        raise ValueError(f"need >= 1 training and >= 2 evaluation samples, got {len(train_x)} and {len(eval_x)}")
    body = copy.deepcopy(body).to(device).eval().requires_grad_(False)  # the caller's body stays as it was
    if device.type == "cuda":  # the data lives on the device: one upload, every batch gathered there
        train_x, eval_x = train_x.to(device), eval_x.to(device)
    can_stack = _stackable(body)
    if stacked and not can_stack:
        raise ValueError("stacked=True needs a body of Dense layers that all have the same square width")
    use_stacked = can_stack if stacked is None else stacked

    order = [torch.randperm(len(train_x), generator=gen) for _ in range(epochs)]
    with _tf32(device, tf32):
        t1 = time.perf_counter()
        train = _train_generic if not use_stacked else _train_stacked_cuda if device.type == "cuda" else _train_stacked
        decoders, losses, steps = train(body, train_x, order, batch_size, lr, device, per_chunk)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - t1
        S, H, examples, evaluated = _evaluate(body, decoders, eval_x, device, n_show, eval_chunk, eval_depths,
                                              entropy_dtype, rtol)
    return ProbeResult(S, H, losses, steps, time.perf_counter() - t0, train_seconds, str(device),
                       "stacked" if use_stacked else "generic", rtol, examples, decoders.cpu(), evaluated,
                       {"eval_depths": eval_depths, "entropy_dtype": entropy_dtype, "tf32": bool(tf32)})


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
        raise ValueError(f"sample counts must be >= 1, got {n}")
    return x[torch.randperm(len(x), generator=gen)[:n]]


def _chunks(x: torch.Tensor, order: list[torch.Tensor], batch_size: int, per_chunk: int, device):
    """Yield (is_last_epoch, chunk on device, batch slices) in the seeded order.

    The body is frozen, so its forward pass for several mini-batches can run as one larger
    matmul (M = per_chunk·batch) before the decoders step through them one by one; at M = 64
    a CPU GEMM reaches only about half of its peak.
    """
    for e, perm in enumerate(order):
        span = batch_size * per_chunk
        for i in range(0, len(perm), span):
            idx = perm[i:i + span]
            slices = [slice(j, min(j + batch_size, len(idx))) for j in range(0, len(idx), batch_size)]
            yield e == len(order) - 1, x[idx.to(x.device)].to(device), slices


def _train_generic(body: Body, x, order, batch_size, lr, device, per_chunk):
    decoders = body.decoders().to(device)
    opt = torch.optim.Adam(list(decoders.parameters()), lr=lr, **_fast_adam(device))
    loss_sum, n_last, steps = torch.zeros(len(body), device=device, dtype=torch.float64), 0, 0
    for last, xc, slices in _chunks(x, order, batch_size, per_chunk, device):
        with torch.no_grad():
            hs_chunk = body.activations(xc)
        for sl in slices:
            hs = [h[sl] for h in hs_chunk]
            # Mean-squared error per decoder (nn.MSELoss's mean); independent layers, one backward.
            losses = torch.stack([torch.mean((g(h_out) - h_in) ** 2) for g, h_in, h_out in zip(decoders, hs, hs[1:])])
            opt.zero_grad(set_to_none=True)
            losses.sum().backward()
            opt.step()
            steps += 1
            if last:
                loss_sum += losses.detach().double()
                n_last += 1
    return decoders, (loss_sum / n_last).cpu().numpy(), steps


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


def _train_stacked(body: Body, x, order, batch_size, lr, device, per_chunk):
    """The wide-MLP hot loop: every decoder at once, gradients by hand, one fused Adam step.

    For decoder ℓ with input h = h_ℓ and target t = h_{ℓ-1} (batch B, width w):
        y = tanh(h Dᵀ + c),   loss = mean((y − t)²) over B·w,
        dz = (y − t)(1 − y²),   dD = (2/(B·w)) dzᵀ h,   dc = (2/(B·w)) Σ_batch dz.
    """
    L, w = len(body), body[0].n_in
    init = body.decoders()  # same streams and init as the generic path
    D = torch.stack([g.weight.data for g in init]).to(device).requires_grad_(True)  # (L, w, w)
    c = torch.stack([g.bias.data for g in init]).to(device).requires_grad_(True)  # (L, w)
    D.grad, c.grad = torch.empty_like(D), torch.empty_like(c)  # written whole every step
    opt = _StackAdam([D, c], lr, device)
    Wt, bs, phis = [b.weight.t() for b in body], [b.bias for b in body], [_INPLACE[b.act] for b in body]
    span = batch_size * per_chunk
    H = torch.empty(L + 1, span, w, device=device)  # h_0..h_L of the current chunk
    Y = torch.empty(L, batch_size, w, device=device)
    R = torch.empty(L, batch_size, w, device=device)
    loss_sum, n_last, steps = torch.zeros(L, device=device, dtype=torch.float64), 0, 0
    with torch.no_grad():
        for last, xc, slices in _chunks(x, order, batch_size, per_chunk, device):
            n = len(xc)
            H[0, :n].copy_(xc.reshape(n, w))
            for l in range(L):
                phis[l](torch.addmm(bs[l], H[l, :n], Wt[l], out=H[l + 1, :n]))
            for sl in slices:
                B = sl.stop - sl.start
                h, y, r = H[:, sl], Y[:, :B], R[:, :B]  # the last batch of an epoch may be smaller
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
                steps += 1
    for l, g in enumerate(init):  # hand the trained stack back as modules: views, no copy
        g.weight, g.bias = nn.Parameter(D[l].detach()), nn.Parameter(c[l].detach())
    return init, (loss_sum / n_last).cpu().numpy(), steps


def _train_stacked_cuda(body: Body, x, order, batch_size, lr, device, per_chunk):
    """The stacked hot loop made for a GPU: the same maths as `_train_stacked`, with

    - the training set uploaded once and each chunk gathered on the device (no host copies);
    - the decoder weight gradients as one batched matmul (L launches become 1);
    - each chunk (the body's forward, then `per_chunk` decoder steps with a capturable fused Adam)
      recorded once as a CUDA graph per chunk size and replayed, so a step costs one graph launch
      instead of hundreds of kernel launches. The first chunk runs eagerly: it initialises Adam's
      state and cuBLAS. The last, smaller chunk of an epoch gets a graph of its own.
    - no host sync until the end: losses are summed on the device.
    """
    L, w = len(body), body[0].n_in
    init = body.decoders()
    D = torch.stack([g.weight.data for g in init]).to(device).requires_grad_(True)  # (L, w, w)
    c = torch.stack([g.bias.data for g in init]).to(device).requires_grad_(True)  # (L, w)
    D.grad, c.grad = torch.zeros_like(D), torch.zeros_like(c)
    graphs = device.type == "cuda"  # elsewhere (tests on a CPU) the same steps run eagerly
    opt = torch.optim.Adam([D, c], lr=lr, fused=True, capturable=graphs)
    Wt, bs, phis = [b.weight.t() for b in body], [b.bias for b in body], [_INPLACE[b.act] for b in body]
    xd = x.reshape(len(x), w).to(device)  # the data lives on the device: one upload
    span = batch_size * per_chunk
    Y = torch.empty(L, batch_size, w, device=device)
    R = torch.empty(L, batch_size, w, device=device)
    loss_sum = torch.zeros(L, device=device, dtype=torch.float64)
    bufs: dict[int, list] = {}  # chunk size -> [static input, activations, its graph or None]
    pool = None

    def chunk_step(X: torch.Tensor, H: torch.Tensor):
        n = len(X)
        H[0].copy_(X)
        for l in range(L):
            phis[l](torch.addmm(bs[l], H[l], Wt[l], out=H[l + 1]))
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

    steps, n_last = 0, 0
    with torch.no_grad():
        for e, perm in enumerate(order):
            perm = perm.to(device)
            if e == len(order) - 1:
                loss_sum.zero_()  # only the last epoch's losses are reported
            for i in range(0, len(perm), span):
                idx = perm[i:i + span]
                n = len(idx)
                if n not in bufs:
                    bufs[n] = [torch.empty(n, w, device=device), torch.empty(L + 1, n, w, device=device), None]
                X, H, g = bufs[n]
                torch.index_select(xd, 0, idx, out=X)
                if not graphs:
                    chunk_step(X, H)
                elif steps == 0:  # the first chunk runs eagerly, on a side stream as CUDA graphs want
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
                k = -(-n // batch_size)
                steps += k
                if e == len(order) - 1:
                    n_last += k
    for l, g in enumerate(init):
        g.weight, g.bias = nn.Parameter(D[l].detach()), nn.Parameter(c[l].detach())
    return init, (loss_sum / n_last).cpu().numpy(), steps


_EVAL_BYTES = 2**30

EVAL_DEPTHS = ("all", "search")  # the `eval_depths` setting (docs/performance.md, "Deep probes")
ENTROPY_DTYPES = ("float64", "float32")


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
        raise ValueError(f"eval_depths must be one of {EVAL_DEPTHS}, got {eval_depths!r}")
    if entropy_dtype not in ENTROPY_DTYPES:
        raise ValueError(f"entropy_dtype must be one of {ENTROPY_DTYPES}, got {entropy_dtype!r}")
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
