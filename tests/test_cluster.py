"""Checks on the deployment files in cluster/ (no cloud needed).

The Ray cluster-launcher configs are validated against the JSON schema that ships inside the
installed ``ray`` package (``ray/autoscaler/ray-schema.json``), the same schema ``ray up``
checks, and then through Ray's own ``prepare_config`` + ``validate_config`` (the offline part
of ``ray up``). Negative cases prove the validator really rejects bad configs. The KubeRay
manifests and runtime_env are checked for the structure the README relies on.
"""

from __future__ import annotations

import copy
import json
import re
from importlib.resources import files
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster"
LAUNCHER_CONFIGS = {"aws": CLUSTER / "aws.yaml", "gcp": CLUSTER / "gcp.yaml"}
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
PAPER_SPEC = "sweeps/mlp_mnist.yaml"


def _load(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def jsonschema():
    import jsonschema  # the test extra (pip install -e .[test]): missing, these tests fail, they do not skip

    return jsonschema


@pytest.fixture(scope="module")
def ray_schema(jsonschema) -> dict:
    resource = files("ray.autoscaler").joinpath("ray-schema.json")
    assert resource.is_file(), "ray-schema.json not found in the installed ray package"
    schema = json.loads(resource.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def _schema_errors(config: dict, schema: dict) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(config)
    ]


def _ray_pin() -> str:
    """The ray version pinned in constraints.txt."""
    text = (ROOT / "constraints.txt").read_text()
    m = re.search(r"^ray\s*===?\s*([\w.]+)\s*$", text, re.MULTILINE)
    assert m, "constraints.txt should pin ray"
    return m.group(1)


def _head_and_workers(config: dict) -> tuple[dict, dict[str, dict]]:
    types = config["available_node_types"]
    head_name = config["head_node_type"]
    return types[head_name], {k: v for k, v in types.items() if k != head_name}


# ----------------------------------------------------------------------------- launcher configs


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_matches_ray_schema(cloud, ray_schema):
    config = _load(LAUNCHER_CONFIGS[cloud])
    assert _schema_errors(config, ray_schema) == []
    assert config["provider"]["type"] == cloud


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
def test_launcher_config_passes_ray_up_offline_checks(cloud, jsonschema):
    """What `ray up` does before calling the cloud: merge defaults, then validate."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError:  # private API; the schema test above still runs
        pytest.skip("ray.autoscaler._private.util moved in this Ray version")
    config = _load(LAUNCHER_CONFIGS[cloud])
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    head, _ = _head_and_workers(prepared)
    assert head["max_workers"] == 0


def _bogus_top_level_key(c):
    c["max_worker"] = 8  # typo of max_workers


def _wrong_type_max_workers(c):
    c["max_workers"] = "eight"


def _fractional_resource(c):
    c["available_node_types"][c["head_node_type"]]["resources"]["CPU"] = 0.5


def _misplaced_node_field(c):
    # instance settings belong under node_config, not on the node type
    c["available_node_types"][c["head_node_type"]]["machine"] = "big"


def _setup_commands_not_a_list(c):
    c["setup_commands"] = "pip install -e ~/reconent"


def _missing_provider(c):
    del c["provider"]


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
@pytest.mark.parametrize(
    "mutate",
    [
        _bogus_top_level_key,
        _wrong_type_max_workers,
        _fractional_resource,
        _misplaced_node_field,
        _setup_commands_not_a_list,
        _missing_provider,
    ],
)
def test_schema_rejects_broken_copies(cloud, mutate, ray_schema, jsonschema):
    config = _load(LAUNCHER_CONFIGS[cloud])
    assert _schema_errors(config, ray_schema) == []
    broken = copy.deepcopy(config)
    mutate(broken)
    assert _schema_errors(broken, ray_schema), f"{mutate.__name__} was not rejected"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, ray_schema)


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
def test_head_takes_no_trials_and_workers_have_gpus(cloud):
    config = _load(LAUNCHER_CONFIGS[cloud])
    head, workers = _head_and_workers(config)
    assert head["resources"] == {"CPU": 0}
    assert head.get("max_workers", 0) == 0 and head.get("min_workers", 0) == 0
    assert workers, "need at least one worker node type"
    for name, node in workers.items():
        assert node["resources"].get("GPU", 0) >= 1, name
        assert node["resources"].get("CPU", 0) >= 1, name
        assert 0 <= node.get("min_workers", 0) <= node["max_workers"] <= config["max_workers"], name
    assert sum(n.get("min_workers", 0) for n in workers.values()) <= config["max_workers"]


def test_aws_workers_are_spot_g5_and_head_on_demand():
    config = _load(LAUNCHER_CONFIGS["aws"])
    head, workers = _head_and_workers(config)
    assert "InstanceMarketOptions" not in head["node_config"]
    for name, node in workers.items():
        nc = node["node_config"]
        assert nc["InstanceType"] == "g5.xlarge", name
        assert nc["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert set(nc["InstanceMarketOptions"]) <= {"MarketType", "SpotOptions"}, name
        # workers write results to S3 themselves
        assert "IamInstanceProfile" in nc, name
    assert config["provider"]["cache_stopped_nodes"] is False


def test_gcp_workers_are_spot_t4_and_head_on_demand():
    config = _load(LAUNCHER_CONFIGS["gcp"])
    head, workers = _head_and_workers(config)
    assert "scheduling" not in head["node_config"]
    assert "guestAccelerators" not in head["node_config"]
    project = config["provider"]["project_id"]
    for name, node in workers.items():
        nc = node["node_config"]
        assert nc["machineType"] == "n1-standard-8", name
        (gpu,) = nc["guestAccelerators"]
        assert gpu["acceleratorType"].endswith("nvidia-tesla-t4") and gpu["acceleratorCount"] >= 1
        sched = nc["scheduling"]
        assert isinstance(sched, dict), "GCE expects scheduling as an object"
        assert sched.get("preemptible") is True or sched.get("provisioningModel") == "SPOT"
        assert sched["onHostMaintenance"] == "TERMINATE"  # GPUs can't live-migrate
        assert sched.get("automaticRestart") is False
        # workers write results to GCS with the head's service account of this project
        emails = [sa["email"] for sa in nc["serviceAccounts"]]
        assert emails == [f"ray-autoscaler-sa-v1@{project}.iam.gserviceaccount.com"]


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
def test_launcher_installs_this_project(cloud):
    config = _load(LAUNCHER_CONFIGS[cloud])
    assert config["file_mounts"]["~/reconent"] == "."
    installs = [c for c in config["setup_commands"] if "pip install" in c]
    assert any("-c" in c and "constraints.txt" in c and "-e ~/reconent" in c for c in installs)
    assert config["docker"]["image"] == f"rayproject/ray:{_ray_pin()}-py311-gpu"
    excluded = {p.strip("/") for p in config["rsync_exclude"]}
    assert {".venv", ".git", "data", "results"} <= excluded
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head_start


# ----------------------------------------------------------------------------- KubeRay


# Field names of the KubeRay v1 CRDs (ray-operator/apis/ray/v1): catches typos that
# `kubectl apply` would reject or, worse, silently drop.
RAYCLUSTER_SPEC_FIELDS = {
    "headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
    "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
    "gcsFaultToleranceOptions", "upgradeStrategy", "authOptions",
}
HEAD_GROUP_FIELDS = {"serviceType", "headService", "enableIngress", "rayStartParams", "template", "headGroupName"}
WORKER_GROUP_FIELDS = {
    "groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
    "template", "scaleStrategy", "suspend", "idleTimeoutSeconds",
}
RAYJOB_SPEC_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
    "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
    "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
    "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend",
    "schedule",
}


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def test_raycluster_structure():
    rc = _load(RAYCLUSTER)
    assert rc["apiVersion"] == "ray.io/v1"
    assert rc["kind"] == "RayCluster"
    spec = rc["spec"]
    assert set(spec) <= RAYCLUSTER_SPEC_FIELDS
    assert spec["rayVersion"] == _ray_pin()

    head = spec["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_FIELDS
    assert head["rayStartParams"]["num-cpus"] == "0"  # a string, as KubeRay requires
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    for c in _containers(head):
        assert "nvidia.com/gpu" not in c.get("resources", {}).get("limits", {})

    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        assert set(group) <= WORKER_GROUP_FIELDS
        assert 0 <= group["minReplicas"] <= group.get("replicas", 0) <= group["maxReplicas"]
        assert all(isinstance(v, str) for v in group.get("rayStartParams", {}).values())
        for c in _containers(group):
            limits = c.get("resources", {}).get("limits", {})
            if int(limits.get("nvidia.com/gpu", 0)) >= 1:
                gpu_groups.append(group["groupName"])
                requests = c["resources"].get("requests", {})
                assert requests.get("nvidia.com/gpu", limits["nvidia.com/gpu"]) == limits["nvidia.com/gpu"]
    assert gpu_groups, "need a worker group with nvidia.com/gpu limits"

    images = {c["image"] for g in [head, *spec["workerGroupSpecs"]] for c in _containers(g)}
    assert images == {f"rayproject/ray:{_ray_pin()}-py311-gpu"}


@pytest.mark.parametrize("cloud", sorted(LAUNCHER_CONFIGS))
def test_launcher_dashboard_on_loopback_with_token_auth(cloud):
    """The dashboard serves the Jobs API, which runs any code it is sent: loopback only (reached
    through `ray dashboard` / SSH), and every Ray process requires the token."""
    config = _load(LAUNCHER_CONFIGS[cloud])
    text = LAUNCHER_CONFIGS[cloud].read_text()
    assert "0.0.0.0" not in text
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    assert "RAY_AUTH_MODE=token" in " ".join(config["worker_start_ray_commands"])
    assert any("RAY_AUTH_MODE=token" in c for c in config["setup_commands"])  # drivers and `ray job` too
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_raycluster_dashboard_on_loopback_with_token_auth():
    rc = _load(RAYCLUSTER)
    assert rc["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    groups = [rc["spec"]["headGroupSpec"], *rc["spec"]["workerGroupSpecs"]]
    for c in (c for g in groups for c in _containers(g)):
        env = {e["name"]: e for e in c["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token"
        assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"
    assert "0.0.0.0" not in RAYCLUSTER.read_text()


def test_rayjob_structure():
    job = _load(RAYJOB)
    rc = _load(RAYCLUSTER)
    assert job["apiVersion"] == "ray.io/v1"
    assert job["kind"] == "RayJob"
    spec = job["spec"]
    assert set(spec) <= RAYJOB_SPEC_FIELDS
    assert spec["clusterSelector"] == {"ray.io/cluster": rc["metadata"]["name"]}

    entry = spec["entrypoint"]
    assert entry.startswith("reconent sweep run ")
    args = entry.split()
    assert args[3] == PAPER_SPEC
    assert args[args.index("--address") + 1] == "auto"
    assert re.match(r"^(s3|gs)://", args[args.index("--storage") + 1])

    env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(env, dict)
    assert env["working_dir"].endswith(".zip")  # remote working_dir must be a zip archive
    pip = env["pip"]["packages"]
    assert any("constraints.txt" in p and p.startswith("-c ") for p in pip)
    assert "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}" in pip  # installs the project itself
    assert env["env_vars"]["RAY_USAGE_STATS_ENABLED"] == "0"


def test_runtime_envs_are_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(**_load(RUNTIME_ENV))
    RuntimeEnv(**yaml.safe_load(_load(RAYJOB)["spec"]["runtimeEnvYAML"]))


def test_runtime_env_yaml():
    env = _load(RUNTIME_ENV)
    assert set(env) <= {"working_dir", "excludes", "pip", "env_vars", "py_modules", "config"}
    assert env["working_dir"] == "."
    excluded = {p.strip("/") for p in env["excludes"]}
    assert {".venv", "data", "results", ".git"} <= excluded
    assert env["env_vars"] == {"RAY_USAGE_STATS_ENABLED": "0"}
    assert all(isinstance(v, str) for v in env["env_vars"].values())


def test_runtime_env_excludes_skip_only_top_level_folders():
    from ray._private.runtime_env.packaging import _get_excludes  # the matcher Ray uses

    match = _get_excludes(ROOT, _load(RUNTIME_ENV)["excludes"])
    for skipped in [".venv", ".git", "data", "results"]:
        assert match(ROOT / skipped), skipped
    for kept in ["reconent/data.py", "reconent/data", "sweeps/mlp_mnist.yaml", "constraints.txt"]:
        assert not match(ROOT / kept), kept


# ----------------------------------------------------------------------------- cross-file


def _cluster_text_files() -> list[Path]:
    return sorted(p for p in CLUSTER.rglob("*") if p.is_file() and p.suffix in {".yaml", ".yml", ".md"})


def test_sweep_spec_references_are_consistent():
    refs: dict[str, set[str]] = {}
    for path in _cluster_text_files():
        for ref in re.findall(r"sweeps/[\w.<>-]+\.ya?ml", path.read_text()):
            refs.setdefault(ref, set()).add(str(path.relative_to(ROOT)))
    assert set(refs) == {PAPER_SPEC}, refs


def test_referenced_sweep_spec_exists():
    specs = sorted((ROOT / "sweeps").glob("*.y*ml"))
    if not specs:
        pytest.skip("no sweep specs in sweeps/ yet")
    assert (ROOT / PAPER_SPEC).is_file(), f"{PAPER_SPEC} is referenced by cluster/ but missing"


def test_readme_mentions_only_existing_cluster_files():
    readme = (CLUSTER / "README.md").read_text()
    mentioned = set(re.findall(r"cluster/[\w./-]+\.(?:yaml|md|txt)|cluster/kuberay/Dockerfile", readme))
    assert mentioned, "README should reference the cluster files"
    missing = sorted(m for m in mentioned if not (ROOT / m).is_file())
    assert missing == []
    for cmd in ["ray up", "ray dashboard", "ray attach", "reconent sweep submit", "reconent sweep status",
                "ray down", "kubectl apply -f cluster/kuberay/"]:
        assert cmd in readme, cmd
