"""Run as a script by tests/test_reliability.py, under a Ray whose memory monitor kills every worker:
an actor task killed while it runs, through Tune's own actor manager, with or without
`survive_memory_kills` ("patched"). Prints one JSON list: per actor, the error each callback got."""
import json
import sys
import time

import ray
from ray.air.execution import FixedResourceManager, ResourceRequest
from ray.air.execution._internal import RayActorManager

from reconent.sweep.ray_session import RaySession, survive_memory_kills


class Worker:
    def work(self):
        time.sleep(120)


if sys.argv[1:] == ["patched"]:
    survive_memory_kills()
out = []
with RaySession(None, num_cpus=1):
    manager = RayActorManager(FixedResourceManager({"CPU": 1}))
    # The monitor may kill a worker while it starts (Tune handles that already): try again until one
    # is killed while its task runs, the case Ray reports as OutOfMemoryError on the task.
    for attempt in range(8):
        got = {}
        manager.add_actor(ray.remote(Worker), kwargs={}, resource_request=ResourceRequest([{"CPU": 1}]),
                          on_start=lambda a: manager.schedule_actor_task(
                              a, "work", on_error=lambda a, e: got.setdefault("task", e)),
                          on_error=lambda a, e: got.setdefault("actor", e))
        end = time.monotonic() + 60
        while not got and time.monotonic() < end:
            manager.next(timeout=1)
        time.sleep(0.5)
        while manager.next(timeout=0.1):  # the other callback of the same death
            pass
        out.append({k: f"{type(e).__name__}: {e}"[:200] for k, e in got.items()})
        if "task" in got:
            break
print(json.dumps(out))
