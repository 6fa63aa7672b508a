"""Where a sweep's files live and how one is written: every write goes under a `_tmp-*` name first and is
then moved to its final name, so a reader never sees half a file under a final name (local disk: an
atomic rename; S3/GCS: an object only appears once it is whole)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..columns import KINDS, SCHEMA_VERSION, SCHEMAS

COMPACT_PREFIX = "compact-"
SPEC = ("specs", "spec.yaml")  # the latest resolved spec; specs/<spec_hash>.yaml keeps every one
_ID = re.compile(r"^[0-9a-f]{16}$")


def filesystem(uri: str, timeout: float | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path, file://, s3:// or gs:// URI; local paths made absolute.

    pyarrow reads the URI's options (`s3://bucket/path?region=...&endpoint_override=host:port&scheme=http`)
    and the environment (AWS_ENDPOINT_URL, credentials); gs:// goes to STORAGE_EMULATOR_HOST where that is
    set (a GCS emulator, anonymously, as google-cloud-storage does). `timeout` (seconds) bounds the wait on
    a remote that does not answer, where the SDKs' defaults retry for minutes (GCS: 15): S3 connects and requests
    time out after `timeout` each, with 2 attempts in all; GCS stops retrying after `timeout`.
    None keeps pyarrow's defaults."""
    uri = str(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    fs, path = pafs.FileSystem.from_uri(uri)
    emulator = os.environ.get("STORAGE_EMULATOR_HOST", "").rstrip("/")
    if isinstance(fs, pafs.GcsFileSystem) and emulator and not fs_options(fs)["endpoint_override"]:
        # A GCS emulator, as google-cloud-storage (the lease's client) reads it: its address, no credentials
        scheme, _, host = emulator.rpartition("://")
        fs = pafs.GcsFileSystem(**{**fs_options(fs), "endpoint_override": host, "scheme": scheme or "http",
                                   "anonymous": True})
    if timeout is not None:
        # The options pyarrow parsed (what pickling the filesystem keeps), with the timeouts added.
        opts = fs_options(fs)
        if isinstance(fs, pafs.S3FileSystem):
            fs = pafs.S3FileSystem(**{**opts, "connect_timeout": timeout, "request_timeout": timeout,
                                      "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2)})
        elif isinstance(fs, pafs.GcsFileSystem):
            fs = pafs.GcsFileSystem(**{**opts, "retry_time_limit": timedelta(seconds=timeout)})
    return fs, path


def fs_options(fs: pafs.FileSystem) -> dict:
    """The options an S3/GCS filesystem was built with (what pickling it keeps); {} for others."""
    return fs.__reduce__()[1][0] if isinstance(fs, (pafs.S3FileSystem, pafs.GcsFileSystem)) else {}


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def _schema(kind: str) -> pa.Schema:
    return SCHEMAS[_kind(kind)]


def _conform(t: pa.Table, schema: pa.Schema) -> pa.Table:
    """`t` with exactly the columns of `schema`: missing ones null, extra ones dropped, types cast."""
    cols = [t.column(f.name).cast(f.type) if f.name in t.column_names else pa.nulls(len(t), f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


class Layout:
    """<uri>/<sweep_name>/: paths, atomic writes, parts, saved specs, listings."""

    def __init__(self, uri: str, sweep_name: str):
        self.uri, self.name = str(uri), sweep_name
        self.fs, base = filesystem(self.uri)
        self.root = f"{base.rstrip('/')}/{sweep_name}"
        self._valid: dict[str, tuple] = {}  # path -> (size, mtime, point_id, status) of parts already checked
        self.quarantined: list[str] = []  # parts moved aside by this instance

    @classmethod
    def at(cls, sweep_uri: str):
        """The store of the sweep whose folder is `sweep_uri` (`<storage>/<sweep name>`, URI options kept)."""
        uri, sep, query = str(sweep_uri).partition("?")  # s3://bucket/x?region=... keeps its options
        base, _, name = uri.rstrip("/").rpartition("/")
        return cls((base or ("/" if uri.startswith("/") else ".")) + sep + query, name)

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

    # ------------------------------------------------------------------ specs
    def save_spec(self, resolved: dict) -> str:
        """Save the resolved spec as specs/<spec_hash>.yaml and specs/spec.yaml (the latest); returns the hash."""
        import yaml

        h = resolved.get("spec_hash") or hashlib.sha256(
            json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()[:16]
        text = yaml.safe_dump(resolved, sort_keys=False).encode()
        self._put(self.path(SPEC[0]), f"{h}.yaml", text)
        self._put(self.path(SPEC[0]), SPEC[1], text)
        return h

    def spec_text(self) -> str | None:
        """The latest saved resolved spec as its YAML text, or None when this sweep has none."""
        try:
            with self.fs.open_input_stream(self.path(*SPEC)) as f:
                return f.read().decode()
        except FileNotFoundError:
            return None

    def load_spec(self) -> dict | None:
        """The latest saved resolved spec, or None when this sweep has none."""
        import yaml

        text = self.spec_text()
        return None if text is None else yaml.safe_load(text)

    # ------------------------------------------------------------------ listing
    def _files(self, kind: str) -> list[pafs.FileInfo]:
        sel = pafs.FileSelector(self.path(_kind(kind)), allow_not_found=True)
        return [i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File]

    def _data_files(self, kind: str) -> list[pafs.FileInfo]:
        """The visible row files of `kind`: single-point parts and compacted files."""
        return [i for i in self._files(kind) if i.base_name.endswith(".parquet")
                and i.base_name.startswith(("part-", COMPACT_PREFIX))]

    def kinds(self) -> list[str]:
        """The kinds that have at least one part."""
        return [k for k in KINDS if self._data_files(k)]

    def is_sweep(self) -> bool:
        """The folder holds a sweep: a probe/, train/ or specs/ folder."""
        return any(self.fs.get_file_info(self.path(k)).type == pafs.FileType.Directory for k in (*KINDS, SPEC[0]))
