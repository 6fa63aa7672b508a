"""The one declaration of a sweep point and of its Parquet row.

A *point* is a flat dict: its identity columns (where it sits: sweep, kind, dataset and the grid
coordinates) plus the settings of its kind. A *row* is the point plus how it ran and what it
measured. Everything else derives from the lists below:
- the grid axes of a spec (`axes()`, in enumeration order) and the resolved point (`point`);
- `point_id`, the one hash that names a point everywhere (parts, resume, analysis, synthetic rows);
- the Parquet schema of each kind (`schema`), and so the store and the trial's empty row;
- the keys the results loader carries into long tables (`carry`) and the analysis's grouping (`group`);
- the column tables of docs/schema.md (`markdown`; a test compares them).

Adding a column means adding one `Column` here (and bumping SCHEMA_VERSION when its meaning or
type changes); nothing else lists columns. The one exception is an architecture's sizing setting
(`width`, `channels`, or one a registered architecture brings: reconent.science.archs.Setting): its
coordinate column is derived from that registry each time it is asked for (`coords()`), so a setting
registered after this module was imported is a grid axis and a stored column too.
"""
from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa

from reconent.science import archs

SCHEMA_VERSION = 4  # 2: `rtol` left the point id (store.py migrates v1 parts); 3: probe `steps` became the
# decoder budget (a setting) and the old result `steps` is `steps_run` (store.py reads v2 rows that way);
# 4: training's `eval_every`, `stop` and the (step, accuracy) curve (v3 rows read as once per epoch, never stopped)
KINDS = ("probe", "train")
META_KEY = b"reconent_schema_version"

_str, _int, _f64, _list, _bool = pa.string(), pa.int64(), pa.float64(), pa.list_(pa.float64()), pa.bool_()
_ts = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    doc: str
    nullable: bool = False  # documented as "null" (the schema itself is nullable throughout, for error rows)
    axis: int | None = None  # grid axis: its place in enumeration order (the highest varies fastest; ties: in order)
    identity: bool = True  # a setting hashed into the point id; False: an analysis rule, stored but re-derivable
    # A setting added after points were stored: at this value it is left out of the point id, so the ids
    # of points that ran before it existed (with this behaviour) stay the same. NULL_ONLY: left out when null.
    neutral: object = None
    # A result column: the key of the science's `summary()` it is read from, where the names differ.
    source: str | None = None


NULL_ONLY = object()  # Column.neutral for a setting that is left out of the point id only when it is null


# ----------------------------------------------------------------------------- identity
# Who wrote the row and which point it is (not hashed into the point id, except `kind`).
META = [
    Column("schema_version", pa.int32(), f"{SCHEMA_VERSION}"),
    Column("sweep", _str, "the sweep's name"),
    Column("point_id", _str, "16 hex digits, see above (equals the file name)"),
    Column("spec_hash", _str, "the resolved spec the row was computed for (`specs/<spec_hash>.yaml`)"),
]
# Where the point sits. Every coordinate is hashed into the point id (a sizing setting other than width and
# channels only when it is set). Between these two lists: the sizing settings, see coords().
_COORDS_BEFORE = [
    Column("kind", _str, "`probe` or `train`"),
    Column("dataset", _str, "`mnist5k`, `mnist`, `fashion_mnist`, `cifar10_gray`, `white_noise`"),
    Column("arch", _str, "a registered architecture (`reconent.science.archs`): `mlp`, `cnn`, `resnet`", axis=0),
    Column("activation", _str, "`tanh` or `relu`", axis=1),
]
_COORDS_AFTER = [
    Column("depth", _int, "counted layers: Dense layers (mlp) or blocks after the 3-layer conv stem (cnn, resnet)",
           axis=7),
    Column("sigma_w2", _f64, "weight variance at initialisation", axis=6),
    Column("sigma_b2", _f64, "bias variance at initialisation", axis=4),
    Column("seed", _int, "initialisation and batch order (never the data split)", axis=5),
]
_SIZE_AXIS = 2  # the sizing settings' place in enumeration order (after arch and activation), in coords() order
_ARROW = {int: _int, float: _f64, str: _str}
# Sizing settings hashed even when null: they were columns before settings could be registered, and the ids of
# stored points include them. Every later one is left out of the id while null, so no stored id changes.
_HASHED_WHEN_NULL = ("width", "channels")


def _setting_column(s: archs.Setting) -> Column:
    return Column(s.name, _ARROW[s.type], s.doc, True, axis=_SIZE_AXIS,
                  neutral=None if s.name in _HASHED_WHEN_NULL else NULL_ONLY)


