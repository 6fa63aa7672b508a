"""The sweep spec's schema: pydantic models of every section, and the checks of their meaning.

Every model forbids unknown keys; the validators check the meaning (variances >= 0, depth >= 1, a subset
point that is on the grid, ...). Every problem is one SpecError (loader.py turns pydantic's errors into
it, with the field path). Validation does no I/O; expansion is spec/expand.py.
"""
from __future__ import annotations

import functools
import re
from typing import Annotated, Any, ClassVar, Literal, Union

import numpy as np
import pyarrow as pa
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, create_model, field_validator,
                      model_validator)

from reconent.science import archs
from reconent.science.settings import ENTROPY_DTYPES, EVAL_DEPTHS, PROBE

from .. import columns
from . import expand
from .errors import SpecError
from .storage import check_storage


def _is(axis: str, kind) -> bool:
    """The grid axis `axis` has values of this kind (pa.types.is_floating, is_integer, is_string)."""
    return kind({c.name: c.type for c in columns.coords()}[axis])


# ----------------------------------------------------------------------------- models
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    HINT: ClassVar[str] = ""  # appended to the unknown-key message

    @model_validator(mode="before")
    @classmethod
    def _unknown_keys(cls, v):
        # extra="forbid" alone says only "Extra inputs are not permitted"; name the allowed keys.
        if isinstance(v, dict):
            bad = [k for k in v if k not in cls.allowed_keys()]
            if bad:
                raise SpecError(f"unknown key; allowed: {', '.join(cls.allowed_keys())}"
                                + (f" ({cls.HINT})" if cls.HINT else ""), str(bad[0]))
        return v

    @classmethod
    def allowed_keys(cls) -> list[str]:
        return list(cls.model_fields)


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
        if _is(axis, pa.types.is_integer):
            return sorted({int(round(x)) for x in v})
        return [float(x) for x in v]


def _axis_kind(v):
    return "<range>" if isinstance(v, (dict, Range)) else "<list>"


def _axis(t):  # a list of values or a range; tags in <> are dropped from error paths
    return Annotated[Union[Annotated[list[t], Tag("<list>")], Annotated[Range, Tag("<range>")]],
                     Discriminator(_axis_kind)]


@functools.lru_cache(maxsize=8)
def _sizes_model(settings: tuple) -> type[BaseModel]:
    """The grid's sizing axes (width, channels and any a registered architecture brings: science.archs.Setting),
    one optional field each, validated like every other axis."""
    return create_model("Grid", __base__=Strict, **{s.name: (_axis(s.type) | None, None) for s in settings})


