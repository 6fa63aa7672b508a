"""`reconent compact`: merge a sweep's one-row parts into a few larger Parquet files (reconent.sweep.compact)."""
from __future__ import annotations

from reconent.cli import emit, pos_int


def register(sub) -> None:
    c = sub.add_parser("compact", help="merge a sweep's parts into a few larger Parquet files (faster loads on S3)")
    c.add_argument("results", metavar="SWEEP_URI", help="a sweep's results folder, <storage>/<sweep name> "
                   "(local path, s3://, gs://), as for `reconent report`")
    c.add_argument("--rows-per-file", type=pos_int, default=None, help="rows per compacted file (default 10000)")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.set_defaults(func=cmd_compact)


def cmd_compact(a) -> None:
    from reconent.sweep.compact import compact

    emit(compact(a.results, a.rows_per_file), a.json, lambda o: print("\n".join(
        f"{o['storage']}/{o['sweep']}/{k['kind']}: {k['files_before']} files -> {k['files_after']} "
        f"({k['points']} points)" for k in o["kinds"]) or f"{o['sweep']}: nothing to compact"))
