"""Parquet results of a sweep behind one small class (docs/schema.md): local disk, s3:// or gs://.

Layout under <storage>/<sweep name>/ (docs/CONTRACT.md):
    probe/part-<point_id>.parquet     one row per finished probe point
    train/part-<point_id>.parquet     one row per finished training point
    specs/<spec_hash>.yaml, specs/spec.yaml (the latest)
    quarantine/<kind>/...             corrupt parts, moved aside and never deleted

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

from .columns import KINDS, META_KEY, PROFILES, SCHEMA_VERSION, SCHEMAS  # noqa: F401 -- re-exported

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

    def _check(self, info: pafs.FileInfo, kind: str) -> tuple[str, str | None]:
        """(status, None) for a valid part, else (None, why). Reads the whole row: parts are small."""
        pid = info.base_name[len("part-"):-len(".parquet")]
        try:
            with self.fs.open_input_file(info.path) as f:
                pf = pq.ParquetFile(f)
                version = (pf.schema_arrow.metadata or {}).get(META_KEY)
                # Any reconent version counts: a newer part is a result too, never to be overwritten.
                if version is None or not version.isdigit():
                    return None, f"no {META_KEY.decode()} in the file metadata"
                t = pf.read()
        except Exception as e:  # noqa: BLE001 -- truncated, garbled, unreadable: all mean "not a valid part"
            return None, f"{type(e).__name__}: {e}"
        if t.num_rows != 1 or "point_id" not in t.column_names:
            return None, f"expected 1 row with a point_id, got {t.num_rows} rows, columns {t.column_names[:5]}..."
        if t.column("point_id")[0].as_py() != pid:
            return None, f"point_id {t.column('point_id')[0].as_py()!r} does not match the file name"
        status = t.column("status")[0].as_py() if "status" in t.column_names else None
        return status or "unknown", None

    def done(self, kind: str, tmp_max_age: float = TMP_MAX_AGE) -> dict[str, str]:
        """{point_id: status} of the VALID parts of `kind`. Corrupt parts go to quarantine/ (and so are
        recomputed); _tmp-* files older than `tmp_max_age` seconds (dead writers) are deleted."""
        now, todo, out = time.time(), [], {}
        for info in self._files(kind):
            name = info.base_name
            if name.startswith(("_tmp-", ".tmp-")):
                age = now - info.mtime.timestamp() if info.mtime else float("inf")
                if age > tmp_max_age:
                    try:
                        self.fs.delete_file(info.path)
                    except OSError:
                        pass
            elif name.startswith("part-") and name.endswith(".parquet"):
                seen = self._valid.get(info.path)
                if seen and seen[:2] == (info.size, info.mtime):
                    out[seen[2]] = seen[3]
                else:
                    todo.append(info)
        # Remote stores answer one file at a time; threads overlap the round trips (pyarrow drops the GIL).
        with ThreadPoolExecutor(max_workers=16) as pool:
            checked = list(pool.map(lambda i: self._check(i, kind), todo))
        for info, (status, why) in zip(todo, checked):
            pid = info.base_name[len("part-"):-len(".parquet")]
            if why is None:
                out[pid] = status
                self._valid[info.path] = (info.size, info.mtime, pid, status)
            else:
                self._quarantine(kind, info, why)
        return out

    def done_ids(self, kind: str, tmp_max_age: float = TMP_MAX_AGE) -> set[str]:
        """Ids of the points of `kind` that have a valid part (whatever their status)."""
        return set(self.done(kind, tmp_max_age))

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

    # ------------------------------------------------------------------ reading
    def read(self, kind: str) -> "pandas.DataFrame":  # noqa: F821
        """All parts of `kind` as one DataFrame in the documented schema (empty, with the columns, if none).

        Reads without modifying anything: unreadable parts are skipped with a warning (done() moves them)."""
        import pyarrow.dataset as ds

        schema = _schema(kind)
        files = sorted(i.path for i in self._files(kind)
                       if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))
        try:  # fast path: one dataset scan; the explicit schema fills columns an older part lacks with nulls
            table = ds.dataset(files, schema=schema, filesystem=self.fs, format="parquet").to_table()
        except (pa.ArrowInvalid, OSError):
            tables = []
            for path in files:
                try:
                    with self.fs.open_input_file(path) as f:
                        tables.append(_conform(pq.read_table(f), schema))
                except Exception as e:  # noqa: BLE001
                    warnings.warn(f"reconent: skipping unreadable part {path}: {e}", stacklevel=2)
            table = pa.concat_tables(tables) if tables else schema.empty_table()
        return table.to_pandas().sort_values("point_id", ignore_index=True)

    def kinds(self) -> list[str]:
        """The kinds that have at least one part."""
        return [k for k in KINDS if any(i.base_name.startswith("part-") for i in self._files(k))]


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
