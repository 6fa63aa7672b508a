"""reconent.analysis: verdicts, boundaries, agreement and cost from stored sweep results (pandas in, pandas out).

    from reconent import analysis
    a = analysis.analyse(analysis.load(uri, "probe"), analysis.load(uri, "train"), rtol=0.005, threshold=0.8)
    a.boundaries, a.scores, a.cost, a.notes, a.summary()

Rules are parameters (SCIENCE §7): the cutoff is re-derived for any rtol from the stored normalised profile,
the training verdict for any threshold from the stored accuracy curve; no re-run is ever needed.
"""
from .agreement import bootstrap, boundary_table, confusion, cost, match, metrics, score
from .boundary import (critical, deepest_probes, gap, predicted_boundary, theory_boundary, theory_depth,
                       true_boundary)
from .core import Analysis, analyse
from .frames import (GROUP, AnalysisError, AnalysisWarning, check_columns, load, per_layer, probe_cutoffs,
                     train_verdicts)

__all__ = ["Analysis", "AnalysisError", "AnalysisWarning", "GROUP", "analyse", "bootstrap", "boundary_table", "check_columns",
           "confusion", "cost", "critical", "deepest_probes", "gap", "load", "match", "metrics", "per_layer",
           "predicted_boundary", "probe_cutoffs", "score", "theory_boundary", "theory_depth", "train_verdicts",
           "true_boundary"]
