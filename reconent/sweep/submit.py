"""`reconent sweep submit`: send a sweep to a Ray cluster as a Ray job that runs `reconent sweep run`."""
from __future__ import annotations

import contextlib
from pathlib import Path

from ..errors import UserError
from .ray_session import RAY_ENV, ray_env
from .spec import load_spec
from .trial import versions
from .uri import is_local, local_path

JOB_EXCLUDES = [".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "results", "**/*.parquet", ".venv",
                "venv", "build", "dist"]


def project_root() -> Path:
    """The checkout that holds this package (shipped as the job's working_dir), else the cwd."""
    root = Path(__file__).resolve().parents[2]  # <root>/reconent/sweep/submit.py
    return root if (root / "pyproject.toml").is_file() else Path.cwd()


def submit(spec_path, address: str, storage: str | None = None) -> str:
    """Send `reconent sweep run SPEC --address auto` to a cluster as a Ray job; returns the job id.

    The project root ships as the job's working_dir (so the cluster runs this very code), and the
    spec travels in the job's environment, so it may live anywhere on this machine. A local
    storage path is a path on the cluster's nodes: use s3:// or gs:// to get the files back.
    """
    import shlex

    if not str(address).startswith(("http://", "https://")):
        raise UserError(f"--address must be the Ray dashboard URL http://HEAD:8265, got {address!r}")
    # Validate here (a bad spec is not worth a job), but the storage is the cluster's, not ours to probe.
    target = load_spec(spec_path, storage_override=storage, check_storage=False).storage
    if is_local(target) and not local_path(target).is_absolute():
        raise UserError(f"storage {target!r} is relative, so it would land in the job's temporary working_dir; "
                         "pass --storage with an absolute path on the cluster or an s3:// / gs:// URI")
    name = f".reconent-submitted-{Path(spec_path).name}"
    # `python -m` runs the shipped copy of the package (the working_dir is on sys.path), even
    # where the cluster has no reconent installed; jobcheck first says in one line if that python
    # cannot import reconent's dependencies.
    run_cmd = ["python", "-m", "reconent.cli", "sweep", "run", name, "--address", "auto"]
    if storage is not None:
        run_cmd += ["--storage", storage]
    entrypoint = (f'python -m reconent.sweep.jobcheck && printf "%s" "$RECONENT_SPEC_YAML" > {shlex.quote(name)} '
                  f'&& {shlex.join(run_cmd)}')
    with _cluster(address) as client:
        return client.submit_job(entrypoint=entrypoint, runtime_env={
            "working_dir": str(project_root()), "excludes": JOB_EXCLUDES,
            "env_vars": {**{k: v for k, v in RAY_ENV.items() if k != "RAY_AUTH_MODE"},
                         "RECONENT_SPEC_YAML": Path(spec_path).read_text(),
                         # the job's working_dir is a copy without .git: send the sha of the code submitted
                         "RECONENT_CODE_VERSION": versions()["code_version"]}})


@contextlib.contextmanager
def _cluster(address: str):
    """A JobSubmissionClient for `address`. A cluster that refuses us for want of its token is the user's
    to fix (one line, exit 2), not a traceback."""
    ray_env()
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        try:
            client = JobSubmissionClient(address)
        except ConnectionError as e:
            raise UserError(f"--address: no Ray dashboard answers at {address} ({str(e).splitlines()[0]})") from None
        yield client
    except AuthenticationError as e:
        why = str(e).strip().splitlines()[0].split(". ", 1)[0]
        raise UserError(f"--address: the Ray cluster at {address} refused the connection ({why}): it uses token "
                        "authentication; export RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the cluster's token> (or "
                        "keep the token in ~/.ray/auth_token), see cluster/README.md") from None


def follow(address: str, job: str, out=None) -> tuple[str, str | None]:
    """Stream job `job`'s logs to `out` (stdout) until it ends, as `ray job submit` does; returns its
    final status (SUCCEEDED, FAILED, STOPPED) and its status message, if any."""
    import asyncio
    import sys

    out = out or sys.stdout
    with _cluster(address) as client:
        async def tail():
            async for lines in client.tail_job_logs(job):
                out.write(lines)
                out.flush()

        asyncio.run(tail())
        info = client.get_job_info(job)
    return str(info.status.value if hasattr(info.status, "value") else info.status), info.message
