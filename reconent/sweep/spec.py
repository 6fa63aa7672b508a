"""Sweep specifications: YAML in, validated `Spec` out, flat points for the orchestrator (docs/CONTRACT.md).

A spec is checked completely before anything runs: pydantic checks the structure (every model
forbids unknown keys), our validators check the meaning (variances >= 0, depth >= 1, a subset
point that is on the grid, ...). Every problem becomes one `SpecError` whose one-line message
starts with the field path, e.g. `grid.depth[2]: depth must be >= 1, got 0`. Validation never
writes anything; `load_spec` also checks that the storage is reachable.

Example (see sweeps/*.yaml for commented ones):

    name: quickstart
    dataset: mnist5k
    grid:
      sigma_w2: [0.5, 1.0, 1.76, 3.0]     # or a range {start: 0.1, stop: 6, num: 60}
      depth: {start: 2, stop: 200, num: 12, log: true}
    train: {points: {stride: {depth: 2}}, epochs: 2, threshold: 0.8}
"""
from __future__ import annotations

import itertools
import math
import os
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
import pyarrow as pa
import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError,
                      field_validator, model_validator)

from reconent import __version__
from reconent.errors import UserError

from . import columns
from .columns import AXES, hash_json, point_id  # noqa: F401 -- point_id re-exported
from .uri import is_local, local_path

_TYPES = {c.name: c.type for c in columns.COORDS}

# Grid axes in the order points are enumerated (the last varies fastest), by type.
FLOAT_AXES = tuple(a for a in AXES if pa.types.is_floating(_TYPES[a]))
INT_AXES = tuple(a for a in AXES if pa.types.is_integer(_TYPES[a]))
STR_AXES = tuple(a for a in AXES if pa.types.is_string(_TYPES[a]))
# Keys that resolved() adds; load_spec drops them so a saved spec.yaml can be run again as is.
META_KEYS = ("reconent_version", "spec_hash", "n_points")
STORAGE_TIMEOUT = 10.0  # seconds: S3 connect/request timeouts (2 attempts), GCS retry limit


class SpecError(UserError):
    """A bad sweep spec. `str(e)` is one line: `<field path>: <what is wrong and what is allowed>`."""

    def __init__(self, msg: str, field: str = "", file: str = ""):
        self.field, self.msg, self.file = field, msg, file
        super().__init__(": ".join(x for x in (file, field, msg) if x))


# ----------------------------------------------------------------------------- models
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    HINT: ClassVar[str] = ""  # appended to the unknown-key message

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, v):
        # extra="forbid" alone says only "Extra inputs are not permitted"; name the allowed keys.
        if isinstance(v, dict):
            bad = [k for k in v if k not in cls.model_fields]
            if bad:
                raise SpecError(f"unknown key; allowed: {', '.join(cls.model_fields)}"
                                + (f" ({cls.HINT})" if cls.HINT else ""), str(bad[0]))
        return v


class Range(Strict):
    """`{start, stop, num}`: np.linspace (np.geomspace with log: true); int axes round and drop repeats."""
    start: float
    stop: float
    num: int = Field(ge=1, le=100_000)
    log: bool = False

    def values(self, axis: str) -> list:
        if self.log and (self.start <= 0 or self.stop <= 0):
            raise SpecError(f"a log range needs start and stop > 0, got {self.start} and {self.stop}", axis)
        v = (np.geomspace if self.log else np.linspace)(self.start, self.stop, self.num)
        if axis in INT_AXES:
            return sorted({int(round(x)) for x in v})
        return [float(x) for x in v]


def _axis_kind(v):
    return "<range>" if isinstance(v, (dict, Range)) else "<list>"


def _axis(t):  # a list of values or a range; tags in <> are dropped from error paths
    return Annotated[Union[Annotated[list[t], Tag("<list>")], Annotated[Range, Tag("<range>")]],
                     Discriminator(_axis_kind)]