class Grid(Strict):
    # The sizing settings (width: mlp hidden width, None = the input size; channels: cnn/resnet width, None =
    # the arch's default; any registered one) are extra keys, checked by _sizes against the registry when used.
    model_config = ConfigDict(extra="allow")
    sigma_w2: _axis(float)
    depth: _axis(int) | None = None  # required unless a boundary search without probes sets its own depths
    sigma_b2: _axis(float) = [0.05]
    seed: _axis(int) = [0]
    activation: _axis(str) = ["tanh"]
    arch: _axis(str) | None = None  # None = the spec's `arch`
    _values: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def allowed_keys(cls) -> list[str]:
        f = list(cls.model_fields)
        return f[:4] + list(archs.sizes()) + f[4:]  # after seed, as the fields were listed before settings

    @model_validator(mode="before")
    @classmethod
    def _sizes(cls, v):
        if not isinstance(v, dict):
            return v
        sizes = {k: x for k, x in v.items() if k in archs.sizes()}
        checked = _sizes_model(archs.settings()).model_validate(sizes)  # a problem: its path inside the grid
        return {**v, **{k: getattr(checked, k) for k in sizes}}

    @model_validator(mode="after")
    def _expand(self):
        for axis in columns.axes():
            raw = getattr(self, axis, None)  # a sizing setting not given is no attribute (an extra key)
            if raw is None:
                continue
            if isinstance(raw, Range):
                if _is(axis, pa.types.is_string):
                    raise SpecError("a range needs numbers; give a list", axis)
                vals = raw.values(axis)
            else:
                vals = list(raw)
            if not vals:
                raise SpecError("empty axis; give at least one value (leave the key out for the default)", axis)
            for i, v in enumerate(vals):
                where = axis if isinstance(raw, Range) else f"{axis}[{i}]"
                if axis not in ("arch", "seed"):  # a network setting: the science's one check
                    try:
                        archs.check(axis, v)
                    except ValueError as e:
                        raise SpecError(str(e), where) from None
                if _is(axis, pa.types.is_floating):
                    vals[i] = float(f"{v:.12g}")  # 1.76 from a list and from a linspace give one point id
                elif axis == "seed" and v < 0:
                    raise SpecError(f"seed must be >= 0, got {v}", where)
                elif axis == "arch" and v not in archs.names():
                    raise SpecError(f"unknown arch {v!r}; allowed: {', '.join(archs.names())}", where)
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
    # The defaults and choices are science.settings' (declared once; docs/performance.md measures them).
    checkpoints: str | list[int] = PROBE.checkpoints
    batch_size: int = Field(PROBE.batch_size, ge=1)
    lr: float = Field(PROBE.lr, gt=0)
    rtol: float | None = Field(None, gt=0, lt=1)  # None: the arch's default (science.archs.rtol)
    train_samples: int | None = Field(None, ge=1)  # None: the whole training split
    eval_samples: int | None = Field(PROBE.eval_samples, ge=2)
    eval_depths: Literal[EVAL_DEPTHS] = PROBE.eval_depths
    entropy_dtype: Literal[ENTROPY_DTYPES] = PROBE.entropy_dtype
    tf32: bool = PROBE.tf32  # allow TF32 matmuls on CUDA
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
    # Verdicts decided early (science.train; docs/budgets.md): accuracy checks every `eval_every` steps besides
    # each epoch's end (None: epoch ends only), and the rule that stops a hopeless run ('none': never).
    eval_every: int | None = Field(None, ge=1)
    stop: str = "none"

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        from reconent.science.budget import STOP_RULES

        if v not in STOP_RULES:
            raise SpecError(f"must be one of {', '.join(STOP_RULES)}, got {v!r}")
        return v


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
        if "arch" in self.model_fields_set and self.grid.arch is not None:
            raise SpecError("give either `arch` or `grid.arch`, not both", "arch")
        sizes = {a: archs.get(a).size for a in self.axes()["arch"]}
        for size in archs.sizes():
            if size in self.grid._values and size not in sizes.values():
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

    # ------------------------------------------------------------------ expansion (spec/expand.py)
    def axes(self) -> dict[str, list]:
        """The expanded grid: every axis as a list of values, in AXES order (None where not given)."""
        return expand.axes(self)

    def _combos(self) -> list[dict]:
        return expand.combos(self)

    def _train_mask(self) -> list[bool]:
        return expand.train_mask(self)

    def _rtol(self, arch: str) -> float:
        return expand.rtol(self, arch)

    def points(self) -> list[dict]:
        """Every resolved point (CONTRACT.md): the probe points of all combinations, then the train points."""
        return expand.points(self)

    def train_point(self, coords: dict) -> dict:
        """The resolved training point at `coords` (a combination of the grid's axes, any depth)."""
        return expand.train_point(self, coords)

    def boundary_columns(self) -> list[dict]:
        """The columns of a boundary search: every combination of the grid's axes but depth and seed."""
        return expand.boundary_columns(self)

    def boundary_points(self) -> list[dict]:
        """Every training point a boundary search may propose: its columns × the depth range × the seeds."""
        return expand.boundary_points(self)

    def resolved(self) -> dict:
        """The spec fully expanded (explicit axis lists, defaults filled), plus version, counts and hash.

        JSON/YAML-able, and load_spec() accepts it again and gives the same points."""
        return expand.resolved(self)

    # ------------------------------------------------------------------ boundary search
    @property
    def boundary(self) -> BoundarySettings | None:
        """The adaptive boundary search's settings, or None when the training points are fixed."""
        return self.train.points.boundary if isinstance(self.train.points, Boundary) else None

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
    @property
    def spec_hash(self) -> str:
        """16 hex of the resolved spec without its storage (moving a sweep keeps its hash)."""
        return self.resolved()["spec_hash"]

    def check_storage(self) -> None:
        """Fail early (SpecError on `storage`) when the storage cannot be written; writes nothing.
        The one check with I/O, never part of validation: the driver asks for it (load_spec(check_storage=True))."""
        check_storage(self.storage)
