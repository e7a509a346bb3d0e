"""The shipped rules and configs, checked by Prometheus's and Alertmanager's own tools.

promtool and amtool come from Debian's prometheus and prometheus-alertmanager packages; a missing
tool is a failure, not a skip.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.rules.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.test.yml"))
RUNBOOK = REPO / "docs" / "runbook.md"
ALERTS_DOC = REPO / "docs" / "alerts.md"


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_rules", PROMETHEUS_DIR / "render_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_rules = load_renderer()
RUNBOOK_BASE_URL = render_rules.load_thresholds()["runbook_base_url"]


def run_tool(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    tool = shutil.which(argv[0])
    assert tool, f"{argv[0]} is not installed (Debian: prometheus / prometheus-alertmanager)"
    result = subprocess.run([tool, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=60)
    print(result.stdout, result.stderr)
    return result


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROMETHEUS_DIR / "rules" / "seekrflow-alerts.rules.yml").read_text())
    return [rule for group in groups["groups"] for rule in group["rules"] if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_rule_files_are_found():
    assert [path.name for path in RULE_FILES] == [
        "seekrflow-alerts.rules.yml",
        "seekrflow-recording.rules.yml",
    ]
    assert [path.name for path in RULE_TEST_FILES] == [
        "clusters.test.yml", "datajobs.test.yml", "exporter-and-api.test.yml", "files.test.yml", "jobs.test.yml",
        "recording.test.yml",
    ]


@pytest.mark.parametrize("rule_file", RULE_FILES, ids=lambda path: path.name)
def test_promtool_check_rules(rule_file):
    result = run_tool("promtool", "check", "rules", str(rule_file))
    assert result.returncode == 0


@pytest.mark.parametrize("test_file", RULE_TEST_FILES, ids=lambda path: path.name)
@pytest.mark.slow
def test_promtool_rule_unit_tests(test_file):
    result = run_tool("promtool", "test", "rules", test_file.name, cwd=test_file.parent)
    assert result.returncode == 0
    assert "SUCCESS" in result.stdout


def test_promtool_check_example_prometheus_config():
    result = run_tool("promtool", "check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_amtool_check_example_alertmanager_config():
    result = run_tool("amtool", "check-config", str(PROMETHEUS_DIR / "alertmanager.yml"))
    assert result.returncode == 0


def test_rule_files_are_rendered_from_the_thresholds():
    rendered = render_rules.render()
    assert sorted(rendered) == [path.name for path in RULE_FILES]
    for name, text in rendered.items():
        assert (PROMETHEUS_DIR / "rules" / name).read_text() == text, (
            f"prometheus/rules/{name} is out of date: run python prometheus/render_rules.py"
        )


def alerts_of(rendered: dict[str, str]) -> dict[str, dict]:
    groups = yaml.safe_load(rendered["seekrflow-alerts.rules.yml"])["groups"]
    return {rule.get("alert") or rule["record"]: rule for group in groups for rule in group["rules"]}


# Every name of a series the exporter (or Prometheus, for `up`) writes, not a recording rule's.
RAW_SERIES = re.compile(r"(?<![\w:])(seekrflow_[a-z_]+|up)\b(\{[^}]*\})?")


def raw_selectors(expr: str) -> list[str]:
    """The braces after each raw series in a PromQL expression or an annotation's query."""
    return [match.group(2) or "" for match in RAW_SERIES.finditer(expr)
            if not expr[match.end():].lstrip().startswith("(")]


def test_every_raw_series_of_every_rule_and_query_carries_the_selector():
    rendered = render_rules.render({"selector": 'job="seekrflow-exporter", namespace="monitoring"'})
    checked = 0
    for text in rendered.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                for expr in [rule["expr"], *rule.get("annotations", {}).values()]:
                    for selector in raw_selectors(expr):
                        assert selector.startswith('{job="seekrflow-exporter", namespace="monitoring"'), (
                            rule.get("alert") or rule["record"], expr)
                        checked += 1
    assert checked > 40


def test_every_join_and_aggregation_keeps_the_cluster_label():
    rendered = render_rules.render({"cluster_label": "env"})
    clauses = 0
    for text in rendered.values():
        for group in yaml.safe_load(text)["groups"]:
            for rule in group["rules"]:
                for clause in re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"]):
                    # `on (job_id, record_id)` joins two series already narrowed to one environment.
                    if clause != "job_id, record_id":
                        assert clause.split(", ")[0] == "env", (rule.get("alert") or rule["record"], clause)
                    clauses += 1
                # Each annotation query is narrowed to the alert's own environment.
                for annotation in rule.get("annotations", {}).values():
                    for query in re.findall(r"printf `([^`]*)`", annotation):
                        assert query.count('env=%q') == query.count("{"), query
    assert clauses > 30


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"selector": 'job=seekrflow'}, "selector: 'job=seekrflow' is not a list of label matchers"),
        ({"selector": '{job="seekrflow"}'}, "selector: '{job=\"seekrflow\"}' is not a list of label matchers"),
        ({"selector": ""}, "selector: '' is not a list of label matchers"),
        ({"cluster_label": "env-name"}, "cluster_label: 'env-name' is not a label name"),
        ({"cluster_label": "__name__"}, "cluster_label: '__name__' is not a label name"),
    ],
)
def test_selector_and_cluster_label_are_checked(overrides, message):
    with pytest.raises(render_rules.RenderError) as error:
        render_rules.render(overrides)
    assert str(error.value).startswith(message)