class Grid(Strict):
    sigma_w2: _axis(float)
    depth: _axis(int) | None = None  # required unless a boundary search without probes sets its own depths
    sigma_b2: _axis(float) = [0.05]
    seed: _axis(int) = [0]
    width: _axis(int) | None = None  # mlp hidden width; None = the input size
    channels: _axis(int) | None = None  # cnn/resnet width; None = the arch's default
    activation: _axis(str) = ["tanh"]
    arch: _axis(str) | None = None  # None = the spec's `arch`
    _values: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _expand(self):
        from reconent.science import archs

        for axis in AXES:
            raw = getattr(self, axis)
            if raw is None:
                continue
            if isinstance(raw, Range):
                if axis in STR_AXES:
                    raise SpecError("a range needs numbers; give a list", axis)
                vals = raw.values(axis)
            else:
                vals = list(raw)
            if not vals:
                raise SpecError("empty axis; give at least one value (leave the key out for the default)", axis)
            for i, v in enumerate(vals):
                where = axis if isinstance(raw, Range) else f"{axis}[{i}]"
                if axis in FLOAT_AXES:
                    if not (math.isfinite(v) and v >= 0):
                        raise SpecError(f"{axis} is a variance and must be finite and >= 0, got {v}", where)
                    vals[i] = float(f"{v:.12g}")  # 1.76 from a list and from a linspace give one point id
                elif axis in ("depth", "width", "channels") and v < 1:
                    raise SpecError(f"{axis} must be >= 1, got {v}", where)
                elif axis == "seed" and v < 0:
                    raise SpecError(f"seed must be >= 0, got {v}", where)
                elif axis in STR_AXES:
                    allowed = archs.ACTIVATIONS if axis == "activation" else archs.names()
                    if v not in allowed:
                        raise SpecError(f"unknown {axis} {v!r}; allowed: {', '.join(allowed)}", where)
            dup = next((i for i, v in enumerate(vals) if v in vals[:i]), None)
            if dup is not None:
                raise SpecError(f"duplicate value {vals[dup]!r} (each point must be unique)", f"{axis}[{dup}]")
            self._values[axis] = vals
        return self


class Probe(Strict):
    enabled: bool = True
    # The decoder budget (science.budget; docs/budgets.md): `steps` (default 938, one epoch of the 60k MNIST) or
    # `epochs` (passes over the split; `epochs: 1` keeps the ids of points stored before `steps` existed).
    steps: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    # Where the cascade is also evaluated on the way: 'auto' (steps/16, steps/4, steps), 'none', or steps.
    checkpoints: str | list[int] = "auto"
    batch_size: int = Field(64, ge=1)
    lr: float = Field(1e-3, gt=0)
    rtol: float | None = Field(None, gt=0, lt=1)  # None: the arch's default (archs.Arch.rtol)
    train_samples: int | None = Field(None, ge=1)  # None: the whole training split
    eval_samples: int | None = Field(500, ge=2)
    # How the cascades are evaluated and how precisely (science.probe; measured in docs/performance.md).
    # 'all' here (unlike `reconent probe`, whose default is 'search'): a sweep's report draws heatmaps
    # of every layer, and 'all' keeps the ids of points stored before the setting existed.
    eval_depths: Literal["search", "all"] = "all"
    entropy_dtype: Literal["float64", "float32"] = "float64"
    tf32: bool = False  # allow TF32 matmuls on CUDA (off: plain fp32, as on the CPU)
    # 'deepest': probe only the deepest grid depth of each (σ_w², σ_b², seed, ...) combination. By the
    # prefix property its first ℓ layers are the depth-ℓ network, so it predicts every shallower
    # depth at a fraction of the cost (the analysis reads it that way). 'all': one probe per point.
    depths: Literal["all", "deepest"] = "all"

    @model_validator(mode="after")
    def _budget(self):
        from reconent.science.budget import checkpoints_text, parse_checkpoints

        if self.steps is not None and self.epochs is not None:
            raise SpecError(f"give the decoder budget once: steps ({self.steps}) or epochs ({self.epochs}), not both",
                            "steps")
        try:
            parse_checkpoints(self.checkpoints, self.steps)
        except ValueError as e:
            raise SpecError(str(e), "checkpoints") from None
        self.checkpoints = checkpoints_text(self.checkpoints)
        return self

    @property
    def budget(self) -> dict:
        """The budget settings of a probe point: `steps` (DEFAULT_STEPS when neither is given) or `epochs`."""
        from reconent.science.budget import DEFAULT_STEPS

        if self.epochs is not None:
            return {"epochs": self.epochs, "steps": None}
        return {"epochs": None, "steps": self.steps if self.steps is not None else DEFAULT_STEPS}


