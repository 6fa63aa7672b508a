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

from .columns import CURVES, KINDS, PROFILES, SCHEMAS, carry
from .store import Store


class NoResults(FileNotFoundError):
    """Nothing to load under the given path(s)."""


def _sweeps(uri: str) -> list[Store]:
    """The sweeps at `uri`: the sweep itself if it has probe/, train/ or specs/, else its sub-folders that do."""
    return Store.find(uri)


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
    """One row per element of the per-row arrays `lists` (equal lengths within a row), numbered 1.. in `index`.

    A row without arrays (an 'error' row) has no elements; a single missing array is NaN throughout."""
    lists, carry = [c for c in lists if c in df], [c for c in carry if c in df]
    size = lambda v: 0 if v is None or (np.isscalar(v) and pd.isna(v)) else len(v)  # noqa: E731
    n = df[lists].map(size).max(axis=1) if len(df) and lists else pd.Series(dtype=int)
    out = df.loc[n > 0, carry + lists].copy()
    if not len(out):
        return pd.DataFrame(columns=carry + [index] + lists)
    for c in lists:  # a missing array becomes NaNs of the row's length, so explode keeps rows aligned
        out[c] = [v if size(v) else [np.nan] * k for v, k in zip(out[c], n[n > 0])]
    try:
        out = out.explode(lists)  # keeps each row's index label: cumcount numbers its elements
    except ValueError:  # pandas: "columns must have matching element counts"
        raise ValueError(f"{', '.join(lists)} have unequal lengths within a row") from None
    out[lists] = out[lists].astype(float)
    out.insert(len(carry), index, out.groupby(level=0).cumcount() + 1)
    return out.reset_index(drop=True)


def layers(df: pd.DataFrame) -> pd.DataFrame:
    """The probe rows long: one row per (point, layer), layer 1 first, with the per-layer profiles
    (relative_entropy_median/mean/q25/q75/norm_median, differential_entropy, decoder_loss) and the
    point's coordinates. A cnn/resnet row has depth + 3 layers (its conv stem is probed too);
    a row without profiles (status 'error') has none."""
    return _long(df, list(PROFILES), "layer", carry("probe"))


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """The training rows long: one row per (point, epoch), epoch 1 first, with accuracy and train_loss."""
    return _long(df, list(CURVES), "epoch", carry("train"))