def coords() -> list[Column]:
    """The coordinate columns: where a point sits, the registered architectures' sizing settings included."""
    return list(_coords(archs.settings()))


@functools.lru_cache(maxsize=8)
def _coords(settings: tuple) -> tuple[Column, ...]:
    sizes = [_setting_column(s) for s in settings]
    taken = {c.name for c in META + _COORDS_BEFORE + _COORDS_AFTER + RUN} | {c.name for k in KINDS
                                                                           for c in SETTINGS[k] + RESULTS[k]}
    clash = [c.name for c in sizes if c.name in taken]
    if clash:
        raise ValueError(f"the architecture setting {clash[0]!r} would replace a column of the same name; rename it")
    return (*_COORDS_BEFORE, *sizes, *_COORDS_AFTER)


# ----------------------------------------------------------------------------- settings of each kind
_batch = Column("batch_size", _int, "mini-batch size")
_samples = Column("train_samples", _int, "training samples used; null = the whole training split", True)
SETTINGS = {
    "probe": [
        Column("epochs", _int, "the decoder budget in passes over the training split (`epochs: 1` is one pass); "
               "null when the budget is given as `steps`", True),
        Column("steps", _int, "the decoder budget in Adam steps (default 938: one epoch of the 60,000-image MNIST); "
               "a smaller split is cycled in reshuffled passes; null when the budget is given as `epochs`", True,
               neutral=NULL_ONLY),
        Column("checkpoints", _str, "where the cascade is also evaluated on the way (the anytime probe): `auto` "
               "(steps/16, steps/4 and steps), `none`, or comma-separated steps; extra readings of the same training, "
               "so not part of the point id", True, identity=False),
        _batch,
        Column("lr", _f64, "decoder learning rate (Adam)"),
        Column("rtol", _f64, "the cutoff rule used for `cutoff` (not part of the point id: an analysis rule)",
               identity=False),
        _samples,
        Column("eval_samples", _int, "held-out samples the entropy is measured on"),
        Column("eval_depths", _str, "`all` (every cascade, O(L²)) or `search` (a sparse grid of depths, then finer "
               "grids around the cutoff down to every layer; the other layers are null in the profiles); "
               "docs/performance.md",
               neutral="all"),
        Column("entropy_dtype", _str, "`float64` or `float32`: precision of the entropies", neutral="float64"),
        Column("tf32", _bool, "TF32 matmuls allowed on CUDA (fp32 with a 10-bit mantissa); no effect on CPU",
               neutral=False),
    ],
    "train": [
        Column("epochs", _int, "the maximum number of epochs (training stops once accuracy > threshold)"),
        Column("threshold", _f64, "accuracy that counts as trained"),
        Column("lr", _f64, "learning rate (plain SGD)"),
        _batch,
        _samples,
        Column("accuracy_on", _str, "`test`, or `train` for memorising white noise"),
        Column("eval_every", _int, "steps between accuracy checks inside an epoch (training stops soon after it "
               "passes); null = at each epoch's end only", True, neutral=NULL_ONLY),
        Column("stop", _str, "the rule that stops a hopeless run early (`none`, `extrapolate`; docs/budgets.md): its "
               "verdict is predicted, see `stopped_early`", neutral="none"),
    ],
}

# ----------------------------------------------------------------------------- how it ran
RUN = [
    Column("status", _str, "`ok`; `diverged` (a NaN/inf: a result, not retried); `error` (the science raised; "
           "see `error`)"),
    Column("error", _str, "the exception, one line, for `error`; what went non-finite for `diverged`", True),
    Column("seconds", _f64, "wall time of the point inside its trial"),
    Column("device", _str, "`cpu` or `cuda` (after resolving `device: auto`)"),
    Column("gpu_name", _str, "the CUDA device's name (`torch.cuda.get_device_name`); null on CPU", True),
    Column("cuda_version", _str, "CUDA version torch was built with; null on CPU", True),
    Column("cudnn_version", _str, "cuDNN version torch uses; null on CPU", True),
    Column("node", _str, "host name of the worker"),
    Column("node_id", _str, "Ray node id", True),
    Column("started_at", _ts, "UTC"),
    Column("finished_at", _ts, "UTC"),
    Column("reconent_version", _str, "package version"),
    Column("torch_version", _str, ""),
    Column("ray_version", _str, ""),
    Column("python_version", _str, ""),
    Column("code_version", _str, "git sha of the code that ran, else the package version"),
]

