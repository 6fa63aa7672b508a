"""The first step of a submitted job, on the cluster's `python`: can it import reconent's dependencies?

A head started from a virtualenv that was not activated runs the job with another `python`; the job
would fail minutes later deep in a traceback (`No module named 'torch'`). This says it in the job's
first line instead, exit 2. Standard library only (it runs where nothing else may be installed), and
the list is pyproject.toml's `dependencies`, shipped with the job's working_dir."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

# Distributions whose import name is not their name with '-' as '_'.
IMPORT_NAMES = {"pyyaml": "yaml", "google-cloud-storage": "google.cloud.storage"}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def missing(pyproject: Path) -> list[str]:
    """The dependencies of `pyproject` that this interpreter cannot import."""
    try:
        import tomllib

        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except ImportError:  # Python 3.10: no TOML reader in the standard library; the list is one plain array
        block = re.search(r"^dependencies\s*=\s*\[(.*?)^\]", pyproject.read_text(), re.M | re.S).group(1)
        deps = re.findall(r'^\s*"([^"]+)"', block, re.M)
    names = [re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0].strip().lower() for d in deps]
    return [n for n in names if not _importable(IMPORT_NAMES.get(n, n.replace("-", "_")))]


def main() -> int:
    where = f"the cluster's python ({sys.executable}, {sys.version.split()[0]})"
    fix = ("start Ray on every node from an environment where reconent is installed (activate its virtualenv "
           "before `ray start`); see cluster/README.md")
    lack = missing(Path(__file__).resolve().parents[2] / "pyproject.toml")
    if lack:
        print(f"reconent: error: {where} cannot import {', '.join(lack)}: {fix}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
