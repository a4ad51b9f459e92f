"""Scale-out profile (infra/): the settings profile switch, the compose file, prefect.yaml
(deployed for real onto a Prefect server) and the Kubernetes templates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from infra.settings import (
    PROFILES_DIR,
    ProfileError,
    apply_runtime_env,
    available_profiles,
    load_settings,
    runtime_env,
)

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
CLUSTER = yaml.safe_load((PROFILES_DIR / "cluster.yaml").read_text())


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No TSFM_* / runtime variables from the caller; no params.yaml unless a test writes one."""
    for key in list(os.environ):
        if key.startswith("TSFM_") or key in ("PREFECT_API_URL", "AWS_ENDPOINT_URL_S3"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("TSFM_PARAMS", str(tmp_path / "absent-params.yaml"))
    return monkeypatch


def _seconds(interval) -> float | None:
    return None if interval is None else interval.total_seconds()


def _expand(text: str) -> str:
    """Compose's ``${VAR:-default}`` interpolation with every variable unset ($$ is a literal $)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text).replace("$$", "$")


# --- settings profiles ----------------------------------------------------------------------
def test_default_profile_is_embedded_and_changes_nothing(clean_env):
    settings = load_settings()
    assert settings.profile == "embedded" and "embedded" in available_profiles()
    assert settings.tracking_uri.startswith("sqlite:///") and settings.tracking_uri.endswith("mlflow.db")
    assert settings.artifact_root.startswith("file://")
    assert settings.prefect.api_url is None and settings.s3.endpoint_url is None
    # only Prefect's home: under the project's state folder, not the ~/.prefect every project shares
    home = str((settings.paths.state_dir / "prefect").resolve())
    assert runtime_env(settings) == {"PREFECT_HOME": home}
    assert apply_runtime_env(settings, environ={}) == {"PREFECT_HOME": home}
    assert apply_runtime_env(settings, environ={"PREFECT_HOME": "/mine"}) == {}  # set by hand: it wins
    assert load_settings(profile="embedded").model_dump() == settings.model_dump()


def test_cluster_profile_points_at_the_servers(clean_env):
    clean_env.setenv("TSFM_PROFILE", "cluster")
    settings = load_settings()
    assert settings.profile == "cluster"
    assert settings.tracking_uri == CLUSTER["mlflow"]["tracking_uri"].rstrip("/")
    assert settings.tracking_uri.startswith("http://")
    assert settings.artifact_root == "s3://tsfm/mlflow"
    assert settings.prefect.api_url == CLUSTER["prefect"]["api_url"]
    assert settings.s3.endpoint_url == CLUSTER["s3"]["endpoint_url"]
    # everything the profile does not name keeps its default
    assert settings.pretrain == load_settings(profile="embedded").pretrain


def test_precedence_kwargs_env_params_yaml_profile(clean_env, tmp_path):
    clean_env.setenv("TSFM_PROFILE", "cluster")
    # the repository's params.yaml lists `tracking_uri: null`: null means "not set here"
    clean_env.setenv("TSFM_PARAMS", str(ROOT / "params.yaml"))
    assert load_settings().tracking_uri == CLUSTER["mlflow"]["tracking_uri"]

    params = tmp_path / "params.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "mlflow": {"tracking_uri": "http://from-params:5000", "artifact_root": None},
                "pretrain": {"max_steps": 11},
            }
        )
    )
    clean_env.setenv("TSFM_PARAMS", str(params))
    settings = load_settings()
    assert settings.tracking_uri == "http://from-params:5000"  # params.yaml over the profile
    assert settings.artifact_root == "s3://tsfm/mlflow"  # its null keeps the profile's
    assert settings.pretrain.max_steps == 11

    clean_env.setenv("TSFM_MLFLOW__TRACKING_URI", "http://mlflow:5000")
    settings = load_settings()
    assert settings.tracking_uri == "http://mlflow:5000"  # env over params.yaml
    assert settings.artifact_root == "s3://tsfm/mlflow" and settings.pretrain.max_steps == 11

    settings = load_settings(mlflow={"tracking_uri": "http://kwarg:1"})
    assert settings.tracking_uri == "http://kwarg:1"  # keyword arguments over all
    assert settings.artifact_root == "s3://tsfm/mlflow"


def test_profile_by_keyword_or_file_and_unknown_names(clean_env, tmp_path):
    assert load_settings(profile="cluster").artifact_root == "s3://tsfm/mlflow"
    own = tmp_path / "site.yaml"
    own.write_text("mlflow:\n  tracking_uri: http://site:5000\nprofile: ignored-in-files\n")
    clean_env.setenv("TSFM_PROFILE", str(own))
    assert load_settings().tracking_uri == "http://site:5000"

    clean_env.setenv("TSFM_PROFILE", "clustr")
    with pytest.raises(ProfileError, match=r"unknown settings profile 'clustr'.*available: cluster, embedded"):
        load_settings()


def test_runtime_env_reaches_prefect_and_boto3(clean_env):
    settings = load_settings(profile="cluster")
    env: dict[str, str] = {"AWS_ENDPOINT_URL_S3": "http://set-by-hand:9000", "PREFECT_HOME": "/mine"}
    assert apply_runtime_env(settings, environ=env) == {"PREFECT_API_URL": CLUSTER["prefect"]["api_url"]}
    assert env["AWS_ENDPOINT_URL_S3"] == "http://set-by-hand:9000"  # a variable set by hand wins

    # a fresh process: the export happens before prefect is imported, as the CLI does it
    code = (
        "from infra.settings import apply_runtime_env, load_settings\n"
        "apply_runtime_env(load_settings())\n"
        "import boto3, prefect.settings\n"
        "print(prefect.settings.get_current_settings().api.url)\n"
        "print(boto3.client('s3', region_name='us-east-1', aws_access_key_id='x',"
        " aws_secret_access_key='y').meta.endpoint_url)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "AWS_ENDPOINT_URL_S3")}
    env["TSFM_PROFILE"] = "cluster"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [CLUSTER["prefect"]["api_url"], CLUSTER["s3"]["endpoint_url"]]


# --- docker compose -----------------------------------------------------------------------
COMPOSE = yaml.safe_load(_expand((INFRA / "compose.yaml").read_text()))
SERVICES = COMPOSE["services"]


def test_compose_services_health_and_start_order():
    assert {"postgres", "minio", "minio-init", "mlflow", "prefect-server", "prefect-worker"} <= set(SERVICES)
    for name, svc in SERVICES.items():
        if name != "minio-init":  # the one-shot bucket job finishes instead of staying healthy
            assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"

    def needs(name):
        return {dep: cond["condition"] for dep, cond in SERVICES[name].get("depends_on", {}).items()}

    assert needs("minio-init") == {"minio": "service_healthy"}
    assert needs("mlflow") == {"postgres": "service_healthy", "minio-init": "service_completed_successfully"}
    assert needs("prefect-server") == {"postgres": "service_healthy"}
    assert needs("prefect-worker")["prefect-server"] == "service_healthy"
    assert needs("prefect-worker")["mlflow"] == "service_healthy"
    # every dependency is a service, and the graph has a start order (no cycle)
    order, pending = [], dict.fromkeys(SERVICES)
    while pending:
        ready = [s for s in pending if set(needs(s)) <= set(order)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        order += ready
        for s in ready:
            pending.pop(s)
    assert order.index("postgres") < order.index("mlflow") < order.index("prefect-worker")


def test_compose_servers_use_postgres_and_minio():
    mlflow = " ".join(SERVICES["mlflow"]["command"])
    assert re.search(r"--backend-store-uri=postgresql\+psycopg2://[^ ]+@postgres:5432/mlflow", mlflow)
    assert "--artifacts-destination=s3://tsfm/mlflow" in mlflow and "--serve-artifacts" in mlflow
    assert "mlflow:*" in mlflow  # other containers call it by its service name
    assert SERVICES["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    prefect = SERVICES["prefect-server"]
    assert prefect["command"][:3] == ["prefect", "server", "start"] and "0.0.0.0" in prefect["command"]
    assert re.fullmatch(
        r"postgresql\+asyncpg://[^ ]+@postgres:5432/prefect",
        prefect["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
    )
    assert "CREATE DATABASE prefect" in COMPOSE["configs"]["postgres-init"]["content"]
    assert SERVICES["postgres"]["environment"]["POSTGRES_DB"] == "mlflow"
    assert "local/tsfm" in " ".join(SERVICES["minio-init"]["entrypoint"]).replace('"', "").replace(
        "$TSFM_BUCKET", "tsfm"
    )

    worker = SERVICES["prefect-worker"]
    command = worker["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] == "tsfm-process" and command[command.index("--type") + 1] == "process"
    assert SERVICES["mlflow"]["build"]["dockerfile"] == "infra/Dockerfile" == worker["build"]["dockerfile"]


def test_compose_worker_env_is_the_cluster_profile_on_service_names(clean_env):
    env = SERVICES["prefect-worker"]["environment"]
    for key, value in env.items():
        clean_env.setenv(key, str(value))
    settings = load_settings()
    assert settings.profile == "cluster"
    assert settings.tracking_uri == "http://mlflow:5000" and settings.artifact_root == "s3://tsfm/mlflow"
    assert runtime_env(settings) == {
        "PREFECT_API_URL": env["PREFECT_API_URL"],
        "AWS_ENDPOINT_URL_S3": env["AWS_ENDPOINT_URL_S3"],
        "PREFECT_HOME": str((settings.paths.state_dir / "prefect").resolve()),
    }
    for url in (
        settings.tracking_uri,
        settings.prefect.api_url,
        settings.s3.endpoint_url,
        settings.forecast.dask_address,
    ):
        host = re.match(r"(?:https?|tcp)://([^:/]+)", url).group(1)
        assert host in SERVICES, f"{url} names no compose service"
    # batch forecasts' chunks run on the compose Dask cluster, whose workers see what the flow sees
    workers = SERVICES["dask-worker"]
    assert workers["environment"] == env and workers["deploy"]["replicas"] == 2
    assert workers["command"][:3] == ["dask", "worker", settings.forecast.dask_address]
    assert workers["depends_on"] == {"dask-scheduler": {"condition": "service_healthy"}}


def test_dockerfile_installs_like_the_makefile():
    lines = [ln.strip() for ln in (INFRA / "Dockerfile").read_text().splitlines()]
    torch_pin = next(ln for ln in (ROOT / "constraints.txt").read_text().splitlines() if ln.startswith("torch=="))
    assert f"ARG TORCH_SPEC={torch_pin}" in lines
    torch_at = next(i for i, ln in enumerate(lines) if '"$TORCH_SPEC"' in ln)
    project_at = next(i for i, ln in enumerate(lines) if ln.startswith("RUN pip install -c constraints.txt"))
    assert torch_at < project_at  # torch pinned first, then the constrained project install
    assert 'cluster = ["psycopg2-binary' in (ROOT / "pyproject.toml").read_text()
    assert any(ln.startswith("psycopg2-binary==") for ln in (ROOT / "constraints.txt").read_text().splitlines())
    for ln in lines:  # everything the image copies is in the repository
        if ln.startswith("COPY "):
            for src in ln.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies missing {src}"
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!.venv" not in ignore and ignore[ignore.index("*") + 1].startswith("!")


# --- prefect.yaml ---------------------------------------------------------------------------
PREFECT_YAML = yaml.safe_load((ROOT / "prefect.yaml").read_text())
POOLS = {p["name"] for p in PREFECT_YAML["definitions"]["work_pools"].values()}
K8S_TEMPLATE = json.loads((INFRA / "k8s" / "work-pool-base-job-template.json").read_text())


def test_prefect_yaml_mirrors_tsfm_deploy(clean_env):
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import Flow, load_flow_from_entrypoint

    from flows.deployments import build_deployments

    PrefectYamlModel.model_validate(PREFECT_YAML)  # what `prefect deploy` validates
    assert POOLS == {"tsfm-process", "tsfm-k8s"}
    built = {d.name: d for d in build_deployments(load_settings())}
    listed = {d["name"]: d for d in PREFECT_YAML["deployments"]}
    assert set(listed) == set(built)
    flows = {}
    for name, spec in listed.items():
        want = built[name]
        assert spec["work_pool"]["name"] in POOLS
        assert spec["entrypoint"] == want.entrypoint
        flow = flows.setdefault(spec["entrypoint"], load_flow_from_entrypoint(spec["entrypoint"]))
        assert isinstance(flow, Flow) and flow.name == want.flow_name
        assert [(s.get("cron"), s.get("interval"), s["timezone"]) for s in spec["schedules"]] == [
            (getattr(s.schedule, "cron", None), _seconds(getattr(s.schedule, "interval", None)), s.schedule.timezone)
            for s in want.schedules
        ]
        assert len(spec.get("triggers") or []) == len(want.triggers or [])
        assert spec["tags"] == want.tags and spec["description"] == want.description
        # the same parameters once the flow's parameter model fills in its defaults
        given = spec["parameters"].get("params")
        expected = (want.parameters or {}).get("params")
        if given is None or expected is None:
            assert given is None and expected is None, name
        else:
            model = typing.get_type_hints(flow.fn)["params"]
            # the one-click form leaves out what a person fills in (domain, source)
            blank = {"domain", "source"} if "domain" in model.model_fields and "domain" not in expected else set()
            filled = model.model_validate({"domain": "any", **given} if blank else given)
            assert filled.model_dump(exclude=blank) == expected, name
    # the GPU pool's job variables are ones its base job template declares, with valid values
    k8s_vars = next(p for p in PREFECT_YAML["definitions"]["work_pools"].values() if p["name"] == "tsfm-k8s")
    jsonschema.validate(k8s_vars["job_variables"], K8S_TEMPLATE["variables"])
    assert set(k8s_vars["job_variables"]) <= set(K8S_TEMPLATE["variables"]["properties"])


def test_prefect_deploy_all_registers_on_a_server(prefect_harness, clean_env, tmp_path):
    """`prefect deploy --all` with prefect.yaml against a real Prefect server, with both pools."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterTags
    from prefect.settings import PREFECT_API_URL

    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="tsfm-process", type="process"), overwrite=True)
        client.create_work_pool(
            WorkPoolCreate(name="tsfm-k8s", type="kubernetes", base_job_template=K8S_TEMPLATE), overwrite=True
        )
        assert client.read_work_pool("tsfm-k8s").base_job_template == K8S_TEMPLATE  # accepted as is

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_CLI_PROMPT": "false"}
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]

    with get_client(sync_client=True) as client:
        found = client.read_deployments(deployment_filter=DeploymentFilter(tags=DeploymentFilterTags(all_=["tsfm"])))
        flows = {f.id: f.name for f in client.read_flows()}
    got = {f"{flows[d.flow_id]}/{d.name}": d for d in found}
    for spec in PREFECT_YAML["deployments"]:
        key = f"{load_flow_name(spec['entrypoint'])}/{spec['name']}"
        assert key in got, f"{key} not deployed; got {sorted(got)}"
        d = got[key]
        assert d.work_pool_name == spec["work_pool"]["name"] and d.entrypoint == spec["entrypoint"]
        assert sorted(
            str(getattr(s.schedule, "cron", None) or s.schedule.interval.total_seconds()) for s in d.schedules
        ) == sorted(str(s.get("cron") or float(s["interval"])) for s in spec["schedules"])
        assert d.pull_steps == PREFECT_YAML["pull"]
    assert got["pretrain/retrain-backbone"].job_variables["gpus"] == 8


