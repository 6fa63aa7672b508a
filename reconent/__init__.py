"""reconent: predict trainability of deep networks from the cascade reconstruction-entropy probe.

Layers, bottom up (docs/architecture.md):
- reconent.science: models, archs, probe, entropy, theory, data, train (no Ray, no storage);
- reconent.sweep: columns, spec, trial, store, results, and the Ray Tune runner;
- reconent.analysis: verdicts, boundaries, agreement, figures and the report;
- reconent.explain: interpretability pictures; reconent.bench: benchmarks;
- reconent.cli: the command line on top (nothing imports it).

The everyday modules are reachable from here too: `from reconent import archs, data, probe, results`.
"""
import importlib

__version__ = "0.1.0"

# Short names for the modules users import most (README); loaded on first use, so that
# `import reconent` pulls in neither torch nor Ray.
_SHORT = {"data": "reconent.science.data", "models": "reconent.science.models", "probe": "reconent.science.probe",
          "entropy": "reconent.science.entropy", "theory": "reconent.science.theory", "train": "reconent.science.train",
          "archs": "reconent.science.archs", "results": "reconent.sweep.results", "spec": "reconent.sweep.spec"}


def __getattr__(name):
    if name in _SHORT:
        return importlib.import_module(_SHORT[name])
    raise AttributeError(f"module 'reconent' has no attribute {name!r}")
