"""Tune asks a Strategy for its trials: a `ray.tune.search.Searcher` that hands out one point per trial.

The searcher enforces the concurrency itself (`max_concurrent`), so it knows the free slots and can ask
its strategy for a batch of that size at once. Tune's own copy of each trial's spec is the small
`{"ctx": ...}` param space plus one point: O(1) per trial, whatever the number of points."""
from __future__ import annotations

from collections import deque

from ray.tune.search import Searcher


class StrategySearcher(Searcher):
    def __init__(self, strategy, max_concurrent: int | None = None):
        super().__init__()
        self.strategy, self.max_concurrent = strategy, max_concurrent
        self.queue: deque = deque()
        self.live: dict[str, dict] = {}
        self.suggested = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # no metric: the strategy reads the trials' final reports itself

    def suggest(self, trial_id: str):
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        if not self.queue:
            free = (self.max_concurrent - len(self.live)) if self.max_concurrent else 1
            self.queue.extend(self.strategy.propose(max(1, free)))
        if not self.queue:
            # nothing to run now: done for good unless a trial in flight can still change the strategy's mind
            return None if self.live else Searcher.FINISHED
        point = self.queue.popleft()
        self.live[trial_id] = point
        self.suggested += 1
        return {"point": point}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        point = self.live.pop(trial_id, None)
        if point is not None:
            self.strategy.observe(point, None if error or not result else result)

    # The store is the state: a restarted driver rebuilds the strategy from the parts.
    def save(self, checkpoint_path: str) -> None:
        pass

    def restore(self, checkpoint_path: str) -> None:
        pass
