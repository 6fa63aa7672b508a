"""Which points have a valid row, and reading them: every file is checked (schema version in its footer,
its ids), a corrupt one is skipped by readers and moved to quarantine/ by the driver, each point is
read once whatever state a compaction or a migration left (`_newest`)."""
from __future__ import annotations

import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..columns import META_KEY
from .layout import _ID, COMPACT_PREFIX, _conform, _schema
from .migrate import _stale, _upgrade

TMP_MAX_AGE = 3600.0  # seconds; a younger _tmp-* may belong to a writer that is still running


def _later(a, b) -> bool:
    """`a` finished after `b` (None: unknown, never later)."""
    return a is not None and (b is None or a > b)


def _newest(rows) -> dict[str, tuple]:
    """{point_id: (status, finished_at, path)} keeping, for a point stored twice, the copy that finished
    last (a recompute beats the row it replaces; two copies of one row are the same); ties go to a
    compacted file, so a compaction's leftover part is the one the next compaction deletes."""
    out: dict[str, tuple] = {}
    for pid, status, fin, path in rows:
        old = out.get(pid)
        if old is None or _later(fin, old[1]) or (fin == old[1] and COMPACT_PREFIX in path.rsplit("/", 1)[-1]):
            out[pid] = (status, fin, path)
    return out


