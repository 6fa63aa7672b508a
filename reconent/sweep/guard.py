"""What `sweep run` does around the Tune experiment: check inputs first, hold the sweep's lease, and
compact at the end when asked. Kept apart from run.py, which decides what to compute and how."""
from __future__ import annotations

import functools
import sys


def guarded(run):
    """Wrap `run(spec, address, storage, progress, retry_errors)`: pre-flight checks (a missing dataset
    is exit 2 before anything is written), then the lease (a second driver of the same sweep and
    storage refuses, exit 2), then the sweep, then compaction if `compact=True`."""

    @functools.wraps(run)
    def wrapper(spec, address: str | None = None, storage: str | None = None, progress: bool = True,
                retry_errors: bool = False, compact: bool = False) -> dict:
        from .lease import Lease
        from .preflight import check_datasets
        from .run import absolute_uri, resolve_spec
        from .store import Store

        spec = resolve_spec(spec, storage)
        check_datasets(spec)
        store = Store(absolute_uri(spec.storage), spec.name)
        with Lease(store) as lease:
            summary = run(spec, address=address, progress=progress, retry_errors=retry_errors)
            if compact:
                lease.check()  # a driver that lost its lease compacts nothing
                summary["compacted"] = [store.compact(kind) for kind in store.kinds()]
                for c in summary["compacted"]:
                    print(f"reconent: compacted {c['kind']}: {c['files_before']} files -> {c['files_after']}",
                          file=sys.stderr)
        return summary

    return wrapper
