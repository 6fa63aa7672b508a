"""`reconent report`: analyse sweep results into report.html, PNG figures and summary.json (reconent.analysis)."""
from __future__ import annotations

import json

from reconent.cli import nonneg, number, pos_float, pos_int


def register(sub) -> None:
    r = sub.add_parser("report", help="analyse sweep results: boundaries, agreement, cost; HTML + PNG + JSON")
    r.add_argument("results", nargs="+", metavar="RESULTS_URI",
                   help="a sweep's results folder, <storage>/<sweep name> (local path, s3://, gs://); several allowed")
    r.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder for report.html, PNGs, summary.json")
    r.add_argument("--rtol", type=pos_float, default=None, help="cutoff tolerance (default: each probe's stored rtol)")
    r.add_argument("--threshold", type=nonneg, default=None,
                   help="accuracy threshold in [0, 1] (default: each trial's stored threshold)")
    r.add_argument("--steps", type=pos_int, default=None, metavar="N",
                   help="read the probes at N decoder steps: their final profile where they ran N steps, else a "
                        "checkpoint at N (default: the budget the sweep's saved spec names, else the largest stored); "
                        "probes at other budgets are left out, never mixed")
    r.add_argument("--epochs", type=pos_int, default=None, metavar="E",
                   help="training verdicts at an epoch budget of E (anytime: passed by epoch E, or ran E epochs "
                        "without passing; default: the spec's train.epochs, else the largest stored)")
    r.add_argument("--n-boot", type=number(int, 0), default=1000, help="bootstrap resamples over seeds (0: none)")
    r.add_argument("--explain", action="append", default=[], metavar="DIR",
                   help="also embed the figures of a `reconent explain` output folder (repeatable)")
    r.add_argument("--json", action="store_true", help="print summary.json's content as one JSON object")
    r.set_defaults(func=cmd_report)


def cmd_report(a) -> None:
    from reconent.analysis.report import report, summary_text

    s = report(a.results, a.out, a.rtol, a.threshold, a.n_boot, explain=explain_figures(a.explain), steps=a.steps,
               epochs=a.epochs)
    print(json.dumps(s) if a.json else summary_text(s, a.out))


def explain_figures(dirs) -> list[dict]:
    """The figures of `reconent explain` output folders, read here so that the analysis need not import explain."""
    from reconent.explain import figures
    from reconent.cli import UsageError

    out = []
    for d in dirs:
        try:
            out += figures(d)
        except (OSError, ValueError) as e:
            raise UsageError(f"--explain {d}: not a `reconent explain` output folder ({e}); "
                             f"run `reconent explain mlp -o {d}` first") from None
    return out
