"""Checks on the driver before any trial starts: a sweep that cannot work writes nothing.

A dataset missing from its root would otherwise fail every trial (retried, then lost) and waste
the cluster; here it is one line and exit 2 (`reconent: error: data_root: ...`).
"""
from __future__ import annotations


def check_datasets(spec) -> None:
    """Raise DatasetNotFound, naming the dataset, the root and the fix, unless every dataset the spec's
    points use loads from `spec.data_root` (or the spec sets `download: true`, which trials then do).

    Loads the dataset once on the driver: the cheapest check that sees what a trial will see (missing,
    truncated or unreadable files). On a cluster the driver may not hold the data: put it where both
    see it, or set `download: true`; a trial that still finds it missing fails and is retried, and
    leaves no result."""
    from reconent.science import data

    if spec.download:
        return
    for name in sorted({p["dataset"] for p in spec.points()}):
        try:
            data.load(name, spec.data_root, False)
        except data.DatasetNotFound as e:
            raise data.DatasetNotFound(f"data_root: {e}") from None
