"""The sweep's progress bar: a Tune callback that counts finished points, failures and retries."""
from __future__ import annotations

import sys
import time

FAILED = ("error", "diverged")


def progress_callback(total: int, enabled: bool):
    """A tune.Callback drawing points done / total, failures and ETA on stderr (tqdm), instead of
    Tune's trial table. It also keeps, for the caller: `statuses` (point_id -> status of its final
    report), `retries`, `lost` [(point, error) of the trials whose retries ran out], and `times` [(perf_counter at the report, compute seconds)]."""
    from ray import tune
    from tqdm import tqdm

    class Progress(tune.Callback):
        def __init__(self):
            self.bar = tqdm(total=total, file=sys.stderr, disable=not enabled, unit="pt", desc="sweep",
                            dynamic_ncols=True)
            self.seen, self.failed, self.retries, self.statuses, self.times = set(), 0, 0, {}, []
            self.lost = []

        def _post(self):
            self.bar.set_postfix(failed=self.failed, retries=self.retries, refresh=False)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            if result.get("final") and trial.trial_id not in self.seen:  # a retried trial reports again
                self.seen.add(trial.trial_id)
                status = result.get("status")
                self.statuses[result.get("point_id")] = status
                self.times.append((time.perf_counter(), result.get("compute_seconds", 0.0)))
                self.failed += status in FAILED
                self._post()
                self.bar.update(1)

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.retries += 1
            self._post()
            self.bar.refresh()

        def on_trial_error(self, iteration, trials, trial, **info):  # retries used up: the point is lost
            self.lost.append((trial.config.get("point"), _error_text(trial)))
            self.failed += 1
            self._post()
            self.bar.update(1)

        def on_experiment_end(self, trials, **info):
            self.bar.close()

    return Progress()


def _error_text(trial) -> str | None:
    """The trial's error file as Tune wrote it (every failure, the last at the end): the local copy,
    written before this callback runs, else the one in Tune's storage."""
    try:
        with open(trial.error_file) as f:
            return f.read()
    except (OSError, TypeError):
        return trial.get_error()
