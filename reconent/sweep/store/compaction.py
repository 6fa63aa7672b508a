"""Merging a sweep's one-row parts into a few larger files, so that no reader ever loses or doubles a
point: on object stores new files first, deletes after; on local disk one atomic exchange of folders."""
from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import pyarrow.fs as pafs

from ..columns import hash_json
from .index import TMP_MAX_AGE, _later
from .layout import COMPACT_PREFIX, _conform, _schema

COMPACT_ROWS = 10_000  # rows per compacted file: a 2,000-point sweep becomes one file of a few MB


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


class Compaction:
    """`compact` (needs Layout and Index)."""

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
