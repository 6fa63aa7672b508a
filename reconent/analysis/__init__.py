"""reconent.analysis: verdicts, boundaries, agreement and cost from stored sweep results (pandas in, pandas out).

    from reconent import analysis
    a = analysis.analyse(analysis.load(uri, "probe"), analysis.load(uri, "train"), rtol=0.005, threshold=0.8)
    a.boundaries, a.scores, a.cost, a.notes, a.summary()
    a.budgets                      # the one probe budget (decoder steps, depth) and training budget read
    a.true_boundary_by_epochs()    # the true boundary at 1, 2, 5, 10, ... epochs from the same curves

Rules are parameters (SCIENCE §7): the cutoff is re-derived for any rtol from the stored normalised profile,
the training verdict for any threshold and any epoch budget up to the one trained from the stored accuracy curve;
no re-run is ever needed. Budgets are never mixed: one decoder budget (`probe_steps`) and one epoch budget
(`epochs`) per analysis.
"""
from .agreement import (bootstrap, boundary_table, confusion, cost, epoch_budgets, match, metrics, score,
                        true_boundary_by_epochs)
from .boundary import (critical, deepest_probes, gap, predicted_boundary, theory_boundary, theory_depth,
                       true_boundary)
from .core import Analysis, analyse, default_epochs, default_probe_steps
from .frames import (group_keys, AnalysisError, AnalysisWarning, check_columns, load, per_layer, probe_budgets,
                     probe_cutoffs, train_verdicts)

__all__ = ["Analysis", "AnalysisError", "AnalysisWarning", "group_keys", "analyse", "bootstrap", "boundary_table",
           "check_columns", "confusion", "cost", "critical", "deepest_probes", "default_epochs", "default_probe_steps",
           "epoch_budgets", "gap", "load", "match", "metrics", "per_layer", "predicted_boundary", "probe_budgets",
           "probe_cutoffs", "score", "theory_boundary", "theory_depth", "train_verdicts", "true_boundary",
           "true_boundary_by_epochs"]