# ----------------------------------------------------------------------------- what it measured
PROFILES = ("relative_entropy_median", "relative_entropy_mean", "relative_entropy_q25", "relative_entropy_q75",
            "relative_entropy_norm_median", "differential_entropy", "decoder_loss")
_PROFILE_DOCS = {
    "relative_entropy_median": "S_ℓ per layer (layer 1 first), median over held-out samples, nats",
    "relative_entropy_mean": "S_ℓ, mean over samples",
    "relative_entropy_q25": "S_ℓ, first quartile over samples",
    "relative_entropy_q75": "S_ℓ, third quartile over samples",
    "relative_entropy_norm_median": "median of S_ℓ / S_L: re-derives the cutoff for any rtol",
    "differential_entropy": "differential entropy of the reconstructions, per layer",
    "decoder_loss": "mean MSE of decoder g_ℓ over its last pass over the training split (the steps of that pass "
                    "that ran, when the budget ends inside a pass)",
}
RESULTS = {
    "probe": [Column("cutoff", _int, "last layer whose information survives, by the `rtol` rule (SCIENCE §2)", True)]
    + [Column(p, _list, _PROFILE_DOCS[p]) for p in PROFILES]
    + [Column("steps_run", _int, "Adam steps each decoder took: the budget, whether given as `steps` or `epochs` "
              "(schema 2 called this result `steps`)"),
       Column("checkpoint_steps", pa.list_(_int), "the steps at which the cascade was evaluated, ascending; the last "
              "is `steps_run`", True),
       Column("checkpoint_norm_median", pa.list_(_list), "per checkpoint, the median of S_ℓ / S_L per layer (null "
              "where that evaluation skipped the layer; intermediate ones use `eval_depths: search`); the last is "
              "`relative_entropy_norm_median`: re-derives the cutoff at every checkpoint for any rtol", True),
       Column("train_seconds", _f64, "wall time of the decoder training"),
       Column("path", _str, "`stacked` or `generic` training path of the probe")],
    "train": [Column("accuracy", _list, "accuracy after each epoch, on `accuracy_on`"),
              Column("train_loss", _list, "mean cross-entropy (on logits) of each epoch"),
              Column("epochs_run", _int, "epochs actually run (training stops once accuracy > threshold)",
                     source="epochs"),
              Column("reached", _bool, "the threshold was passed"),
              Column("final_accuracy", _f64, "the last accuracy"),
              Column("curve_steps", pa.list_(_int), "the step of every accuracy check, ascending (epoch ends, and every "
                     "`eval_every` steps); null before schema 4", True),
              Column("curve_accuracy", _list, "the accuracy at each of `curve_steps`", True),
              Column("steps_per_epoch", _int, "optimizer steps in one epoch (maps `curve_steps` to epochs)", True),
              Column("stopped_early", _bool, "the `stop` rule ended the run after `epochs_run` epochs: not reached, "
                     "and untrainable at its budget by prediction, not observation"),
              Column("stop_bound", _f64, "the rule's optimistic accuracy at the budget when it stopped the run", True),
              Column("stop_rate", _f64, "the recent gain of the best accuracy per epoch that it extrapolated", True)],
}
# Each kind's result columns -> the key of the science's summary() (ProbeResult / TrainResult) that fills it: the
# trial copies these, so a new result is one column here.
SOURCES = {k: {c.name: c.source or c.name for c in cols} for k, cols in RESULTS.items()}
# Per-epoch lists of a training row (the long table `results.curves`).
CURVES = ("accuracy", "train_loss")


# ----------------------------------------------------------------------------- derived
def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return kind


def columns(kind: str) -> list[Column]:
    """Every column of a row of `kind`, in schema order."""
    return META + coords() + SETTINGS[_kind(kind)] + RUN + RESULTS[kind]


def schema(kind: str) -> pa.Schema:
    """The Parquet schema of `kind`; every part of a kind has exactly these columns. An older part without a
    column (a setting registered since) reads it as null (store.layout._conform)."""
    return pa.schema([(c.name, c.type) for c in columns(kind)],
                     metadata={META_KEY: str(SCHEMA_VERSION).encode(), b"reconent_kind": kind.encode()})


class _Schemas(Mapping):
    """SCHEMAS[kind] is schema(kind) when it is asked for: the settings registered by then included."""

    def __getitem__(self, kind):
        if kind not in KINDS:
            raise KeyError(kind)
        return schema(kind)

    def __iter__(self):
        return iter(KINDS)

    def __len__(self):
        return len(KINDS)


