"""`reconent sweep run|submit|status`: sweeps on Ray Tune (reconent.sweep)."""
from __future__ import annotations

from reconent.cli import Parser, emit


def register(sub) -> None:
    sw = sub.add_parser("sweep", help="run, submit and inspect sweeps on Ray Tune").add_subparsers(
        dest="sweep_command", required=True, parser_class=Parser)
    r = sw.add_parser("run", help="run the points of a sweep spec that have no result yet")
    r.add_argument("spec", help="sweep spec YAML")
    r.add_argument("--address", default=None, help="join this Ray cluster ('auto', HOST:6379); default: local Ray")
    r.add_argument("--storage", default=None, help="override the spec's storage (path, s3://, gs://)")
    r.add_argument("--json", action="store_true", help="print the summary as one JSON object, no progress bar")
    r.add_argument("--retry-errors", action="store_true",
                   help="also recompute points whose stored row has status 'error' (default: they count as done)")
    r.add_argument("--compact", action="store_true",
                   help="at the end, merge the parts into a few larger Parquet files (as `reconent compact`)")
    r.set_defaults(func=cmd_run)
    s = sw.add_parser("submit", help="send the sweep to a cluster as a Ray job")
    s.add_argument("spec")
    s.add_argument("--address", required=True, help="the Ray dashboard URL, http://HEAD:8265")
    s.add_argument("--storage", default=None, help="storage as seen from the cluster (absolute path, s3://, gs://)")
    s.add_argument("--follow", action="store_true",
                   help="stream the job's logs until it ends, and exit with its status (0 if it succeeded, else 1)")
    s.set_defaults(func=cmd_submit)
    st = sw.add_parser("status", help="points done, failed and left")
    st.add_argument("sweep", metavar="SPEC|NAME|URI",
                    help="a spec file, a sweep name (with --storage) or the URI of the sweep's folder")
    st.add_argument("--storage", default=None)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)


def cmd_run(a) -> None:
    from reconent.sweep.run import run

    s = run(a.spec, address=a.address, storage=a.storage, progress=not a.json, retry_errors=a.retry_errors,
            compact=a.compact)
    emit(s, a.json, lambda o: print(
        f"sweep {o['sweep']}: {o['points']} points, {o['skipped']} already done, ran {o['ran']}: {o['ok']} ok, "
        f"{o['diverged']} diverged, {o['error']} error, {o['lost']} lost, {o['retries']} retries "
        f"({o['seconds']:.1f} s) -> {o['storage']}/{o['sweep']}" + _search_text(o.get("search"))))
    if s["lost"]:
        raise SystemExit(1)  # infrastructure gave up on some points: rerun the same command to finish them


def _search_text(s: dict | None) -> str:
    """The boundary search's outcome, one line per σ_w² column (posterior median and 80% interval of L*)."""
    if not s:
        return ""
    lines = [f"\nboundary search: {s['trainings']} of {s['budget']} trainings used "
             f"({s['stored_at_start']} stored before)"]
    for c in s["columns"]:
        prior = "no probe" if c["prior"] is None else f"probe {c['prior']:g}"
        lines.append(f"  σ_w² {c['sigma_w2']:g}: L* {c['median']:g} ({c['lo']:g} … {c['hi']:g}), {c['labels']} "
                     f"trainings, {prior}{'' if c['resolved'] else ', not resolved'}")
    return "\n".join(lines)


def cmd_submit(a) -> None:
    import sys

    from reconent.sweep.submit import follow, submit

    job = submit(a.spec, a.address, a.storage)
    if not a.follow:
        print(f"submitted job {job}\n  follow: ray job logs --address {a.address} --follow {job}\n"
              f"  status: ray job status --address {a.address} {job}")
        return
    print(f"submitted job {job}; its logs follow (stopping this command leaves the job running)", flush=True)
    status, message = follow(a.address, job)
    print(f"job {job} {status}" + (f": {message.strip().splitlines()[0]}" if message and status != "SUCCEEDED"
                                   else ""), file=sys.stderr)
    if status != "SUCCEEDED":
        raise SystemExit(1)


def cmd_status(a) -> None:
    from reconent.sweep.status import status

    emit(status(a.sweep, a.storage), a.json, lambda o: print(
        f"sweep {o['sweep']} ({o['storage']}): {o['points']} points: {o['done']} done, {o['failed']} failed "
        f"({o['diverged']} diverged, {o['error']} error), {o['left']} left"
        + (f" ({o['environment']} after environmental failures: "
           + ", ".join(f"{n} {t}" for t, n in sorted(o["environment_errors"].items())) + ")"
           if o["environment"] else "")
        + (f"; boundary search: {o['search']['trainings']} of {o['search']['budget']} trainings, at most "
           f"{o['search']['left_at_most']} more" if o.get("search") else "")))