def test_rendered_with_another_selector_and_label_the_rules_still_pass_promtool(tmp_path):
    rendered = render_rules.render({"selector": 'job=~"seekrflow|seekrflow-exporter", namespace!="test"',
                                    "cluster_label": "env"})
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
        result = run_tool("promtool", "check", "rules", str(tmp_path / name))
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_severity_annotations_and_a_runbook_section():
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    alerts_doc = ALERTS_DOC.read_text()
    names = []
    for rule in alert_rules():
        names.append(rule["alert"])
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE_URL}#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbook.md has no section {rule['alert']}"
        assert f"### {rule['alert']}" in alerts_doc, f"docs/alerts.md does not explain {rule['alert']}"
    assert names == [
        "SeekrFlowExporterDown",
        "SeekrFlowExporterAbsent",
        "SeekrFlowExporterConfigReloadFailed",
        "SeekrFlowAPIDown",
        "SeekrFlowJobDiscoveryFailing",
        "SeekrFlowJobScrapeFailing",
        "SeekrFlowJobFailed",
        "SeekrFlowFileFailures",
        "SeekrFlowQueueStalled",
        "SeekrFlowFileProcessingTooLong",
        "SeekrFlowJobQueuedTooLong",
        "SeekrFlowJobRunningTooLong",
        "SeekrFlowDataJobNeedsReview",
    ]


def test_every_alert_has_a_unit_test_that_fires_and_one_that_stays_quiet():
    fires, quiet = set(), set()
    for test_file in RULE_TEST_FILES:
        for case in yaml.safe_load(test_file.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert fires == names
    assert quiet == names


def test_render_check_passes_on_the_committed_rules():
    result = subprocess.run(
        [sys.executable, str(PROMETHEUS_DIR / "render_rules.py"), "--check"],
        capture_output=True, text=True, timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_render_check_fails_on_stale_rules(tmp_path):
    for name, text in render_rules.render().items():
        (tmp_path / name).write_text(text)
    stale = tmp_path / "seekrflow-alerts.rules.yml"
    stale.write_text(render_rules.render({"job_running_max": "12h"})[stale.name])
    result = subprocess.run(
        [sys.executable, str(PROMETHEUS_DIR / "render_rules.py"), "--check", "--output-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr == (
        f"render_rules: {stale} is out of date; run python prometheus/render_rules.py\n"
    )


def test_runbook_base_url_is_a_placeholder_set_per_deployment():
    # example.com is reserved: the shipped rules never point at somebody else's runbook.
    assert RUNBOOK_BASE_URL == "https://runbooks.example.com/seekrflow-exporter/runbook.md"
    rules = alerts_of(render_rules.render({"runbook_base_url": "https://wiki.internal/ops/seekrflow"}))
    urls = [rule["annotations"]["runbook_url"] for rule in rules.values() if "alert" in rule]
    assert urls[:2] == ["https://wiki.internal/ops/seekrflow#seekrflowexporterdown",
                        "https://wiki.internal/ops/seekrflow#seekrflowexporterabsent"]
    assert all(url.startswith("https://wiki.internal/ops/seekrflow#") for url in urls)


def test_overrides_change_thresholds_and_for_durations():
    by_name = alerts_of(
        render_rules.render({"exporter_down_for": "1s", "job_queued_max": "90s", "selector": 'job="x"'})
    )
    assert by_name["SeekrFlowExporterDown"]["for"] == "1s"
    assert by_name["SeekrFlowExporterDown"]["expr"] == 'up{job="x"} == 0'
    assert by_name["SeekrFlowExporterAbsent"]["expr"] == 'absent(up{job="x"})'
    assert by_name["SeekrFlowJobQueuedTooLong"]["expr"].startswith(
        'seekrflow_ingestion_job_duration_seconds{job="x"} > 90\n'
    )
    assert "(limit 90s)" in by_name["SeekrFlowJobQueuedTooLong"]["annotations"]["description"]
    assert by_name["SeekrFlowAPIDown"]["for"] == "5m"



def test_job_failed_window_sets_the_end_time_limit_and_the_description():
    job_failed = alerts_of(render_rules.render({"job_failed_window": "6h"}))["SeekrFlowJobFailed"]
    assert "for" not in job_failed
    assert "\n      < 21600\n" in job_failed["expr"]
    assert 'seekrflow_ingestion_job_status{job="seekrflow", status="failed"} offset 6h == 1' in job_failed["expr"]
    assert job_failed["annotations"]["description"].startswith(
        "Ingestion job {{ $labels.job_id }} failed within the last 6h, with "
    )
    assert "resolves on its own 6h after the job ended" in job_failed["annotations"]["description"]

@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exporter_down": "1m"}, "exporter_down: no such threshold"),
        ({"exporter_down_for": "5 minutes"}, "exporter_down_for: '5 minutes' is not a duration"),
        ({"file_processing_p90_factor": "three"}, "file_processing_p90_factor: 'three' is not a number"),
        ({"runbook_base_url": "docs/runbook.md"}, "runbook_base_url: 'docs/runbook.md' is not an http(s)"),
        ({"runbook_base_url": "https://wiki/runbook#top"}, "runbook_base_url: 'https://wiki/runbook#top' is not"),
        ({"runbook_base_url": "https://wiki/run book"}, "runbook_base_url: 'https://wiki/run book' is not"),
    ],
)
def test_overrides_are_checked(overrides, message):
    with pytest.raises(render_rules.RenderError) as error:
        render_rules.render(overrides)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5)]
)
def test_durations_parse_like_prometheus(text, seconds):
    assert render_rules.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5s1h", "1.5h", "10"])
def test_a_duration_prometheus_refuses_is_refused_as_a_threshold(text):
    with pytest.raises(render_rules.RenderError) as error:
        render_rules.render({"exporter_down_for": text})
    assert str(error.value) == f"exporter_down_for: {text!r} is not a duration like 30s, 5m or 1h30m"
