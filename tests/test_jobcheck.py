"""The job's first step (reconent.sweep.jobcheck) finds every dependency where it is installed: a distribution
whose import name differs from its name (pyyaml, google-cloud-storage) must not be reported missing."""
from __future__ import annotations

from pathlib import Path

from reconent.sweep import jobcheck

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_every_dependency_of_pyproject_is_found_in_the_environment_that_has_them():
    assert jobcheck.missing(PYPROJECT) == []


def test_a_dependency_that_is_not_installed_is_named(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\ndependencies = [\n    "pyyaml>=6",\n    "google-cloud-nothere>=1",\n    "no-such-dist[x]>=1",\n]\n')
    # a sub-module of a namespace package, and one whose parent package is missing as well
    monkeypatch.setitem(jobcheck.IMPORT_NAMES, "google-cloud-nothere", "google.cloud.nothere")
    monkeypatch.setitem(jobcheck.IMPORT_NAMES, "no-such-dist", "no_such_dist.sub")
    assert jobcheck.missing(tmp_path / "pyproject.toml") == ["google-cloud-nothere", "no-such-dist"]