class Stride(Strict):
    HINT: ClassVar[str] = ("train.points is 'none', 'all', {stride: {axis: k}}, {subset: [{axis: value, ...}, ...]} or "
                           "{boundary: {budget, depth: {min, max}, resolution}}")
    stride: dict[str, Annotated[int, Field(ge=1)]]


class Subset(Strict):
    HINT: ClassVar[str] = Stride.HINT
    subset: list[dict[str, Any]] = Field(min_length=1)


class DepthRange(Strict):
    min: int = Field(ge=1)
    max: int = Field(ge=1, le=100_000)

    @model_validator(mode="after")
    def _order(self):
        if self.max < self.min:
            raise SpecError(f"max must be >= min, got min {self.min} and max {self.max}", "max")
        return self


class BoundarySettings(Strict):
    """An adaptive search for the true boundary (reconent.sweep.search.boundary): the trainings are chosen one
    batch at a time, where the model of P(trainable | depth) of each σ_w² column is least sure."""
    budget: int = Field(ge=1)  # trainings in all, stored ones included
    depth: DepthRange  # the depths a training may have (required: the grid's depths are the probes')
    resolution: float = Field(1.0, ge=0)  # a column is done when P(|L - median| <= resolution) >= confidence
    confidence: float = Field(0.9, gt=0, lt=1)
    noise: float = Field(0.25, ge=0, lt=0.5)  # the label-flip probability the model allows at the boundary


class Boundary(Strict):
    HINT: ClassVar[str] = Stride.HINT
    boundary: BoundarySettings


def _points_kind(v):
    if isinstance(v, str):
        return "<name>"
    if isinstance(v, Subset) or (isinstance(v, dict) and "subset" in v):
        return "<subset>"
    if isinstance(v, Boundary) or (isinstance(v, dict) and "boundary" in v):
        return "<boundary>"
    return "<stride>"


class Train(Strict):
    """Ground truth by full training on a selection of the grid's points (SCIENCE §3)."""
    points: Annotated[Union[Annotated[Literal["none", "all"], Tag("<name>")], Annotated[Stride, Tag("<stride>")],
                            Annotated[Subset, Tag("<subset>")], Annotated[Boundary, Tag("<boundary>")]],
                      Discriminator(_points_kind)] = "none"
    epochs: int = Field(1, ge=1)  # at most; training stops once the accuracy passes the threshold
    threshold: float = Field(0.8, gt=0, le=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, ge=1)
    train_samples: int | None = Field(None, ge=1)
    accuracy_on: Literal["test", "train"] | None = None  # None: 'train' for white_noise, else 'test'


class Resources(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)  # a fraction packs several trials on one GPU

    @field_validator("gpu")
    @classmethod
    def _ray_fractions(cls, v):
        if v > 1 and v != int(v):
            raise SpecError(f"Ray allows a fraction of one GPU or a whole number of GPUs, got {v}")
        return v


