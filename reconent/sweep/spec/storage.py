"""The spec's one check with I/O: can the storage be written? Called by the driver (load_spec with
check_storage=True), never by validation. Writes nothing."""
from __future__ import annotations

import os

from ..uri import is_local, local_path
from .errors import SpecError

STORAGE_TIMEOUT = 10.0  # seconds: S3 connect/request timeouts (2 attempts), GCS retry limit


def check_storage(uri: str) -> None:
    """Local: the folder (or its nearest existing parent) must be a writable directory.
    s3/gs: the filesystem must build (credentials, region) and the root must be listable."""
    fix = "fix the path or its permissions, or pass --storage PATH_OR_URI"
    if is_local(uri):
        p = local_path(uri).absolute()
        probe = p
        while not probe.exists():
            if probe.parent == probe:
                break
            probe = probe.parent
        if not probe.is_dir():
            raise SpecError(f"{str(probe)!r} exists and is not a directory; {fix}", "storage")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise SpecError(f"{str(probe)!r} is not writable; {fix}", "storage")
        return
    import pyarrow.fs as pafs

    from ..store import filesystem

    try:  # pyarrow's own timeouts bound the wait on a remote that does not answer
        fs, root = filesystem(uri, timeout=STORAGE_TIMEOUT)
        info = fs.get_file_info(root)
    except Exception as e:  # noqa: BLE001 -- any failure here means: not reachable
        why = str(e).replace("\n", " ")[:300]
        raise SpecError(f"cannot reach {uri!r}: {why}; check the bucket, credentials and region "
                        f"(s3://bucket/path?region=...), or pass --storage PATH_OR_URI", "storage") from None
    if info.type == pafs.FileType.File:
        raise SpecError(f"{uri!r} is a file, not a folder; {fix}", "storage")
