"""YAML (or a dict) in, a validated Spec out: the strict YAML loader, and pydantic's errors as one SpecError
naming the field. `load_spec` does no I/O beyond reading the file, except the storage check it is asked for
(check_storage=True: the driver's; spec/storage.py)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from .errors import SpecError
from .schema import Spec

# Keys that resolved() adds; load_spec drops them so a saved spec.yaml can be run again as is.
META_KEYS = ("reconent_version", "spec_hash", "n_points")


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
    if isinstance(inner, ValidationError):  # a part validated on its own (the grid's sizing axes)
        inner = _error(inner)
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


def load_spec(path_or_dict, storage_override: str | None = None, check_storage: bool = False) -> Spec:
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
