"""Sweep specifications: YAML in, validated `Spec` out, flat points for the orchestrator (docs/CONTRACT.md).

A spec is checked completely before anything runs: pydantic checks the structure (every model
forbids unknown keys), our validators check the meaning (variances >= 0, depth >= 1, a subset
point that is on the grid, ...). Every problem becomes one `SpecError` whose one-line message
starts with the field path, e.g. `grid.depth[2]: depth must be >= 1, got 0`. Validation never
writes anything; `load_spec(check_storage=True)`, the driver's call, also checks that the storage is reachable.

Example (see sweeps/*.yaml for commented ones):

    name: quickstart
    dataset: mnist5k
    grid:
      sigma_w2: [0.5, 1.0, 1.76, 3.0]     # or a range {start: 0.1, stop: 6, num: 60}
      depth: {start: 2, stop: 200, num: 12, log: true}
    train: {points: {stride: {depth: 2}}, epochs: 2, threshold: 0.8}

The package, by job: errors (SpecError), schema (the pydantic models and their checks), loader (YAML or a
dict -> Spec), expand (axes, points, the train selection, the resolved spec and its hash), storage (the
storage check, the one with I/O).
"""
from __future__ import annotations

from ..columns import point_id  # noqa: F401 -- re-exported: from reconent.sweep.spec import point_id
from .errors import SpecError  # noqa: F401
from .loader import META_KEYS, _Loader, load_spec  # noqa: F401
from .schema import (Boundary, BoundarySettings, DepthRange, Grid, Probe, Range, Resources, Spec,  # noqa: F401
                     Stride, Strict, Subset, Train)
from .storage import STORAGE_TIMEOUT, check_storage  # noqa: F401
