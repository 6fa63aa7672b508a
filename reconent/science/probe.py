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

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .entropy import (as_distribution, cutoff_from_normalised, differential_entropy_from_std, normalised,
                      relative_entropy)
from . import models
from .models import DATA, Body, Dense, stream


@dataclass
class ProbeResult:
    relative_entropy: np.ndarray  # (L, n_eval): S_ℓ per held-out sample, nats
    differential_entropy: np.ndarray  # (L,)
    decoder_loss: np.ndarray  # (L,) mean training MSE per decoder over the last epoch
    steps: int
    seconds: float  # wall time of the whole probe
    train_seconds: float  # wall time of the decoder training (the hot loop)
    device: str
    path: str  # "stacked" or "generic"
    rtol: float
    examples: np.ndarray  # (L+1, n_show, *in_shape): the inputs, then x̂^(1..L) for a few samples
    decoders: nn.ModuleList = field(repr=False)

    @property
    def depth(self) -> int:
        return self.relative_entropy.shape[0]

    @property
    def status(self) -> str:
        """'diverged' when any entropy or loss is not finite; that is a result, not an error."""
        ok = np.isfinite(self.relative_entropy).all() and np.isfinite(self.decoder_loss).all()
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
        return cutoff_from_normalised(self.norm_median, self.rtol if rtol is None else rtol)

    def summary(self) -> dict:
        """JSON-ready numbers (lists per layer, layer 1 first)."""
        f = lambda a: [float(v) for v in a]  # noqa: E731
        return {
            "status": self.status, "layers": self.depth, "cutoff": self.cutoff(), "rtol": self.rtol,
            "relative_entropy_median": f(self.median), "relative_entropy_mean": f(self.mean),
            "relative_entropy_q25": f(self.quantile(0.25)), "relative_entropy_q75": f(self.quantile(0.75)),
            "relative_entropy_norm_median": f(self.norm_median),
            "differential_entropy": f(self.differential_entropy), "decoder_loss": f(self.decoder_loss),
            "eval_samples": int(self.relative_entropy.shape[1]), "steps": self.steps,
            "seconds": self.seconds, "train_seconds": self.train_seconds, "device": self.device, "path": self.path,
        }


def probe(body: Body, train_x: torch.Tensor, eval_x: torch.Tensor, *, epochs: int = 1, batch_size: int = 64,
          lr: float = 1e-3, rtol: float = 0.005, train_samples: int | None = None, eval_samples: int | None = None,
          device: str | torch.device = "cpu", stacked: bool | None = None, n_show: int = 8,
          eval_chunk: int = 256, per_chunk: int = 8) -> ProbeResult:
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
    can_stack = _stackable(body)
    if stacked and not can_stack:
        raise ValueError("stacked=True needs a body of Dense layers that all have the same square width")
    use_stacked = can_stack if stacked is None else stacked

    order = [torch.randperm(len(train_x), generator=gen) for _ in range(epochs)]
    t1 = time.perf_counter()
    train = _train_stacked if use_stacked else _train_generic
    decoders, losses, steps = train(body, train_x, order, batch_size, lr, device, per_chunk)
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_seconds = time.perf_counter() - t1

    S, H, examples = _evaluate(body, decoders, eval_x, device, n_show, eval_chunk)
    return ProbeResult(S, H, losses, steps, time.perf_counter() - t0, train_seconds, str(device),
                       "stacked" if use_stacked else "generic", rtol, examples, decoders.cpu())


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
            yield e == len(order) - 1, x[idx].to(device, non_blocking=True), slices


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
    D.grad, c.grad = torch.zeros_like(D), torch.zeros_like(c)
    opt = torch.optim.Adam([D, c], lr=lr, **_fast_adam(device))
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
                    loss_sum += torch.linalg.vector_norm(r, dim=(1, 2), dtype=torch.float64).square_() / (B * w)
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


_EVAL_BYTES = 2**30


@torch.no_grad()
def _evaluate(body: Body, decoders: nn.ModuleList, x: torch.Tensor, device, n_show: int, chunk: int):
    """Run every cascade C^ℓ on held-out samples; return S (L, N), H (L,), a few reconstructions.

    Cascades are run together level by level: at level k, the input h_k and all partial
    reconstructions from deeper layers pass g_k in one batch, which keeps the O(L²) decoder
    applications as large matmuls.
    """
    decoders = decoders.to(device).eval()
    L, N = len(body), len(x)
    # The partial reconstructions of a chunk take about 2·L·chunk·max_ℓ|h_ℓ| floats (with the cat):
    # cap the chunk to ~1 GiB of them, which wide conv layers (cnn with 128 channels at 28×28, VGG at
    # 224×224) would otherwise exceed many times over. MLP-sized bodies keep the requested chunk.
    widest = max(h[0].numel() for h in body.activations(x[:1].to(device)))
    chunk = max(1, min(chunk, max(n_show, _EVAL_BYTES // (8 * L * widest))))  # n_show: shown from chunk 1
    S = np.empty((L, N))
    # Streaming first and second moments per pixel give σ_i for H without keeping all x̂.
    m1 = m2 = None
    shown = []
    for i in range(0, N, chunk):
        xb = x[i:i + chunk].to(device)
        hs = body.activations(xb)
        partial = None  # (m, n, *shape): partial reconstructions of depths > k, now at level k
        for k in range(L, 0, -1):
            cur = hs[k].unsqueeze(0) if partial is None else torch.cat([hs[k].unsqueeze(0), partial])
            m, n = cur.shape[:2]
            partial = decoders[k - 1](cur.reshape(m * n, *cur.shape[2:])).reshape(m, n, *hs[k - 1].shape[1:])
        # partial[j] is now the reconstruction from depth j + 1
        q = torch.stack([as_distribution(r) for r in partial])  # (L, n, pixels), float64
        m1 = q.sum(1) if m1 is None else m1 + q.sum(1)
        m2 = q.square().sum(1) if m2 is None else m2 + q.square().sum(1)
        for l in range(L):
            S[l, i:i + len(xb)] = relative_entropy(xb, partial[l]).cpu().numpy()
        if i == 0:
            shown = torch.cat([xb[:n_show].unsqueeze(0), partial[:, :n_show]]).float().cpu().numpy()
    sigma = ((m2 / N) - (m1 / N).square()).clamp_min(0).sqrt()
    H = np.array([differential_entropy_from_std(s) for s in sigma])
    return S, H, shown
