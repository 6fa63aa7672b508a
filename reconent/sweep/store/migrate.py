"""Rows of older schemas made to mean what they mean now, in one place for both paths: the read path
(`_upgrade`, on every table read) and the write path (`Migration.migrate`, the driver rewriting an old
part in the current schema). Schema history: docs/schema.md."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from ..columns import NOT_IDENTITY, SCHEMA_VERSION
from .layout import _conform, _schema


def _v1_settings(kind: str, row: dict) -> dict:
    """A schema-1 row with the settings added since filled in: v1 computed every point at what is now
    their neutral value (columns.NEUTRAL), which the v2 id leaves out."""
    from ..columns import NEUTRAL, NULL_ONLY

    return {**row, **{k: v for k, v in NEUTRAL.get(kind, {}).items() if row.get(k) is None and v is not NULL_ONLY}}


def _stale(kind: str, version: int) -> bool:
    """A part of this schema version means something else now and is rewritten by `Store.migrate`."""
    return (version < 2 and bool(NOT_IDENTITY[kind])) or (kind == "probe" and version < 3)


def _upgrade(kind: str, table: pa.Table) -> pa.Table:
    """Rows of older schemas, read into the current schema (`table` has it), made to mean what they mean now.

    v3 -> v4 (train): `stop` is `none` and `stopped_early` false (the rule did not exist; ids unchanged).
    v2 -> v3 (probe): the v2 result `steps` (Adam steps taken) is `steps_run`; the setting `steps` (the budget
    given in steps) did not exist, so it is null: a v2 probe's budget was `epochs`, and its id is unchanged.
    v1 -> v2: the point id without the analysis-only settings (`rtol`), from the row's own columns.
    Every row comes out at SCHEMA_VERSION, so a compaction writes it once in the current meaning."""
    import pyarrow.compute as pc

    version = table.column("schema_version")
    old = pc.fill_null(pc.less(version, SCHEMA_VERSION), False)
    if not pc.any(old).as_py():
        return table

    def put(name, values):
        return table.set_column(table.schema.get_field_index(name), name, values)

    if kind == "probe":
        was = pc.fill_null(pc.less(version, 3), False)
        steps = table.column("steps")
        table = put("steps_run", pc.if_else(was, steps, table.column("steps_run")))
        table = put("steps", pc.if_else(was, pa.nulls(len(table), steps.type), steps))
    if kind == "train":  # v3 -> v4: no stop rule existed, so no run was stopped early
        was = pc.fill_null(pc.less(version, 4), False)
        for name, value in (("stop", pa.scalar("none")), ("stopped_early", pa.scalar(False))):
            col = table.column(name)
            table = put(name, pc.if_else(pc.and_(was, pc.is_null(col)), value.cast(col.type), col))
    v1 = pc.fill_null(pc.less(version, 2), False).to_pylist()
    if NOT_IDENTITY[kind] and any(v1):
        from ..columns import point_id, point_keys

        keys = [k for k in point_keys(kind) if k != "sweep"]
        pts = [_v1_settings(kind, p) for p in table.select(keys).to_pylist()]
        ids = [point_id(p) if was_v1 else i
               for p, was_v1, i in zip(pts, v1, table.column("point_id").to_pylist())]
        table = put("point_id", pa.array(ids, pa.string()))
    return put("schema_version", pc.if_else(old, pa.scalar(SCHEMA_VERSION, version.type), version))


class Migration:
    """The write path of the migration (needs Layout's `fs` and `write_part`)."""

    def migrate(self, kind: str, path: str) -> tuple[str, str] | None:
        """Rewrite a part of an older schema in the current one (`_upgrade`): v1 parts get their v2 point id
        (v2 dropped the analysis-only settings from the id), v2 probe parts their result `steps` renamed
        `steps_run` (v3 made `steps` the budget setting). Every value is kept.

        The new part is in place before an old one under another name is deleted, so a crash in between
        leaves two copies of one row, which every reader resolves (`_newest`) and the next run finishes; a
        part whose id is unchanged is replaced by one atomic move. Returns (id, path), or None if the row
        cannot be read (it is then left alone)."""
        try:
            with self.fs.open_input_file(path) as f:
                t = _upgrade(kind, _conform(pq.read_table(f), _schema(kind)))
        except Exception:  # noqa: BLE001
            return None
        row = t.to_pylist()[0]
        new = row["point_id"]  # the current id, re-derived by _upgrade from the row's own columns
        dest = self.write_part(kind, row)
        if dest != path:
            self.fs.delete_file(path)
        return new, dest
