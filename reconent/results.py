"""Load sweep results as tidy pandas frames (the schema is in docs/schema.md).

    from reconent import results
    df = results.load("results/quickstart")        # one row per probe point
    long = results.layers(df)                       # one row per (point, layer)
    tr = results.training("results/quickstart")     # one row per training point
    acc = results.curves(tr)                        # one row per (point, epoch)

`load` takes one sweep folder (<storage>/<name>), a storage root holding several sweeps, or a
list of either; local paths, file://, s3:// and gs:// all work. It only reads: corrupt parts are
skipped with a warning (the next `reconent sweep run` quarantines and recomputes them).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from .store import KINDS, PROFILES, SCHEMAS, Store, filesystem

# The columns carried into the long tables: which point, where it sits in the grid, how it ran.
POINT = ["sweep", "point_id", "kind", "dataset", "arch", "activation", "width", "channels", "sigma_b2", "sigma_w2",
         "depth", "seed", "status"]
CARRY = {"probe": POINT + ["rtol", "cutoff"], "train": POINT + ["threshold", "accuracy_on", "epochs", "epochs_run",
                                                               "reached", "final_accuracy"]}


class NoResults(FileNotFoundError):
    """Nothing to load under the given path(s)."""


def _sweeps(uri: str) -> list[Store]:
    """The sweeps at `uri`: the sweep itself if it has probe/, train/ or specs/, else its sub-folders that do."""
    uri, sep, query = str(uri).partition("?")  # s3://bucket/x?region=... keeps its options
    uri, query = uri.rstrip("/"), sep + query
    fs, path = filesystem(uri + query)
    if fs.get_file_info(path).type != pafs.FileType.Directory:
        return []

    def is_sweep(p):
        return any(fs.get_file_info(f"{p}/{k}").type == pafs.FileType.Directory for k in (*KINDS, "specs"))

    if is_sweep(path):
        base, _, name = uri.rpartition("/")
        return [Store((base or ("/" if uri.startswith("/") else ".")) + query, name)]
    subs = [i for i in fs.get_file_info(pafs.FileSelector(path)) if i.type == pafs.FileType.Directory]
    return [Store(uri + query, i.base_name) for i in sorted(subs, key=lambda i: i.base_name) if is_sweep(i.path)]


def load(uri_or_paths, kind: str = "probe") -> pd.DataFrame:
    """Rows of `kind` ('probe' or 'train') from one or several sweeps, concatenated.

    Raises NoResults when the path(s) hold no parts at all; a sweep with parts of the other kind
    only gives an empty frame with the documented columns."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    uris = [uri_or_paths] if isinstance(uri_or_paths, (str, bytes)) or hasattr(uri_or_paths, "__fspath__") \
        else list(uri_or_paths)
    stores = list({(s.fs.type_name, s.root): s for u in uris for s in _sweeps(str(u))}.values())  # each sweep once
    if not any(s.kinds() for s in stores):
        where = ", ".join(map(str, uris))
        raise NoResults(f"no results under {where}; run `reconent sweep run SPEC` first")
    frames = [f for f in (s.read(kind) for s in stores) if len(f)]
    if not frames:
        return SCHEMAS[kind].empty_table().to_pandas()
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def training(uri_or_paths) -> pd.DataFrame:
    """The ground-truth training rows (accuracy and train_loss are per-epoch arrays; see curves())."""
    return load(uri_or_paths, "train")


def _long(df: pd.DataFrame, lists: list[str], index: str, carry: list[str]) -> pd.DataFrame:
    """One row per element of the per-row arrays `lists` (equal lengths within a row), numbered 1.. in `index`."""
    lists = [c for c in lists if c in df]
    carry = [c for c in carry if c in df]
    if not len(df) or not lists:
        return pd.DataFrame(columns=carry + [index] + lists)

    def n(v):
        return 0 if v is None or (np.isscalar(v) and pd.isna(v)) else len(v)

    lengths = np.array([max(n(v) for v in vals) for vals in zip(*(df[c] for c in lists))], dtype=int)
    out = df.loc[df.index.repeat(lengths), carry].reset_index(drop=True)
    out[index] = np.concatenate([np.arange(1, k + 1) for k in lengths]) if lengths.sum() else np.array([], int)
    for c in lists:
        parts = []
        for v, k in zip(df[c], lengths):
            a = np.full(k, np.nan) if n(v) == 0 else np.asarray(v, dtype=float)
            if len(a) != k:
                raise ValueError(f"{c} has {len(a)} values where the other per-{index} columns have {k}")
            parts.append(a)
        out[c] = np.concatenate(parts) if parts else np.array([], float)
    return out


def layers(df: pd.DataFrame) -> pd.DataFrame:
    """The probe rows long: one row per (point, layer), layer 1 first, with the per-layer profiles
    (relative_entropy_median/mean/q25/q75/norm_median, differential_entropy, decoder_loss) and the
    point's coordinates. A cnn/resnet row has depth + 3 layers (its conv stem is probed too);
    a row without profiles (status 'error') has none."""
    return _long(df, list(PROFILES), "layer", CARRY["probe"])


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """The training rows long: one row per (point, epoch), epoch 1 first, with accuracy and train_loss."""
    return _long(df, ["accuracy", "train_loss"], "epoch", CARRY["train"])