SCHEMAS = _Schemas()


def axes() -> tuple[str, ...]:
    """The grid axes in enumeration order (the last varies fastest)."""
    return tuple(c.name for c in sorted((c for c in coords() if c.axis is not None), key=lambda c: c.axis))


# One boundary L*(σ_w²) per group: every coordinate except the phase diagram's axes and the replicate.
DIAGRAM = ("sigma_w2", "depth")
REPLICATE = "seed"


def group() -> list[str]:
    """The analysis's group keys: every coordinate but the diagram's axes, the replicate and the kind."""
    return [c.name for c in coords() if c.name not in (*DIAGRAM, REPLICATE, "kind")]


def point_keys(kind: str) -> list[str]:
    """The keys of a resolved point of `kind`: its sweep, coordinates and settings."""
    return ["sweep"] + [c.name for c in coords() + SETTINGS[_kind(kind)]]


def point(kind: str, sweep: str, coords: dict, settings: dict) -> dict:
    """A resolved point from its coordinates and settings; refuses missing or unknown keys."""
    p = {"sweep": sweep, **coords, "kind": kind, **settings}
    keys = point_keys(kind)
    missing, extra = [k for k in keys if k not in p], sorted(set(p) - set(keys))
    if missing or extra:
        raise ValueError(f"{kind} point: missing {missing}, unknown {extra}")
    return {k: p[k] for k in keys}


# Settings stored with a row but not hashed into its id: changing them changes no measurement.
NOT_IDENTITY = {k: {c.name for c in SETTINGS[k] if not c.identity} for k in KINDS}
# Settings left out of the id at their neutral value (Column.neutral).
NEUTRAL = {k: {c.name: c.neutral for c in SETTINGS[k] if c.neutral is not None} for k in KINDS}
# The budgets of each kind: what a boundary means only together with (reports state them; docs/budgets).
BUDGETS = {"probe": ("steps", "epochs", "depth"), "train": ("epochs", "threshold")}


def point_id(point: dict) -> str:
    """First 16 hex of sha256 of the canonical JSON (sorted keys) of the point without `sweep` and
    without its analysis-only settings (`NOT_IDENTITY`, e.g. the probe's `rtol`) and without settings at
    their neutral value (`NEUTRAL`, e.g. the probe's `eval_depths: all`).

    The one function that names a point: stored parts are found by it, so it must never change
    for the same point (a change needs a schema migration, see store.migrate)."""
    skip = {"sweep", *NOT_IDENTITY.get(point.get("kind"), ())}
    neutral = {**NEUTRAL.get(point.get("kind"), {}), **{c.name: c.neutral for c in coords() if c.neutral is not None}}
    # a neutral setting that is None (a row or point from before it existed) is neutral too
    return hash_json({k: v for k, v in point.items()
                      if k not in skip and not (k in neutral and (v is None or v == neutral[k]))})


def point_id_v1(point: dict) -> str:
    """The schema-1 point id (every setting hashed, `rtol` too): names the parts of sweeps stored before v2."""
    return hash_json({k: v for k, v in point.items() if k != "sweep"})


def hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def carry(kind: str) -> list[str]:
    """Columns the long tables carry for each element: identity, settings, status and scalar results."""
    scalar = [c.name for c in RESULTS[_kind(kind)] if not pa.types.is_list(c.type)]
    return ["sweep", "point_id"] + [c.name for c in coords() + SETTINGS[kind]] + ["status"] + scalar


# ----------------------------------------------------------------------------- docs
def _type(t: pa.DataType) -> str:
    return {"list<item: double>": "list\\<double\\>", "list<item: int64>": "list\\<int64\\>",
            "list<item: list<item: double>>": "list\\<list\\<double\\>\\>",
            "timestamp[us, tz=UTC]": "timestamp[us, UTC]"}.get(str(t), str(t))


def markdown(section: str) -> str:
    """The column table of docs/schema.md for `section`: 'common', 'probe' or 'train'."""
    cols = META + coords() + RUN if section == "common" else SETTINGS[section] + RESULTS[section]
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| {c.name} | {_type(c.type)}{', null' if c.nullable else ''} | {c.doc} |" for c in cols]
    return "\n".join(lines)


if __name__ == "__main__":  # python -m reconent.sweep.columns: print the tables for docs/schema.md
    for s in ("common", *KINDS):
        print(f"<!-- columns:{s} -->\n{markdown(s)}\n<!-- /columns:{s} -->\n")
