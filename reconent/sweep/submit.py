"""`reconent sweep submit`: send a sweep to a Ray cluster as a Ray job that runs `reconent sweep run`."""
from __future__ import annotations

from pathlib import Path

from .ray_session import RAY_ENV, ray_env
from .run import is_local, resolve_spec
from .trial import versions

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
        raise ValueError(f"--address must be the Ray dashboard URL http://HEAD:8265, got {address!r}")
    # Validate here (a bad spec is not worth a job), but the storage is the cluster's, not ours to probe.
    target = resolve_spec(spec_path, storage, check_storage=False).storage
    if is_local(target) and not Path(target.removeprefix("file://")).is_absolute():
        raise ValueError(f"storage {target!r} is relative, so it would land in the job's temporary working_dir; "
                         "pass --storage with an absolute path on the cluster or an s3:// / gs:// URI")
    name = f".reconent-submitted-{Path(spec_path).name}"
    # `python -m` runs the shipped copy of the package (the working_dir is on sys.path), even
    # where the cluster has no reconent installed.
    run_cmd = ["python", "-m", "reconent.cli", "sweep", "run", name, "--address", "auto"]
    if storage is not None:
        run_cmd += ["--storage", storage]
    entrypoint = f'printf "%s" "$RECONENT_SPEC_YAML" > {shlex.quote(name)} && {shlex.join(run_cmd)}'
    ray_env()
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(address)
    return client.submit_job(entrypoint=entrypoint, runtime_env={
        "working_dir": str(project_root()), "excludes": JOB_EXCLUDES,
        "env_vars": {**{k: v for k, v in RAY_ENV.items() if k != "RAY_AUTH_MODE"},
                     "RECONENT_SPEC_YAML": Path(spec_path).read_text(),
                     # the job's working_dir is a copy without .git: send the sha of the code submitted
                     "RECONENT_CODE_VERSION": versions()["code_version"]}})
