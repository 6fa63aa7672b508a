"""Search strategies: which points a sweep runs, and in what order (docs/architecture.md).

A strategy hands out resolved points (`columns.point`) a batch at a time and is told how each ended.
Every strategy runs through the same Tune trainable (`trainables.point_trainable`), so the trials
write their own Parquet parts and the store stays the source of truth:
- `grid.GridStrategy`: a fixed list of points, handed out lazily (O(1) per point);
- `boundary.BoundaryStrategy`: an Optuna study that chooses (σ_w², depth) training points to locate the
  true boundary L*(σ_w²) of every column.
`feed.StrategySearcher` is the adapter that lets Tune ask a strategy for its next trial.
"""
from __future__ import annotations

from typing import Protocol


class Strategy(Protocol):
    """Which points to run next. `propose(k)`: up to k new points (fewer, or none, when the strategy
    waits for results in flight); `observe(point, result)`: a point ended (`result` is the trial's final
    report, None when the trial was lost); `finished()`: nothing will ever be proposed again."""

    name: str

    def propose(self, k: int) -> list[dict]: ...

    def observe(self, point: dict, result: dict | None) -> None: ...

    def finished(self) -> bool: ...
