"""docs/operations.md says what the repository does: its failure table names every alert there is,
only metrics that docs/metrics.md documents, and dashboard panels that exist; the files it points
to exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
OPERATIONS = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
DASHBOARDS = {"Overview": "overview.json", "Job detail": "job-detail.json", "Exporter health": "exporter-health.json"}


def failure_table() -> list[list[str]]:
    section = OPERATIONS[OPERATIONS.index("## Which metric and alert show each failure"):]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| what fails")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def alert_names() -> set[str]:
    groups = yaml.safe_load((REPO / "prometheus" / "rules" / "seekrflow-alerts.rules.yml").read_text())["groups"]
    return {rule["alert"] for group in groups for rule in group["rules"] if "alert" in rule}


def test_the_failure_table_names_every_alert_and_only_real_ones():
    named = {name for row in failure_table() for name in re.findall(r"SeekrFlow\w+", row[2])}
    assert named == alert_names()


def test_the_failure_table_names_only_documented_metrics():
    documented = set(re.findall(r"^### (\w+)", (REPO / "docs" / "metrics.md").read_text(), re.MULTILINE))
    named = {name for row in failure_table() for name in re.findall(r"\b(seekrflow_\w+)", row[1])}
    assert named and named <= documented, named - documented


def test_the_failure_table_names_panels_that_exist():
    panels = {dashboard: {panel["title"] for panel in json.loads(
        (REPO / "grafana" / "dashboards" / name).read_text())["panels"]} for dashboard, name in DASHBOARDS.items()}
    checked = 0
    for row in failure_table():
        for part in filter(None, (part.strip() for part in row[3].split(";"))):
            dashboard, titles = part.split(": ", 1)
            for title in titles.split(", "):
                assert title in panels[dashboard], (dashboard, title)
                checked += 1
    assert checked >= 15


def test_the_files_it_points_to_exist():
    for link in re.findall(r"\]\((\.\./[^)#]+|[a-z]+\.md)\)", OPERATIONS):
        assert (REPO / "docs" / link).resolve().exists(), link
    for path in re.findall(r"`((?:base|components|overlays)/[\w./-]+)`", OPERATIONS):
        assert (REPO / "deploy" / "kubernetes" / path).exists(), path
