"""Parquet results of a sweep behind one small class (docs/schema.md): local disk, s3:// or gs://.

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
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from .columns import KINDS, META_KEY, NOT_IDENTITY, PROFILES, SCHEMA_VERSION, SCHEMAS, hash_json  # noqa: F401

COMPACT_PREFIX = "compact-"
COMPACT_ROWS = 10_000  # rows per compacted file: a 2,000-point sweep becomes one file of a few MB
TMP_MAX_AGE = 3600.0  # seconds; a younger _tmp-* may belong to a writer that is still running
_ID = re.compile(r"^[0-9a-f]{16}$")


def filesystem(uri: str, timeout: float | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path, file://, s3:// or gs:// URI; local paths made absolute.

    pyarrow reads the URI's options (`s3://bucket/path?region=...&endpoint_override=host:port&scheme=http`)
    and the environment (AWS_ENDPOINT_URL, credentials). `timeout` (seconds) bounds the wait on a remote
    that does not answer, where the SDKs' defaults retry for minutes (GCS: 15): S3 connects and requests
    time out after `timeout` each, with 2 attempts in all; GCS stops retrying after `timeout`.
    None keeps pyarrow's defaults."""
    uri = str(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    fs, path = pafs.FileSystem.from_uri(uri)
    if timeout is not None:
        # The options pyarrow parsed (what pickling the filesystem keeps), with the timeouts added.
        opts = fs.__reduce__()[1][0] if isinstance(fs, (pafs.S3FileSystem, pafs.GcsFileSystem)) else {}
        if isinstance(fs, pafs.S3FileSystem):
            fs = pafs.S3FileSystem(**{**opts, "connect_timeout": timeout, "request_timeout": timeout,
                                      "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2)})
        elif isinstance(fs, pafs.GcsFileSystem):
            fs = pafs.GcsFileSystem(**{**opts, "retry_time_limit": timedelta(seconds=timeout)})
    return fs, path


class Store:
    """The Parquet parts, saved specs and quarantine of one sweep: <uri>/<sweep_name>/."""

    def __init__(self, uri: str, sweep_name: str):
        self.uri, self.name = str(uri), sweep_name
        self.fs, base = filesystem(self.uri)
        self.root = f"{base.rstrip('/')}/{sweep_name}"
        self._valid: dict[str, tuple] = {}  # path -> (size, mtime, point_id, status) of parts already checked
        self.quarantined: list[str] = []  # parts moved aside by this instance

    def __repr__(self):
        return f"Store({self.uri!r}, {self.name!r})"

    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    # ------------------------------------------------------------------ writing
    def _put(self, folder: str, name: str, data: bytes | pa.Table) -> str:
        """Write `data` to folder/name through a _tmp- file and one move: never half a file under `name`."""
        self.fs.create_dir(folder, recursive=True)
        stem, ext = os.path.splitext(name.removeprefix("part-"))
        tmp, final = f"{folder}/_tmp-{stem}-{uuid.uuid4().hex[:12]}{ext}", f"{folder}/{name}"
        try:
            with self.fs.open_output_stream(tmp) as f:
                if isinstance(data, pa.Table):
                    pq.write_table(data, f)
                else:
                    f.write(data)
            self.fs.move(tmp, final)  # local: rename(2), atomic and replacing
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            raise
        return final

    def write_part(self, kind: str, row: dict) -> str:
        """Write one point's row as <kind>/part-<point_id>.parquet, atomically; returns its path.

        Columns missing from `row` are null; a column not in the schema is an error (see docs/schema.md)."""
        schema = _schema(kind)
        unknown = sorted(set(row) - set(schema.names))
        if unknown:
            raise ValueError(f"{kind} row has columns outside schema v{SCHEMA_VERSION}: {', '.join(unknown)}; "
                             "declare them in reconent.sweep.columns")
        pid = row.get("point_id")
        if not isinstance(pid, str) or not _ID.match(pid):
            raise ValueError(f"row needs a point_id of 16 hex digits, got {pid!r}")
        if row.get("kind", kind) != kind:
            raise ValueError(f"row of kind {row['kind']!r} written as {kind!r}")
        row = {**row, "schema_version": SCHEMA_VERSION, "kind": kind}
        for c in ("started_at", "finished_at"):  # accept ISO strings as well as datetimes
            if isinstance(row.get(c), str):
                row[c] = datetime.fromisoformat(row[c])
        try:
            table = pa.Table.from_pylist([row], schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"{kind} row {pid} does not fit schema v{SCHEMA_VERSION}: {e}") from None
        return self._put(self.path(kind), f"part-{pid}.parquet", table)

    def save_spec(self, resolved: dict) -> str:
        """Save the resolved spec as specs/<spec_hash>.yaml and specs/spec.yaml (the latest); returns the hash."""
        import yaml

        h = resolved.get("spec_hash") or hashlib.sha256(
            json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]
        text = yaml.safe_dump(resolved, sort_keys=False).encode()
        self._put(self.path("specs"), f"{h}.yaml", text)
        self._put(self.path("specs"), "spec.yaml", text)
        return h

    def load_spec(self) -> dict | None:
        """The latest saved resolved spec, or None when this sweep has none."""
        import yaml

        try:
            with self.fs.open_input_stream(self.path("specs", "spec.yaml")) as f:
                return yaml.safe_load(f.read())
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ checking
    def _files(self, kind: str) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(self.path(_kind(kind)), allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    def _data_files(self, kind: str) -> list[pafs.FileInfo]:
        """The visible row files of `kind`: single-point parts and compacted files."""
        return [i for i in self._files(kind) if i.base_name.endswith(".parquet")
                and i.base_name.startswith(("part-", COMPACT_PREFIX))]

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

        With `tmp_max_age` (the driver, holding the lease): corrupt files go to quarantine/, v1 parts
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

        Corrupt files go to quarantine/ (and so are recomputed); schema-1 probe parts are migrated to
        their v2 ids; _tmp-* files older than `tmp_max_age` seconds (dead writers) are deleted."""
        return {pid: v[0] for pid, v in self._index(kind, tmp_max_age).items()}

    def done_ids(self, kind: str, tmp_max_age: float = TMP_MAX_AGE, exclude: tuple[str, ...] = ()) -> set[str]:
        """Ids of the points of `kind` that have a valid row, whatever its status except those in `exclude`."""
        return {pid for pid, st in self.done(kind, tmp_max_age).items() if st not in exclude}

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
        row["point_id"] = new
        dest = self.write_part(kind, row)
        if dest != path:
            self.fs.delete_file(path)
        return new, dest

    def _quarantine(self, kind: str, info: pafs.FileInfo, why: str) -> None:
        folder = self.path("quarantine", kind)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        dest = f"{folder}/{stamp}-{uuid.uuid4().hex[:6]}-{info.base_name}"
        try:
            self.fs.create_dir(folder, recursive=True)
            self.fs.move(info.path, dest)
            self._put(folder, os.path.basename(dest) + ".why.txt", f"{info.path}: {why}\n".encode())
        except FileNotFoundError:  # another process moved or replaced it meanwhile
            return
        self.quarantined.append(dest)
        warnings.warn(f"reconent: corrupt part {info.path} moved to {dest} (it will be recomputed): {why}",
                      stacklevel=3)

    # ------------------------------------------------------------------ environmental failures
    def record_failure(self, kind: str, pid: str, error: str) -> None:
        """Note that point `pid` failed for an environmental reason (no part was written): for `sweep status`.

        Best effort: the storage may be what failed. The file is `_`-prefixed, invisible to readers."""
        try:
            self._put(self.path("_failures", kind), f"{pid}.json",
                      json.dumps({"error": error[:2000], "at": datetime.now(timezone.utc).isoformat()}).encode())
        except Exception:  # noqa: BLE001
            pass

    def failures(self, kind: str) -> dict[str, str]:
        """{point_id: error} of the environmental failures recorded for `kind` (points may have finished since)."""
        out = {}
        sel = pafs.FileSelector(self.path("_failures", _kind(kind)), allow_not_found=True)
        for i in self.fs.get_file_info(sel):
            if i.type == pafs.FileType.File and i.base_name.endswith(".json") and not i.base_name.startswith("_"):
                try:
                    with self.fs.open_input_stream(i.path) as f:
                        out[i.base_name[:-5]] = json.loads(f.read())["error"]
                except Exception:  # noqa: BLE001
                    continue
        return out

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

    def kinds(self) -> list[str]:
        """The kinds that have at least one part."""
        return [k for k in KINDS if self._data_files(k)]

    # ------------------------------------------------------------------ compaction
    def _staging(self, kind: str) -> list[str]:
        sel = pafs.FileSelector(self.root, allow_not_found=True)
        return [i.path for i in self.fs.get_file_info(sel)
                if i.type == pafs.FileType.Directory and i.base_name.startswith(f"_{kind}.next-")]

    def _clean_staging(self, kind: str) -> None:
        """Remove what a crashed local compaction left: a staging folder that was never switched in
        (the kind's folder is unchanged) or the old folder it replaced (everything is in the new one)."""
        for path in self._staging(kind):
            self.fs.delete_dir(path)

    def _compact_local(self, kind: str, named: dict, keep: list[str], inputs: set[str]) -> int | None:
        """Local disk: build the compacted folder beside the kind's folder and swap the two in one atomic
        rename, so every reader, pd.read_parquet included, sees the old files or the new ones, never
        both. Returns the number of files replaced, or None where the swap is not supported."""
        import shutil

        folder = self.path(kind)
        stage = self.path(f"_{kind}.next-{uuid.uuid4().hex[:8]}")  # `_`: invisible to readers of the sweep
        os.makedirs(stage)
        for path in keep:  # unchanged compacted files: hard links, no copy
            try:
                os.link(path, f"{stage}/{os.path.basename(path)}")
            except OSError:
                shutil.copy2(path, f"{stage}/{os.path.basename(path)}")
        for name, chunk in named.items():
            self._put(stage, name, chunk)
        if not _exchange(stage, folder):
            shutil.rmtree(stage)
            return None
        # `stage` now holds the old files. A part written there meanwhile (none should be: the caller
        # holds the lease) joins the new folder rather than being lost.
        listed = {os.path.basename(p) for p in inputs} | {os.path.basename(p) for p in keep}
        for name in os.listdir(stage):
            if name.startswith("part-") and name not in listed:
                os.rename(f"{stage}/{name}", f"{folder}/{name}")
        self._valid = {p: v for p, v in self._valid.items() if not p.startswith(folder + "/")}
        shutil.rmtree(stage)
        return len(inputs)

    def compact(self, kind: str, rows_per_file: int = COMPACT_ROWS) -> dict:
        """Merge the parts of `kind` into compacted files of up to `rows_per_file` rows; returns counts.

        Call it holding the sweep's lease (no trial writing). Order, so that a crash anywhere loses
        nothing: (1) check every file (done(): quarantine, migration); (2) write the new compacted
        files, each under a _tmp- name then moved to compact-<hash of its ids>.parquet; (3) only then
        delete the parts and superseded compacted files they replace. A rerun after a crash between
        (2) and (3) finds each leftover row also in a compacted file and just deletes it. Between (2)
        and (3) a plain pd.read_parquet of the folder can see a point twice; reconent's readers never do.
        On local disk (Linux) the switch is one atomic exchange of folders instead (`_compact_local`),
        so even a plain pd.read_parquet sees each point once at every moment."""
        self._clean_staging(kind)
        index = self._index(kind, TMP_MAX_AGE)
        files = self._data_files(kind)
        winners: dict[str, set[str]] = {}
        for pid, (_, _, path) in index.items():
            winners.setdefault(path, set()).add(pid)
        current, small, inputs = [], [], []
        for i in files:
            rows = self._valid.get(i.path, (None, None, []))[2]
            if not i.base_name.startswith(COMPACT_PREFIX) or len(winners.get(i.path, ())) != len(rows):
                inputs.append(i.path)  # a part, or a compacted file holding rows superseded since
            elif len(rows) * 2 < rows_per_file:
                small.append(i.path)  # merged with the parts, if there are any
            else:
                current.append(i.path)
        if inputs:
            inputs += small
        keep = [p for p in current + small if p not in inputs]
        move = sorted(pid for path in inputs for pid in winners.get(path, ()))
        written = []
        if move:
            table = self._read_table(kind, sorted(inputs))
            ids = table.column("point_id").to_pylist()
            fin = table.column("finished_at").to_pylist()
            best = {}
            for j, (pid, f) in enumerate(zip(ids, fin)):  # the newest copy of each point, as _newest chooses
                if pid in index and (pid not in best or _later(f, fin[best[pid]])):
                    best[pid] = j
            take = [best[pid] for pid in move if pid in best]
            table = _conform(table.take(take), _schema(kind)).sort_by("point_id")
            chunks = [table.slice(start, rows_per_file) for start in range(0, table.num_rows, rows_per_file)]
            named = {f"{COMPACT_PREFIX}{hash_json(c.column('point_id').to_pylist())}.parquet": c for c in chunks}
            if isinstance(self.fs, pafs.LocalFileSystem):
                done = self._compact_local(kind, named, keep, set(inputs))
                if done is not None:
                    return {"kind": kind, "files_before": len(files), "files_after": len(keep) + len(named),
                            "points": len(index), "deleted": done}
            written = [self._put(self.path(kind), name, chunk) for name, chunk in named.items()]

        def delete(path):
            self._valid.pop(path, None)
            try:
                self.fs.delete_file(path)
                return 1
            except FileNotFoundError:
                return 0

        with ThreadPoolExecutor(max_workers=16) as pool:  # one request per object on S3/GCS: overlap them
            deleted = sum(pool.map(delete, [p for p in inputs if p not in written]))
        return {"kind": kind, "files_before": len(files), "files_after": len(keep) + len(written),
                "points": len(index), "deleted": deleted}


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system or the
    filesystem cannot, so the caller takes the object-store path instead."""
    import ctypes
    import errno

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, a.encode(), at_fdcwd, b.encode(), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), a)


def _v1_settings(kind: str, row: dict) -> dict:
    """A schema-1 row with the settings added since filled in: v1 computed every point at what is now
    their neutral value (columns.NEUTRAL), which the v2 id leaves out."""
    from .columns import NEUTRAL, NULL_ONLY

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
        from .columns import point_id, point_keys

        keys = [k for k in point_keys(kind) if k != "sweep"]
        pts = [_v1_settings(kind, p) for p in table.select(keys).to_pylist()]
        ids = [point_id(p) if was_v1 else i
               for p, was_v1, i in zip(pts, v1, table.column("point_id").to_pylist())]
        table = put("point_id", pa.array(ids, pa.string()))
    return put("schema_version", pc.if_else(old, pa.scalar(SCHEMA_VERSION, version.type), version))


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


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """`t` with exactly the columns of `schema`: missing ones null, extra ones dropped, types cast."""
    cols = [t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _schema(kind: str) -> pa.Schema:
    return SCHEMAS[_kind(kind)]