class Index:
    """Validity, quarantine and reading (needs Layout and Migration)."""

    def _check(self, info: pafs.FileInfo, kind: str) -> tuple[list | None, str | None]:
        """([(point_id, status, finished_at, version)], None) for a valid file, else (None, why).

        A part holds one row named by its file; a compacted file many (only their ids and statuses are read)."""
        part = info.base_name.startswith("part-")
        try:
            with self.fs.open_input_file(info.path) as f:
                pf = pq.ParquetFile(f)
                version = (pf.schema_arrow.metadata or {}).get(META_KEY)
                # Any reconent version counts: a newer part is a result too, never to be overwritten.
                if version is None or not version.isdigit():
                    return None, f"no {META_KEY.decode()} in the file metadata"
                names = pf.schema_arrow.names
                t = pf.read(columns=[c for c in ("point_id", "status", "finished_at") if c in names])
        except Exception as e:  # noqa: BLE001 -- truncated, garbled, unreadable: all mean "not a valid part"
            return None, f"{type(e).__name__}: {e}"
        if "point_id" not in t.column_names or (part and t.num_rows != 1):
            return None, f"expected {'1 row' if part else 'rows'} with a point_id, got {t.num_rows} rows"
        ids = t.column("point_id").to_pylist()
        if part and ids[0] != info.base_name[len("part-"):-len(".parquet")]:
            return None, f"point_id {ids[0]!r} does not match the file name"
        if not all(isinstance(i, str) and _ID.match(i) for i in ids):
            return None, "a point_id is not 16 hex digits"
        n = t.num_rows
        st = t.column("status").to_pylist() if "status" in t.column_names else [None] * n
        fin = t.column("finished_at").to_pylist() if "finished_at" in t.column_names else [None] * n
        return [(i, s or "unknown", f, int(version)) for i, s, f in zip(ids, st, fin)], None

    def _index(self, kind: str, tmp_max_age: float | None) -> dict[str, tuple[str, object, str]]:
        """{point_id: (status, finished_at, path)} of the valid files of `kind`, each point once (`_newest`).

        With `tmp_max_age` (the driver, holding the lease): corrupt files go to quarantine/, old parts
        are migrated (`migrate`) and _tmp-* files older than `tmp_max_age` seconds are deleted.
        Without it: read-only, corrupt files are skipped."""
        now, todo, rows = time.time(), [], []
        for info in self._files(kind):
            name = info.base_name
            if name.startswith(("_tmp-", ".tmp-")):
                age = now - info.mtime.timestamp() if info.mtime else float("inf")
                if tmp_max_age is not None and age > tmp_max_age:
                    try:
                        self.fs.delete_file(info.path)
                    except OSError:
                        pass
            elif name.endswith(".parquet") and name.startswith(("part-", COMPACT_PREFIX)):
                seen = self._valid.get(info.path)
                if seen and seen[:2] == (info.size, info.mtime):
                    rows += [(*r, info.path) for r in seen[2]]
                else:
                    todo.append(info)
        # Remote stores answer one file at a time; threads overlap the round trips (pyarrow drops the GIL).
        with ThreadPoolExecutor(max_workers=16) as pool:
            checked = list(pool.map(lambda i: self._check(i, kind), todo))
        for info, (got, why) in zip(todo, checked):
            if why is not None:
                if tmp_max_age is None:
                    warnings.warn(f"reconent: skipping unreadable part {info.path}: {why}", stacklevel=3)
                else:
                    self._quarantine(kind, info, why)
                continue
            if tmp_max_age is not None and info.base_name.startswith("part-") and _stale(kind, got[0][3]):
                moved = self.migrate(kind, info.path)
                if moved:
                    rows.append((moved[0], got[0][1], got[0][2], moved[1]))
                    continue
            self._valid[info.path] = (info.size, info.mtime, [r[:3] for r in got])
            rows += [(*r[:3], info.path) for r in got]
        return _newest(rows)

    def done(self, kind: str, tmp_max_age: float = TMP_MAX_AGE) -> dict[str, str]:
        """{point_id: status} of the points of `kind` that have a VALID row (in a part or a compacted file).

        Corrupt files go to quarantine/ (and so are recomputed); parts of older schemas are migrated
        (`migrate`); _tmp-* files older than `tmp_max_age` seconds (dead writers) are deleted."""
        return {pid: v[0] for pid, v in self._index(kind, tmp_max_age).items()}

    def done_ids(self, kind: str, tmp_max_age: float = TMP_MAX_AGE, exclude: tuple[str, ...] = ()) -> set[str]:
        """Ids of the points of `kind` that have a valid row, whatever its status except those in `exclude`."""
        return {pid for pid, st in self.done(kind, tmp_max_age).items() if st not in exclude}

    def _quarantine(self, kind: str, info: pafs.FileInfo, why: str) -> None:
        folder = self.path("quarantine", kind)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        dest = f"{folder}/{stamp}-{uuid.uuid4().hex[:6]}-{info.base_name}"
        try:
            self.fs.create_dir(folder, recursive=True)
            self.fs.move(info.path, dest)
            self._put(folder, dest.rsplit("/", 1)[-1] + ".why.txt", f"{info.path}: {why}\n".encode())
        except FileNotFoundError:  # another process moved or replaced it meanwhile
            return
        self.quarantined.append(dest)
        warnings.warn(f"reconent: corrupt part {info.path} moved to {dest} (it will be recomputed): {why}",
                      stacklevel=3)

    # ------------------------------------------------------------------ reading
    def _read_table(self, kind: str, files: list[str]) -> pa.Table:
        import pyarrow.dataset as ds

        schema = _schema(kind)
        try:  # fast path: one dataset scan; the explicit schema fills columns an older part lacks with nulls
            return _upgrade(kind, ds.dataset(files, schema=schema, filesystem=self.fs, format="parquet").to_table())
        except (pa.ArrowInvalid, OSError):
            tables = []
            for path in files:
                try:
                    with self.fs.open_input_file(path) as f:
                        tables.append(_conform(pq.read_table(f), schema))
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"reconent: skipping unreadable part {path}: {e}", stacklevel=3)
            return _upgrade(kind, pa.concat_tables(tables)) if tables else schema.empty_table()

    def read(self, kind: str) -> "pandas.DataFrame":  # noqa: F821
        """All rows of `kind` as one DataFrame in the documented schema (empty, with the columns, if none).

        Each point once, whatever state a compaction or a migration was left in (`_newest`). Reads
        without modifying anything: unreadable files are skipped with a warning (done() moves them).
        Rows stored by an older schema are read as the current one (`_upgrade`)."""
        table = self._read_table(kind, sorted(i.path for i in self._data_files(kind)))
        df = table.to_pandas()
        # the newest row of each point: a recompute (--retry-errors) beats the compacted copy it replaces
        df = df.sort_values(["point_id", "finished_at"], na_position="first", kind="stable")
        return df.drop_duplicates("point_id", keep="last").reset_index(drop=True)
