"""docs/metrics.md and a real exposition list the same metrics, with the same types and labels."""

import json
import re
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.simulator.datajobs import SimulatedDataJobs
from harness import ROOT, ExporterProcess

KEY = "sk-test-docs-5e1d2c3b4a"
FIXTURES = Path(__file__).parent / "fixtures"
HEADING = re.compile(r"^### (\S+)\n- Type: ([a-z ]+)\n(?:- Labels: (.+)\n)?", re.M)


def documented() -> dict[str, tuple[str, set[str]]]:
    text = (ROOT / "docs" / "metrics.md").read_text()
    found = {}
    for name, kind, labels in HEADING.findall(text):
        names = set(re.findall(r"`([a-z_]+)`", labels or ""))
        found[name] = (kind.strip(), names)
    return found


def served() -> dict[str, tuple[str, set[str]]]:
    body = json.loads((FIXTURES / "job_running.json").read_text())
    world = SimulatedWorld(jobs=1, files_per_job=4, seed=5, started_at=time.time())
    data_jobs = SimulatedDataJobs(world, 1)
    with SimulatorServer(world, KEY, fixtures={"ij-running": body}, data_jobs=data_jobs) as simulator:
        config = {"api": {"base_url": simulator.url}, "jobs": ["ij-running", "ij-missing"],
                  "discovery": {"enabled": True}, "data_jobs": {"enabled": True, "jobs": ["dj-missing"]}}
        with ExporterProcess(config, KEY) as exporter:
            text = requests.get(exporter.url + "/metrics", timeout=10,
                                headers={"Accept": "application/openmetrics-text; version=1.0.0"}).text
    found = {}
    for family in text_string_to_metric_families(text):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {label for sample in family.samples for label in sample.labels if label != "le"}
        found[name] = (family.type, labels)
    return found


@pytest.mark.slow
def test_docs_and_exposition_agree():
    docs, exposed = documented(), served()
    seekrflow = {name: spec for name, spec in exposed.items() if name.startswith("seekrflow_")}
    assert sorted(set(docs) - {"process_*"}) == sorted(seekrflow), "documented vs served metric names"
    for name, (kind, labels) in seekrflow.items():
        assert docs[name] == (kind, labels), name
    others = {name for name in exposed if not name.startswith("seekrflow_")}
    assert others and all(name.startswith("process_") for name in others)
