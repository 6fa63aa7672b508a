"""Storage URIs as the sweep's modules see them: a plain path, file://, s3:// or gs://.

Standard library only: `reconent sweep status` and `sweep submit` import it without Ray, Optuna or
pyarrow. (The store builds its filesystems from these URIs: reconent.sweep.store.filesystem.)"""
from __future__ import annotations

from pathlib import Path


def is_local(uri) -> bool:
    """A plain path or a file:// URI (not s3://, gs://, ...)."""
    return "://" not in str(uri) or str(uri).startswith("file://")


def local_path(uri) -> Path:
    """The path of a local URI (file:// dropped, ~ expanded), not yet absolute."""
    return Path(str(uri).removeprefix("file://")).expanduser()


def absolute_uri(uri):
    """Trials run with another working directory (and on other nodes): local paths must be absolute.
    Remote URIs and None pass through."""
    if uri is None or not is_local(uri):
        return uri
    return str(local_path(uri).resolve())


def split_sweep(uri: str) -> tuple[str, str]:
    """(storage root, sweep name) of the URI of a sweep's folder, `<storage>/<name>`."""
    root, _, name = str(uri).rstrip("/").rpartition("/")
    return absolute_uri(root or "."), name
