"""The cascade probe's settings, declared once: defaults and choices (SCIENCE §2; docs/performance.md).

Plain Python, no torch: the sweep spec's schema (`sweep/spec/schema.py` `Probe`), `science.probe.probe()` and
`reconent probe` (cli/probe.py) all read their defaults and choices from here, so a default changes in one place.
The decoder budget's default lives with the budgets (`science.budget.DEFAULT_STEPS`).
"""
from __future__ import annotations

from dataclasses import dataclass

# How the cascades are evaluated: 'all' (every cascade, O(L²)) or 'search' (a sparse grid of depths, then finer
# grids around the cutoff); docs/performance.md, "Deep probes".
EVAL_DEPTHS = ("all", "search")
# The precision of the entropies.
ENTROPY_DTYPES = ("float64", "float32")


@dataclass(frozen=True)
class ProbeDefaults:
    batch_size: int = 64  # the paper's mini-batch
    lr: float = 1e-3  # the decoders' Adam learning rate
    checkpoints: str = "auto"  # also evaluate after steps/16 and steps/4
    # Held-out samples the entropies are measured on (sweeps and `reconent probe`; probe() itself takes all of
    # eval_x unless told).
    eval_samples: int = 500
    # 'all' for probe() and sweeps: a sweep's report draws heatmaps of every layer, and 'all' keeps the ids of
    # points stored before the setting existed. `reconent probe` (one network, read by eye) defaults to
    # `eval_depths_cli`, the faster 'search'.
    eval_depths: str = "all"
    eval_depths_cli: str = "search"
    entropy_dtype: str = "float64"
    tf32: bool = False  # TF32 matmuls on CUDA (off: plain fp32, as on the CPU)


PROBE = ProbeDefaults()
