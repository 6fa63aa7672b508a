"""The grid strategy: a fixed list of points, handed to Tune one at a time.

`tune.grid_search(points)` deep-copies the whole list for every variant it generates (O(N²): 10,000 tiny
points started no trial after 7 minutes). Here Tune receives one point per trial and nothing else."""
from __future__ import annotations


class GridStrategy:
    name = "grid"

    def __init__(self, points: list[dict]):
        self.points, self.next = points, 0

    def propose(self, k: int) -> list[dict]:
        out = self.points[self.next:self.next + k]
        self.next += len(out)
        return out

    def observe(self, point: dict, result: dict | None) -> None:  # a grid does not adapt
        pass

    def finished(self) -> bool:
        return self.next >= len(self.points)
