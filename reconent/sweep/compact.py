"""`reconent compact SWEEP_URI`: merge a sweep's parts into a few larger Parquet files (Store.compact).

Holds the sweep's lease, so it never runs beside a `sweep run` of the same sweep (whose trials would
add parts meanwhile); the layout and its guarantees are in docs/schema.md.
"""
from __future__ import annotations

import time

from reconent.errors import UserError

from .columns import KINDS


def compact(uri: str, rows_per_file: int | None = None) -> dict:
    """Compact every kind of the sweep at `uri` (`<storage>/<sweep name>`, as `reconent report` takes it)."""
    from .lease import Lease
    from .status import locate
    from .store import COMPACT_ROWS, Store

    root, name = locate(uri, None)
    store = Store(root, name)
    if not store.kinds() and store.load_spec() is None:
        raise UserError(f"results: no sweep at {uri} (no parts, no specs/spec.yaml); give <storage>/<sweep name>")
    t0 = time.perf_counter()
    kinds = []
    with Lease(store, what="reconent compact") as lease:
        for k in [k for k in KINDS if k in store.kinds()]:
            lease.check()  # lost to another driver: compact no further
            kinds.append(store.compact(k, rows_per_file or COMPACT_ROWS))
    return {"sweep": name, "storage": root, "kinds": kinds, "seconds": time.perf_counter() - t0}
