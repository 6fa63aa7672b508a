"""The package's layers (docs/architecture.md), read from the source: every import statement, at module level or
inside a function (a lazy import is still a dependency), resolved to reconent's own modules.

science < sweep < analysis < explain < cli and bench: a module imports only its own layer and those below it,
and no group of modules imports itself round."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYER = {"errors": -1, "science": 0, "sweep": 1, "analysis": 2, "explain": 3, "cli": 4, "bench": 4}


def modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in (root / "reconent").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the reconent modules it imports."""
    mods, g = modules(root), {}
    for name, (f, is_pkg) in mods.items():
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                # `from pkg import sub` imports the submodule; any other name comes from `pkg` itself
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        g[name] = deps
    return g


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYER.get(parts[1]) if len(parts) > 1 else None


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], 0
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = n
        n += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n
                    n += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_every_module_has_a_layer():
    assert [m for m in graph() if m != "reconent" and layer(m) is None] == []


def test_no_module_imports_a_layer_above_its_own():
    up = sorted((a, b) for a, deps in graph().items() for b in deps
                if layer(a) is not None and layer(b) is not None and layer(b) > layer(a))
    assert up == []


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_the_blocks_do_not_import_the_architectures_built_from_them():
    assert not {d for d in graph()["reconent.science.models"] if d.startswith("reconent.science.archs")}


@pytest.mark.parametrize("edges, found", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
])
def test_the_cycle_finder_finds_a_planted_cycle_and_nothing_else(edges, found):
    assert cycles(edges) == found


def test_a_planted_upward_import_is_seen(tmp_path):
    for rel, text in {"reconent/__init__.py": "", "reconent/science/__init__.py": "",
                      "reconent/science/x.py": "def f():\n    from reconent.analysis import y\n",
                      "reconent/analysis/__init__.py": "", "reconent/analysis/y.py": "from ..science import x\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    g = graph(tmp_path)
    assert g["reconent.science.x"] == {"reconent.analysis.y"} and g["reconent.analysis.y"] == {"reconent.science.x"}
    assert cycles(g) == [["reconent.analysis.y", "reconent.science.x"]]
