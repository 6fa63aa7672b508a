"""Parquet results of a sweep behind one class, `Store` (docs/schema.md): local disk, s3:// or gs://.
Every reader and writer of a sweep's folder goes through it.

Layout under <storage>/<sweep name>/ (docs/CONTRACT.md):
    probe/part-<point_id>.parquet     one row per finished probe point (written by its trial)
    probe/compact-<hash>.parquet      many rows: parts merged by `reconent compact` (Store.compact)
    train/...                         the same for training points
    specs/<spec_hash>.yaml, specs/spec.yaml (the latest)
    quarantine/<kind>/...             corrupt parts, moved aside and never deleted
    _probe.next-<random>/             local disk: a compaction's staging folder, switched in atomically
    _lease.json                       the driver running the sweep (reconent.sweep.lease)
    _failures/<kind>/<point_id>.json  the last environmental failure of a point without a row

Every file is written under a `_tmp-*` name first and then moved to its final name, so a reader
(or a crashed writer's rerun) never sees half a file under a final name: on local disk the move
is an atomic rename; on S3/GCS an object only appears once it is whole. pyarrow and pandas skip
names starting with `_` or `.`, so `pd.read_parquet("<storage>/<name>/probe")` never sees them.

One module per job, `Store` joins them:
    layout       paths, atomic writes, parts, saved specs, listings, `filesystem(uri)`
    objects      conditional small objects (create-if-absent, compare-and-swap): the lease
    index        which points have a valid row, quarantine, reading each point once
    migrate      older schemas read and rewritten as the current one (read and write path)
    compaction   merging parts into larger files without losing or doubling a point
    failures     environmental failures of points without a row
"""
from __future__ import annotations

import pyarrow.fs as pafs

from ..columns import KINDS, META_KEY, NOT_IDENTITY, PROFILES, SCHEMA_VERSION, SCHEMAS, hash_json  # noqa: F401
from .compaction import COMPACT_ROWS, Compaction
from .failures import Failures
from .index import TMP_MAX_AGE, Index
from .layout import COMPACT_PREFIX, Layout, filesystem
from .migrate import Migration
from .objects import Objects

__all__ = ["Store", "filesystem", "COMPACT_PREFIX", "COMPACT_ROWS", "TMP_MAX_AGE"]


class Store(Layout, Objects, Index, Migration, Compaction, Failures):
    """The Parquet parts, saved specs, quarantine and lease of one sweep: <uri>/<sweep_name>/."""

    @classmethod
    def find(cls, uri: str) -> list["Store"]:
        """The sweeps at `uri`: the sweep itself if it has probe/, train/ or specs/, else its sub-folders
        that do (a storage root holding several sweeps)."""
        uri, sep, query = str(uri).partition("?")  # s3://bucket/x?region=... keeps its options
        uri, query = uri.rstrip("/"), sep + query
        fs, path = filesystem(uri + query)
        if fs.get_file_info(path).type != pafs.FileType.Directory:
            return []
        own = cls.at(uri + query)
        if own.is_sweep():
            return [own]
        subs = [i for i in fs.get_file_info(pafs.FileSelector(path)) if i.type == pafs.FileType.Directory]
        found = [cls(uri + query, i.base_name) for i in sorted(subs, key=lambda i: i.base_name)]
        return [s for s in found if s.is_sweep()]