class Spec(Strict):
    name: str  # names the results folder <storage>/<name>
    dataset: str
    data_root: str | None = None
    download: bool = False
    arch: str = "mlp"
    grid: Grid
    probe: Probe = Probe()
    train: Train = Train()
    resources: Resources = Resources()
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when the trial got a GPU
    storage: str = "results"  # a local path, file://, s3:// or gs:// URI
    max_failures: int = Field(3, ge=-1)  # Tune retries of infrastructure failures per trial (-1: forever)

    @field_validator("name")
    @classmethod
    def _name(cls, v):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", v) or v in (".", ".."):
            raise SpecError(f"use letters, digits, '_', '.' and '-' (it names the results folder), got {v!r}")
        return v

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, v):
        from reconent.science.data import DATASETS

        if v not in DATASETS:
            raise SpecError(f"unknown dataset {v!r}; allowed: {', '.join(DATASETS)}")
        return v

    @field_validator("arch")
    @classmethod
    def _arch(cls, v):
        from reconent.science import archs  # the registry: archs are added there

        if v not in archs.names():
            raise SpecError(f"unknown arch {v!r}; allowed: {', '.join(archs.names())}")
        return v

    @field_validator("storage")
    @classmethod
    def _storage_scheme(cls, v):
        if not v.strip():
            raise SpecError("empty; give a local path or an s3:// or gs:// URI")
        scheme = v.split("://", 1)[0] if "://" in v else ""
        if scheme not in ("", "file", "s3", "gs", "gcs"):
            raise SpecError(f"unsupported scheme {scheme}://; use a local path, file://, s3:// or gs://")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        from reconent.science import archs

        if "arch" in self.model_fields_set and self.grid.arch is not None:
            raise SpecError("give either `arch` or `grid.arch`, not both", "arch")
        sizes = {a: archs.get(a).size for a in self.axes()["arch"]}
        for size in archs.SIZES:
            if getattr(self.grid, size) is not None and size not in sizes.values():
                by = sorted(a for a in archs.names() if archs.get(a).size == size)
                raise SpecError(f"{size} sizes the {'/'.join(by)}; for {', '.join(sizes)} use grid."
                                f"{', grid.'.join(sorted(set(sizes.values())))}", f"grid.{size}")
        if self.device == "cuda" and self.resources.gpu == 0:
            raise SpecError("'cuda' needs resources.gpu > 0 (Ray hides GPUs from trials that did not ask for one); "
                            "or use device: auto", "device")
        if self.grid.depth is None and (self.probe.enabled or self.boundary is None):
            raise SpecError("required field is missing (only a boundary search without probes, which trains at "
                            "train.points.boundary.depth, leaves it out)", "grid.depth")
        self._train_mask()  # checks the selection against the grid
        if self.boundary is not None:
            self._check_boundary()
        if not self.points() and self.boundary is None:
            raise SpecError("this sweep has no points: probe.enabled is false and train.points is 'none'")
        return self

    # ------------------------------------------------------------------ points
    def axes(self) -> dict[str, list]:
        """The expanded grid: every axis as a list of values, in AXES order (None where not given)."""
        v = self.grid._values
        out = {a: v.get(a, [None]) for a in AXES}
        if "arch" not in v:
            out["arch"] = [self.arch]
        return out

    def _combos(self) -> list[dict]:
        from reconent.science import archs

        ax = self.axes()
        seen, out = set(), []
        for vals in itertools.product(*ax.values()):
            c = dict(zip(ax, vals))
            # an arch is sized by one setting only (archs.build rejects the other)
            for size in archs.SIZES:
                if size != archs.get(c["arch"]).size:
                    c[size] = None
            key = tuple(c.values())
            if key not in seen:
                seen.add(key)
                out.append(c)
        return out

    def _train_mask(self) -> list[bool]:
        sel, ax, combos = self.train.points, self.axes(), self._combos()
        if sel in ("none", "all") or isinstance(sel, Boundary):  # a boundary search chooses its own points
            return [sel == "all"] * len(combos)
        given = [a for a in AXES if a in self.grid._values or a == "arch"]
        if isinstance(sel, Stride):
            for a in sel.stride:
                if a not in given:
                    raise SpecError(f"{a!r} is not an axis of the grid; stride over: {', '.join(given)}",
                                    f"train.points.stride.{a}")
            index = {a: {v: i for i, v in enumerate(ax[a])} for a in sel.stride}
            # None (width of a conv point, channels of an mlp point) is not strided
            return [all(index[a].get(c[a], 0) % k == 0 for a, k in sel.stride.items()) for c in combos]
        mask = [False] * len(combos)
        for i, want in enumerate(sel.subset):
            where = f"train.points.subset[{i}]"
            if not want:
                raise SpecError("empty point; give coordinates such as {sigma_w2: 1.76, depth: 10}", where)
            for a, v in want.items():
                if a not in given:
                    raise SpecError(f"{a!r} is not an axis of the grid; use: {', '.join(given)}", f"{where}.{a}")
                if not any(_same(v, g) for g in ax[a]):
                    raise SpecError(f"{a}={v!r} is not on the grid; grid.{a} has: {_short(ax[a])}", f"{where}.{a}")
            hits = [j for j, c in enumerate(combos) if all(_same(v, c[a]) for a, v in want.items())]
            if not hits:
                raise SpecError(f"matches no grid point ({want})", where)
            for j in hits:
                mask[j] = True
        return mask

    def _rtol(self, arch: str) -> float:
        from reconent.science import archs

        return float(self.probe.rtol if self.probe.rtol is not None else archs.get(arch).rtol)

    def points(self) -> list[dict]:
        """Every resolved point (CONTRACT.md): the probe points of all combinations, then the train points."""
        combos, out, t = self._combos(), [], self.train
        coords = lambda c: {**c, "dataset": self.dataset}  # noqa: E731
        if self.probe.enabled:
            p, deepest = self.probe, max(self.axes()["depth"])
            out += [columns.point("probe", self.name, coords(c), {
                **p.budget, "checkpoints": p.checkpoints, "batch_size": p.batch_size, "lr": float(p.lr), "rtol": self._rtol(c["arch"]),
                "train_samples": p.train_samples, "eval_samples": p.eval_samples, "eval_depths": p.eval_depths,
                "entropy_dtype": p.entropy_dtype, "tf32": p.tf32})
                for c in combos if p.depths == "all" or c["depth"] == deepest]
        out += [self.train_point(c) for c, m in zip(combos, self._train_mask()) if m]
        return out

    def train_point(self, coords: dict) -> dict:
        """The resolved training point at `coords` (a combination of the grid's axes, any depth)."""
        t = self.train
        return columns.point("train", self.name, {**coords, "dataset": self.dataset}, {
            "epochs": t.epochs, "threshold": float(t.threshold), "lr": float(t.lr), "batch_size": t.batch_size,
            "train_samples": t.train_samples, "accuracy_on": self.accuracy_on})

    # ------------------------------------------------------------------ boundary search
    @property
    def boundary(self) -> BoundarySettings | None:
        """The adaptive boundary search's settings, or None when the training points are fixed."""
        return self.train.points.boundary if isinstance(self.train.points, Boundary) else None

    def boundary_columns(self) -> list[dict]:
        """The columns of a boundary search: every combination of the grid's axes but depth and seed."""
        seen, out = set(), []
        for c in self._combos():
            col = {k: v for k, v in c.items() if k not in ("depth", "seed")}
            key = tuple(col.items())
            if key not in seen:
                seen.add(key)
                out.append(col)
        return out

    def boundary_points(self) -> list[dict]:
        """Every training point a boundary search may propose: its columns × the depth range × the seeds."""
        b = self.boundary
        return [self.train_point({**col, "depth": d, "seed": s}) for col in self.boundary_columns()
                for d in range(b.depth.min, b.depth.max + 1) for s in self.axes()["seed"]]

    def _check_boundary(self) -> None:
        b, where = self.boundary, "train.points.boundary"
        n_cols, n_seeds = len(self.boundary_columns()), len(self.axes()["seed"])
        room = n_cols * n_seeds * (b.depth.max - b.depth.min + 1)
        if b.budget < n_cols:
            raise SpecError(f"a budget of {b.budget} cannot give each of the {n_cols} σ_w² columns one training; "
                            f"give at least {n_cols}", f"{where}.budget")
        if b.budget > room:
            raise SpecError(f"a budget of {b.budget} exceeds the {room} points of the depth range "
                            f"({n_cols} columns × {n_seeds} seeds × depths {b.depth.min}..{b.depth.max})",
                            f"{where}.budget")

    @property
    def accuracy_on(self) -> str:
        return self.train.accuracy_on or ("train" if self.dataset == "white_noise" else "test")

    # ------------------------------------------------------------------ resolved
    def resolved(self) -> dict:
        """The spec fully expanded (explicit axis lists, defaults filled), plus version, counts and hash.

        JSON/YAML-able, and load_spec() accepts it again and gives the same points."""
        d = self.model_dump(mode="json")
        d["grid"] = {a: v for a, v in self.grid._values.items()}
        if self.grid.arch is not None:
            d.pop("arch")
        d["train"]["accuracy_on"] = self.accuracy_on
        d["probe"].update(self.probe.budget)  # the budget stated, default included (reports read it here)
        if d["probe"]["epochs"] is None:
            d["probe"].pop("epochs")
        else:
            d["probe"].pop("steps")
        archs = self.axes()["arch"]
        if d["probe"]["rtol"] is None and len(archs) == 1:
            d["probe"]["rtol"] = self._rtol(archs[0])
        pts = self.points()
        d["n_points"] = {k: sum(p["kind"] == k for p in pts) for k in ("probe", "train")}
        d["reconent_version"] = __version__
        d["spec_hash"] = hash_json({k: v for k, v in d.items() if k not in ("storage", "spec_hash")})
        return d

    @property
    def spec_hash(self) -> str:
        """16 hex of the resolved spec without its storage (moving a sweep keeps its hash)."""
        return self.resolved()["spec_hash"]

    def check_storage(self) -> None:
        """Fail early (SpecError on `storage`) when the storage cannot be written; writes nothing."""
        check_storage(self.storage)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _short(vals: list) -> str:
    s = ", ".join(map(str, vals[:8]))
    return s + (f", ... ({len(vals)} values)" if len(vals) > 8 else "")