def load_flow_name(entrypoint: str) -> str:
    from prefect.flows import load_flow_from_entrypoint

    return load_flow_from_entrypoint(entrypoint).name


# --- Kubernetes -----------------------------------------------------------------------------
def test_k8s_work_pool_template_is_valid_for_prefect():
    from prefect.server.schemas.actions import validate_base_job_template
    from prefect.utilities.templating import apply_values, find_placeholders

    template = K8S_TEMPLATE
    assert set(template) == {"job_configuration", "variables"}
    validate_base_job_template(template)  # what the server checks on `work-pool create`
    jsonschema.Draft202012Validator.check_schema(template["variables"])
    props = template["variables"]["properties"]
    # the variables and job configuration keys of Prefect's kubernetes worker
    assert {
        "name",
        "env",
        "labels",
        "command",
        "namespace",
        "image",
        "image_pull_policy",
        "service_account_name",
        "finished_job_ttl",
        "job_watch_timeout_seconds",
        "pod_watch_timeout_seconds",
        "stream_output",
    } <= set(props)
    assert {"command", "env", "labels", "name", "namespace", "job_manifest"} <= set(template["job_configuration"])
    used = {p.name for p in find_placeholders(json.dumps(template["job_configuration"]))}
    assert used <= set(props)

    defaults = {k: v["default"] for k, v in props.items() if "default" in v}
    job = apply_values(template["job_configuration"]["job_manifest"], {**defaults, "env": {}, "name": "x"})
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # what prefect-kubernetes requires of a job manifest
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    assert (pod["parallelism"], pod["completions"], pod["restartPolicy"]) == (1, 1, "Never")
    assert container["name"] == "prefect-job" and container["image"] == "tsfm:latest"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 0  # CPU pods unless a deployment asks
    secret = yaml.safe_load((INFRA / "k8s" / "cluster-secret.example.yaml").read_text())
    assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/data", "/dev/shm"}