# ----------------------------------------------------------------------------- loading
class _Loader(yaml.SafeLoader):
    """YAML 1.2 floats (PyYAML reads `1e-3` as a string); an error on duplicate keys and on keys that are not names."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"), list("-+0123456789."))


def _source(node) -> str:
    """A node as written in the file (one line, shortened), for error messages."""
    m, e = node.start_mark, node.end_mark
    text = m.buffer[m.index:e.index] if m.buffer is not None and e is not None else ""
    text = " ".join(text.split()) or str(getattr(node, "value", ""))
    return text if len(text) <= 40 else text[:37] + "..."


def _mapping(loader, node, deep=False):
    """A mapping whose keys are unique strings: a second `depth:` would silently drop the first (PyYAML keeps
    the last), and a list or mapping as a key (`? [a, b]`, `{[1, 2]: x}`) cannot name a field."""
    keys = set()
    for k, _ in node.value:
        if k.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; construct_mapping flattens it
            continue
        kind = {yaml.SequenceNode: "a list", yaml.MappingNode: "a mapping"}.get(type(k))
        key = None if kind else loader.construct_object(k, deep=True)
        if kind:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {_source(k)!r} is {kind}; a key is a name such as `depth:`, with the list "
                f"or mapping after it (`depth: [2, 4]`)", k.start_mark)
        if not isinstance(key, str) or "\n" in key:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {_source(k)!r} is not a name ({type(key).__name__} {key!r}); a key is a name "
                f"such as `depth:` on one line (quote it to keep it a string)", k.start_mark)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}; give each key once in a mapping (merge the two entries)",
                k.start_mark)
        keys.add(key)
    return loader.construct_mapping(node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _path(loc) -> str:
    s = ""
    for p in loc:
        if isinstance(p, int):
            s += f"[{p}]"
        elif not str(p).startswith("<"):  # union tags are not fields
            s += ("." if s else "") + str(p)
    return s


def _error(e: ValidationError) -> SpecError:
    errs = e.errors()
    err = errs[0]
    field, inner = _path(err["loc"]), (err.get("ctx") or {}).get("error")
    if isinstance(inner, SpecError):
        field = ".".join(x for x in (field, inner.field) if x).replace(".[", "[")
        msg = inner.msg
    elif err["type"] == "missing":
        msg = "required field is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] in ("list_type", "model_attributes_type") and field.startswith("grid."):
            msg += " (an axis is a list [a, b, ...] or a range {start, stop, num})"
        if not isinstance(err.get("input"), (dict, list)):
            msg += f", got {err.get('input')!r}"
    more = f" (and {len(errs) - 1} more problem{'s' * (len(errs) > 2)})" if len(errs) > 1 else ""
    return SpecError(msg + more, field or "spec")


def load_spec(path_or_dict, storage_override: str | None = None, check_storage: bool = True) -> Spec:
    """Read and validate a sweep spec (a YAML path or a dict); every problem is one SpecError.

    `storage_override` replaces the spec's storage (`--storage`). With `check_storage` the storage
    must be reachable and writable; nothing is created or written either way.
    """
    src = ""
    if isinstance(path_or_dict, dict):
        raw = dict(path_or_dict)
    else:
        src = str(path_or_dict)
        try:
            text = Path(src).read_text()
        except FileNotFoundError:
            raise SpecError("no such file; give the path of a sweep YAML such as sweeps/quickstart.yaml",
                            file=src) from None
        except OSError as e:
            raise SpecError(f"cannot read: {e.strerror or e}", file=src) from None
        try:
            raw = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
            where = f"{src}:{mark.line + 1}:{mark.column + 1}" if mark else src
            what = " ".join(str(x) for x in (getattr(e, "context", None), getattr(e, "problem", None)) if x)
            raise SpecError(f"malformed YAML: {what or e}".replace("\n", " "), file=where) from None
        except (ValueError, TypeError) as e:  # a value PyYAML cannot build, e.g. the date 2024-13-01
            raise SpecError(f"malformed YAML: {e}; quote the value to keep it a string".replace("\n", " "),
                            file=src) from None
        if not isinstance(raw, dict):
            got = "an empty file" if raw is None else type(raw).__name__
            raise SpecError(f"a spec is a YAML mapping (name:, dataset:, grid:, ...), got {got}", file=src)
    for k in META_KEYS:  # written by resolved(): a saved spec.yaml runs again as is
        raw.pop(k, None)
    if storage_override is not None:
        raw["storage"] = storage_override
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as e:
        err = _error(e)
        raise SpecError(err.msg, err.field, src) from None
    if check_storage:
        try:
            spec.check_storage()
        except SpecError as err:
            raise SpecError(err.msg, err.field, src) from None
    return spec


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

    from .store import filesystem

    try:  # pyarrow's own timeouts bound the wait on a remote that does not answer
        fs, root = filesystem(uri, timeout=STORAGE_TIMEOUT)
        info = fs.get_file_info(root)
    except Exception as e:  # noqa: BLE001 -- any failure here means: not reachable
        why = str(e).replace("\n", " ")[:300]
        raise SpecError(f"cannot reach {uri!r}: {why}; check the bucket, credentials and region "
                        f"(s3://bucket/path?region=...), or pass --storage PATH_OR_URI", "storage") from None
    if info.type == pafs.FileType.File:
        raise SpecError(f"{uri!r} is a file, not a folder; {fix}", "storage")