def test_k8s_secret_is_the_cluster_profile(clean_env):
    secret = yaml.safe_load((INFRA / "k8s" / "cluster-secret.example.yaml").read_text())
    for key, value in secret["stringData"].items():
        clean_env.setenv(key, value)
    settings = load_settings()
    assert settings.profile == "cluster" and settings.artifact_root == "s3://tsfm/mlflow"
    assert settings.tracking_uri.startswith("http://mlflow.") and settings.s3.endpoint_url.startswith("http://minio.")


def test_k8s_training_job_runs_the_torchrun_launcher():
    service, job = yaml.safe_load_all((INFRA / "k8s" / "training-job.yaml").read_text())
    assert service["kind"] == "Service" and service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    name = job["metadata"]["name"]
    assert service["spec"]["selector"] == {"job-name": name}
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and pod["subdomain"] == service["metadata"]["name"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    rank_ref = next(e for e in container["env"] if e["name"] == "NODE_RANK")["valueFrom"]["fieldRef"]["fieldPath"]
    assert rank_ref == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert spec["completions"] == spec["parallelism"] == int(env["NNODES"])
    assert int(env["NPROC_PER_NODE"]) == int(container["resources"]["limits"]["nvidia.com/gpu"])
    assert env["MASTER_ADDR"] == f"{name}-0.{service['metadata']['name']}"
    assert int(env["MASTER_PORT"]) == service["spec"]["ports"][0]["port"]
    assert {"/data", "/dev/shm"} <= {m["mountPath"] for m in container["volumeMounts"]}
    assert container["envFrom"][0]["secretRef"]["name"] == "tsfm-cluster"
    assert container["command"] == ["bash", "infra/launch/torchrun.sh"]

    # the very launcher, in dry-run mode, as pod 1 of the job would run it
    run_env = {k: v for k, v in os.environ.items() if k not in ("RDZV_ENDPOINT", "WORLD_SIZE", "RANK")}
    run_env.update({k: v for k, v in env.items() if v is not None}, NODE_RANK="1", DRY_RUN="1")
    out = subprocess.run(
        container["command"] + container["args"], cwd=ROOT, env=run_env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert (
        f"-m torch.distributed.run --nnodes={env['NNODES']} --nproc-per-node={env['NPROC_PER_NODE']} "
        f"--max-restarts=0 --node-rank=1 --master-addr={env['MASTER_ADDR']} --master-port={env['MASTER_PORT']} "
        f"-m models.pretraining {' '.join(container['args'])}"
    ) in line

    # and the trainer accepts its arguments
    from models.pretraining.spec import TrainerJob

    args = TrainerJob.parser().parse_args(container["args"])
    assert args.resume and args.preset == "22m" and len(args.data) == 2
