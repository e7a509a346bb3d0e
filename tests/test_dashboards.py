"""The Grafana dashboards: generated, valid against Grafana's own types, lint-clean, and showing data.

- The committed JSON equals a fresh run of grafana/generate.py.
- Every dashboard validates against a JSON Schema of Grafana's `Dashboard` type. `.ci/run` makes it
  with `.ci/grafana-schema.sh` (npm @grafana/schema + ts-json-schema-generator) in
  .ci/cache/dashboard.schema.json.
- The rules of Grafana's dashboard linter that matter here hold: the datasource comes from the
  `datasource` variable, rate()/irate()/increase() use `$__rate_interval`, every panel has a unit,
  panel IDs are unique.
- Every query of every panel, variable and annotation runs against a real Prometheus that scraped
  the exporter, which watched the simulator, with the repository's rules loaded, and returns data.
- Two exporters watching the same jobs double nothing: every query over the exporter's per-job
  series first keeps one value per job (`max by (job_id, ...)`), and with a second exporter on the
  same jobs the Overview and Job detail show exactly what they show with one.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import importlib.util
import json
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import requests
import yaml

from exporter.simulator import SimulatedWorld, SimulatorServer
from exporter.simulator.datajobs import SimulatedDataJobs
from harness import ExporterProcess, wait_until
from promstack import PrometheusServer, scrape_config

REPO = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = REPO / "grafana" / "dashboards"
SCHEMA_FILE = REPO / ".ci" / "cache" / "dashboard.schema.json"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


def load_generator():
    spec = importlib.util.spec_from_file_location("grafana_generate", REPO / "grafana" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATOR = load_generator()
NAMES = sorted(GENERATOR.DASHBOARDS)


def load(name: str) -> dict:
    return json.loads((DASHBOARD_DIR / name).read_text())


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, rows included, and the panels nested in collapsed rows."""
    result = []
    for item in dashboard["panels"]:
        result.append(item)
        result.extend(item.get("panels", []))
    return result


def data_panels(dashboard: dict) -> list[dict]:
    return [item for item in all_panels(dashboard) if item["type"] != "row"]


def prometheus_annotations(dashboard: dict) -> list[dict]:
    return [item for item in dashboard["annotations"]["list"] if not item.get("builtIn")]


# --- generated ------------------------------------------------------------------------------

def test_dashboard_files_are_exactly_the_generated_ones():
    assert sorted(path.name for path in DASHBOARD_DIR.glob("*.json")) == ["exporter-health.json",
                                                                         "job-detail.json", "overview.json"]


@pytest.mark.parametrize("name", NAMES)
def test_committed_json_equals_a_fresh_generation(name):
    assert (DASHBOARD_DIR / name).read_text() == GENERATOR.render(GENERATOR.DASHBOARDS[name]), (
        f"{name} is out of date: run python grafana/generate.py")


def test_generator_check_mode_agrees():
    assert GENERATOR.main(["--check"]) == 0


# --- Grafana's dashboard type ---------------------------------------------------------------

@pytest.fixture(scope="module")
def dashboard_schema() -> dict:
    assert SCHEMA_FILE.is_file(), f"{SCHEMA_FILE} is missing: run bash .ci/grafana-schema.sh (as .ci/run does)"
    schema = json.loads(SCHEMA_FILE.read_text())
    # Grafana's dashboard model types an annotation's `target` as the built-in Grafana annotation
    # query (its own comment: "TODO: this should be a regular DataQuery that depends on the
    # selected dashboard"), while a Prometheus annotation stores a Prometheus query there and its
    # display options beside it. Admit exactly that and nothing else; panels, variables, links
    # and the rest are checked as Grafana types them.
    definitions = schema["definitions"]
    annotation = definitions["AnnotationQuery"]["properties"]
    annotation["target"] = {"anyOf": [
        {"$ref": "#/definitions/AnnotationTarget"},
        {"type": "object", "additionalProperties": False, "required": ["expr", "refId"],
         "properties": {"expr": {"type": "string"}, "refId": {"type": "string"},
                        "interval": {"type": "string"}}},
    ]}
    for option in ("titleFormat", "textFormat", "tagKeys"):
        annotation[option] = {"type": "string"}
    annotation["useValueForTime"] = {"type": "boolean"}
    return schema


def schema_errors(schema: dict, dashboard: dict) -> list[str]:
    """Every error, with those of each branch of an anyOf (a panel is a Panel or a RowPanel)."""
    def walk(errors):
        for error in errors:
            yield f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            yield from walk(error.context or ())
    return list(walk(jsonschema.Draft7Validator(schema).iter_errors(dashboard)))


@pytest.mark.parametrize("name", NAMES)
def test_dashboard_validates_against_grafanas_dashboard_type(dashboard_schema, name):
    assert schema_errors(dashboard_schema, load(name)) == []


def test_schema_catches_a_misspelt_panel_key_and_a_wrong_type(dashboard_schema):
    dashboard = load("overview.json")
    broken = copy.deepcopy(dashboard)
    broken["panels"][1]["fieldconfig"] = broken["panels"][1].pop("fieldConfig")
    broken["templating"]["list"][1]["refresh"] = "on time range change"
    errors = schema_errors(dashboard_schema, broken)
    assert "panels/1: Additional properties are not allowed ('fieldconfig' was unexpected)" in errors, errors
    assert any(error.startswith("templating/list/1/refresh") for error in errors), errors


# --- lint -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_datasource_comes_from_the_datasource_variable(name):
    dashboard = load(name)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    users = data_panels(dashboard) + prometheus_annotations(dashboard) + [
        variable for variable in variables.values() if variable["type"] == "query"]
    for user in users:
        assert user["datasource"] == DATASOURCE_REF, user.get("title") or user["name"]
        for target in user.get("targets", []):
            assert target["datasource"] == DATASOURCE_REF, user["title"]
    # No datasource UID anywhere but the variable reference.
    uids = set(re.findall(r'"uid": "([^"]*)"', json.dumps(dashboard)))
    assert uids == {"${datasource}", "-- Grafana --", dashboard["uid"]}


RANGE_FUNCTION = re.compile(r"\b(rate|irate|increase)\s*\(")


def range_function_windows(expr: str) -> list[str]:
    """The range selector windows inside every rate(), irate() and increase() of an expression."""
    windows = []
    for match in RANGE_FUNCTION.finditer(expr):
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(expr[end], 0)
            end += 1
        inside = re.findall(r"\[([^\]]+)\]", expr[match.end():end])
        assert inside, f"{match.group(1)}() without a range in {expr}"
        windows.extend(inside)
    return windows


def test_range_function_windows_are_found():
    assert range_function_windows("sum(rate(a[5m])) / irate(b{c=\"[x]\"}[$__rate_interval])") == [
        "5m", "x", "$__rate_interval"]


@pytest.mark.parametrize("name", NAMES)
def test_rate_functions_use_the_rate_interval(name):
    exprs = [target["expr"] for item in data_panels(load(name)) for target in item["targets"]]
    windows = [window for expr in exprs for window in range_function_windows(expr)]
    assert set(windows) <= {"$__rate_interval"}, windows


@pytest.mark.parametrize("name", NAMES)
def test_every_panel_has_a_unit_a_title_and_a_description(name):
    panels = data_panels(load(name))
    for item in panels:
        assert item["fieldConfig"]["defaults"]["unit"], item["title"]
        assert item["title"] and item["description"], item
    titles = [item["title"] for item in panels]
    assert len(titles) == len(set(titles)), titles


@pytest.mark.parametrize("name", NAMES)
def test_panel_ids_are_unique_and_panels_do_not_overlap(name):
    panels = all_panels(load(name))
    ids = [item["id"] for item in panels]
    assert len(ids) == len(set(ids))
    cells = set()
    for item in panels:
        grid = item["gridPos"]
        assert grid["x"] + grid["w"] <= 24, item["title"]
        covered = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                   for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not covered & cells, item["title"]
        cells |= covered


# The overview and the exporter health compare jobs; the job detail is about one job.
JOB_ID_SELECTION = {"overview.json": (True, True), "exporter-health.json": (True, True),
                    "job-detail.json": (False, False)}


@pytest.mark.parametrize("name", NAMES)
def test_job_queries_follow_the_job_id_variable(name):
    dashboard = load(name)
    job_id = next(v for v in dashboard["templating"]["list"] if v["name"] == "job_id")
    assert (job_id["multi"], job_id["includeAll"]) == JOB_ID_SELECTION[name]
    assert job_id["refresh"] == 2  # refresh on time range change: new jobs appear
    for item in data_panels(dashboard):
        for target in item["targets"]:
            if re.search(r"seekrflow_ingestion_|\bjob_id[a-z_]*:", target["expr"]):
                assert 'job_id=~"$job_id"' in target["expr"], (item["title"], target["expr"])


# --- one selector, several environments -----------------------------------------------------------

# Every series a panel reads: the exporter's, Prometheus's own about the target, the recording rules'.
SERIES = re.compile(r"(?<![\w:$])((?:[a-z_]*:)?(?:seekrflow_\w+|up|scrape_\w+|process_\w+)(?::\w+)?|ALERTS)\b"
                    r"(\{[^}]*\})?")


def series_selectors(expr: str) -> list[tuple[str, str]]:
    return [(match.group(1), match.group(2) or "") for match in SERIES.finditer(expr)
            if not expr[match.end():].lstrip().startswith("(")]


def test_series_selectors_are_found():
    assert series_selectors('topk($limit, job_id:seekrflow_a:sum{x="1"}) / sum(seekrflow_up) and on (job) '
                            'up{y="2"} / :seekrflow_b:ratio') == [
        ("job_id:seekrflow_a:sum", '{x="1"}'), ("seekrflow_up", ""), ("up", '{y="2"}'), (":seekrflow_b:ratio", "")]


@pytest.mark.parametrize("name", NAMES)
def test_every_series_follows_the_selector_and_the_scope_variables(name):
    """The exporter's series carry the rules' selector and the environment, scrape job and instance
    variables; a recording rule's keep only the environment, so they follow that one."""
    dashboard = load(name)
    scope = f'{{{GENERATOR.SELECTOR}, {CLUSTER}=~"$cluster", job=~"$job", instance=~"$instance"'
    exprs = [target["expr"] for item in data_panels(dashboard) for target in item["targets"]]
    exprs += [variable["query"]["query"] for variable in dashboard["templating"]["list"]
              if variable["type"] == "query" and variable["name"] == "job_id"]
    checked = 0
    for expr in exprs:
        for series, selector in series_selectors(expr):
            if ":" in series:
                assert selector.startswith(f'{{{CLUSTER}=~"$cluster"'), (series, expr)
            else:
                assert selector.startswith(scope), (series, expr)
            checked += 1
    assert checked >= 15
    [annotation] = prometheus_annotations(dashboard)
    assert f'{CLUSTER}=~"$cluster"' in annotation["target"]["expr"]


def test_the_selector_comes_from_the_rules_thresholds():
    thresholds = yaml.safe_load((REPO / "prometheus" / "thresholds.yml").read_text())
    assert (GENERATOR.SELECTOR, GENERATOR.CLUSTER_LABEL) == (thresholds["selector"], thresholds["cluster_label"])


def test_another_selector_and_label_render_through_the_command_line(tmp_path):
    assert GENERATOR.main(["--selector", 'job="seekrflow-exporter"', "--cluster-label", "env",
                           "--output-dir", str(tmp_path)]) == 0
    try:
        overview = json.loads((tmp_path / "overview.json").read_text())
    finally:
        GENERATOR.main(["--check"])  # puts the default selector back for the other tests
    text = json.dumps(overview)
    assert 'seekrflow_ingestion_job_status{job=\\"seekrflow-exporter\\", env=~\\"$cluster\\"' in text
    assert 'job=\\"seekrflow\\"' not in text
    cluster = next(v for v in overview["templating"]["list"] if v["name"] == "cluster")
    assert cluster["query"]["query"] == 'label_values(up{job="seekrflow-exporter"}, env)'


# Panels that draw one series per job, in the dashboards that compare jobs.
PER_JOB_PANELS = ("timeseries", "bargauge", "state-timeline")


@pytest.mark.parametrize("name", ["overview.json", "exporter-health.json"])
def test_panels_of_one_series_per_job_draw_the_limit_at_most(name):
    limited = []
    for item in data_panels(load(name)):
        for target in item["targets"]:
            if item["type"] in PER_JOB_PANELS and target["legendFormat"].startswith("{{job_id}}"):
                assert re.match(r"^(topk|bottomk)\(\$limit, ", target["expr"]), (item["title"], target["expr"])
                limited.append(item["title"])
    assert len(limited) >= 3


# --- two exporters on the same jobs ------------------------------------------------------------

# A per-job series of the exporter, not a recording rule (those have a `level:` before the name).
RAW_JOB_SERIES = re.compile(r"(?<![\w:])seekrflow_ingestion_\w+")
AGGREGATION = re.compile(r"\b(sum|min|max|avg|count|group|stddev|stdvar|quantile|topk|bottomk|count_values)"
                         r"\s*(?:(by|without)\s*\(([^)]*)\))?\s*\(")
# The right operand of `and on (...)` / `unless on (...)`: it only filters, its values are not kept.
SET_FILTER = re.compile(r"\b(?:and|unless)\s+on\s*\([^)]*\)\s*")
# Each exporter series' labels besides job_id (checked against a real exposition below).
OWN_LABELS = {
    "seekrflow_ingestion_job_status": {"status"},
    "seekrflow_ingestion_job_files": {"status"},
    "seekrflow_ingestion_job_file_processing_duration_seconds_bucket": {"status", "le"},
    "seekrflow_ingestion_job_file_processing_duration_seconds_gcount": {"status"},
    "seekrflow_ingestion_job_file_processing_duration_seconds_gsum": {"status"},
    "seekrflow_ingestion_job_file_queue_wait_seconds_bucket": {"le"},
    "seekrflow_ingestion_job_scrape_error_info": {"reason"},
    "seekrflow_ingestion_file_info": {"record_id", "filename", "status", "method", "worker_id"},
    "seekrflow_ingestion_file_queue_position": {"record_id"},
    "seekrflow_ingestion_file_queue_wait_seconds": {"record_id"},
    "seekrflow_ingestion_file_processing_duration_seconds": {"record_id"},
    "seekrflow_ingestion_file_error_info": {"record_id", "error_message", "suggested_fix"},
    "seekrflow_ingestion_job_info": {"data_job_id"},
}
ONE_PER_JOB = re.compile(r"\b(?:max|min) by \(([^)]*)\) \((seekrflow_ingestion_\w+)(?:\{([^}]*)\})?\)")


def closing_paren(expr: str, opening: int) -> int:
    """The index of the parenthesis that closes the one at ``opening``."""
    depth = 0
    for index in range(opening, len(expr)):
        depth += {"(": 1, ")": -1}.get(expr[index], 0)
        if depth == 0:
            return index
    raise AssertionError(f"unbalanced parentheses in {expr}")


def without_set_filters(expr: str) -> str:
    """The expression without the (parenthesized) right operands of `and on` / `unless on`."""
    while match := SET_FILTER.search(expr):
        assert expr[match.end()] == "(", f"write the filter after {match.group(0)!r} in parentheses: {expr}"
        expr = expr[:match.start()] + expr[closing_paren(expr, match.end()) + 1:]
    return expr


def duplicate_exporter_problems(expr: str) -> list[str]:
    """Where an aggregation over an exporter's per-job series would count a job once per exporter.

    Walking out from each per-job series, the first aggregation that drops the `instance` label
    must be a `max` or `min` that keeps `job_id` (one value per job, whatever the exporters); an
    aggregation that keeps `instance` stays per exporter and is fine. Where that max or min reads
    the series directly, it also keeps the series' own labels that the selector does not fix.
    """
    expr = without_set_filters(expr)
    spans = [(match, match.end() - 1, closing_paren(expr, match.end() - 1)) for match in AGGREGATION.finditer(expr)]
    problems = []
    for series in RAW_JOB_SERIES.finditer(expr):
        around = sorted((span for span in spans if span[1] < series.start() < span[2]), key=lambda span: -span[1])
        for match, _, _ in around:
            operator, clause, labels = match.group(1), match.group(2), {
                label.strip() for label in (match.group(3) or "").split(",") if label.strip()}
            # Both lambdas are called in this iteration only.
            keeps = (lambda label: label in labels) if clause == "by" else (lambda label: label not in labels)  # noqa: B023
            # topk and bottomk pick series whole (every label kept): a selection, not a sum.
            if operator in ("topk", "bottomk") or (clause is not None and keeps("instance")):
                continue
            if operator not in ("max", "min") or clause != "by" or not keeps("job_id"):
                problems.append(f"{match.group(0)[:-1].strip()} over {series.group(0)}")
            break
    for match in ONE_PER_JOB.finditer(expr):
        kept = {label.strip() for label in match.group(1).split(",")}
        fixed = set(re.findall(r'(\w+)="', match.group(3) or ""))
        missing = OWN_LABELS.get(match.group(2), set()) - kept - fixed
        if missing:
            problems.append(f"{match.group(0)} merges the {sorted(missing)} of one job")
    return problems


def test_duplicate_exporter_check_tells_safe_queries_from_doubling_ones():
    f = 'job_id=~"$job_id"'
    assert duplicate_exporter_problems(f"sum by (status) (seekrflow_ingestion_job_status{{{f}}})") == [
        "sum by (status) over seekrflow_ingestion_job_status"]
    assert duplicate_exporter_problems(f"sum by (job_id) (seekrflow_ingestion_job_files{{{f}}})") == [
        "sum by (job_id) over seekrflow_ingestion_job_files"]
    assert duplicate_exporter_problems("histogram_quantile(0.9, sum by (le) (max by (job_id, le) ("
                                       "seekrflow_ingestion_job_file_processing_duration_seconds_bucket)))") == [
        "max by (job_id, le) (seekrflow_ingestion_job_file_processing_duration_seconds_bucket) "
        "merges the ['status'] of one job"]
    assert duplicate_exporter_problems("count(seekrflow_ingestion_job_scrape_success == 0)") == [
        "count over seekrflow_ingestion_job_scrape_success"]
    assert duplicate_exporter_problems(f"topk(5, sum(seekrflow_ingestion_job_files{{{f}}}))") == [
        "sum over seekrflow_ingestion_job_files"]
    for safe in (f"sum by (status) (max by (job_id, status) (seekrflow_ingestion_job_files{{{f}}}))",
                 f'sum(max by (job_id) (seekrflow_ingestion_job_files{{{f}, status="failed"}}))',
                 f"sum by (instance) (seekrflow_ingestion_job_scrape_success{{{f}}} == bool 0)",
                 f"topk($limit, seekrflow_ingestion_job_file_records_omitted{{{f}}})",
                 f"seekrflow_ingestion_job_duration_seconds{{{f}}}",
                 f"sum(job_id:seekrflow_ingestion_job_files_finished:sum{{{f}}})",
                 "quantile(0.5, max by (job_id) (seekrflow_ingestion_job_duration_seconds and on (job_id) "
                 "(seekrflow_ingestion_job_status == 1)))"):
        assert duplicate_exporter_problems(safe) == [], safe


@pytest.mark.parametrize("name", NAMES)
def test_aggregations_over_jobs_take_one_value_per_job_first(name):
    problems = {(item["title"], target["refId"]): duplicate_exporter_problems(target["expr"])
                for item in data_panels(load(name)) for target in item["targets"]}
    assert {key: found for key, found in problems.items() if found} == {}


def job_detail_data_links(dashboard: dict, panel_title: str) -> list[str]:
    """The URLs of the data links on the job_id column of a table."""
    table = next(item for item in data_panels(dashboard) if item["title"] == panel_title)
    return [link["url"] for override in table["fieldConfig"]["overrides"]
            if override["matcher"] == {"id": "byName", "options": "job_id"}
            for prop in override["properties"] if prop["id"] == "links" for link in prop["value"]]


def test_dashboards_link_to_each_other():
    paths = {load(name)["uid"]: f"/d/{load(name)['uid']}/{load(name)['uid']}" for name in NAMES}
    assert set(paths) == {"seekrflow-overview", "seekrflow-job-detail", "seekrflow-exporter-health"}
    for name in NAMES:
        dashboard = load(name)
        assert "seekrflow" in dashboard["tags"]
        links = {link["url"].split("?")[0]: link for link in dashboard["links"]}
        # Each dashboard links to the two others, keeping the time range.
        assert set(links) == set(paths.values()) - {paths[dashboard["uid"]]}
        for path, link in links.items():
            assert (link["type"], link["keepTime"]) == ("link", True)
            if path == paths["seekrflow-job-detail"]:
                # A selection of several jobs has no one job to open: only the data source goes along.
                assert link["includeVars"] is False
                assert link["url"] == "/d/seekrflow-job-detail/seekrflow-job-detail?${datasource:queryparam}"
            else:
                assert (link["includeVars"], link["url"]) == (True, path)


@pytest.mark.parametrize(("name", "table_title"), [("overview.json", "Jobs"), ("exporter-health.json", "Fetch errors")])
def test_a_job_id_in_a_table_opens_the_job_detail_of_that_one_job(name, table_title):
    assert job_detail_data_links(load(name), table_title) == [
        "/d/seekrflow-job-detail/seekrflow-job-detail?${datasource:queryparam}"
        "&var-job_id=${__value.raw}&${__url_time_range}"]


@pytest.mark.parametrize("name", NAMES)
def test_firing_alerts_are_annotated(name):
    [annotation] = prometheus_annotations(load(name))
    assert annotation["enable"] is True
    assert annotation["target"]["expr"].startswith('ALERTS{alertstate="firing", alertname=~"SeekrFlow.+"')


# --- provisioning ---------------------------------------------------------------------------

def test_provisioning_loads_every_dashboard_from_the_mounted_folder():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    [provider] = yaml.safe_load((REPO / "grafana/provisioning/dashboards/seekrflow.yml").read_text())["providers"]
    assert provider["type"] == "file"
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]


def test_provisioned_datasource_matches_the_demo_prometheus():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load(compose["configs"]["prometheus-config"]["content"])
    [datasource] = yaml.safe_load((REPO / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert (datasource["type"], datasource["url"]) == ("prometheus", "http://prometheus:9090")
    # $__rate_interval is derived from the scrape interval Grafana is told.
    assert datasource["jsonData"]["timeInterval"] == prometheus["global"]["scrape_interval"]


# --- every query shows data, in two environments ----------------------------------------------

# Queries allowed to return nothing on the healthy data below, each with the reason. The stack is
# built so that every panel has something to show (a failed job, a job whose fetch fails, a
# stalled queue), so none is needed today; a panel added later that is empty by design says so here.
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {}

# Grafana's $__rate_interval: four scrape intervals (1s here) at least.
RATE_INTERVAL = "4s"
VARIABLE_QUERY = re.compile(r"^label_values\((?P<selector>[a-z_:]+(?:\{.*\})?), (?P<label>[a-z_]+)\)$")
CLUSTER = GENERATOR.CLUSTER_LABEL


def fill(expr: str, values: dict[str, str]) -> str:
    """Replace the template variables by their values, as Grafana does. A name runs to the end of
    the word, as in Grafana: $job never eats the start of $job_id."""
    expr = re.sub(r"\$(\w+)", lambda match: values[match.group(1)], expr)
    assert "$" not in expr, expr
    return expr


def one_of(values) -> str:
    """A selection of several values, as Grafana writes it into a regex matcher."""
    return "(" + "|".join(sorted(values)) + ")"


class Environment:
    """One SeekrFlow workspace with its own exporter: its simulated jobs (one with a queue that never
    moves), a job that failed (served from a fixed answer, so its failed files and the
    SeekrFlowJobFailed alert are there from the first scrape) and a job whose every fetch answers
    HTTP 500. Discovery is on, so the job-list panels have data; it adds no job, as the list holds
    only jobs already configured (the simulated ones and the failed one; faults are not listed).
    Data jobs are on too: the simulated jobs are grouped into two data jobs (the one holding the
    stalled queue stays file_processing), so the data-job panels have data."""

    def __init__(self, stack: contextlib.ExitStack, name: str, seed: int, now: float):
        world = SimulatedWorld(jobs=4, files_per_job=8, seed=seed, speed=5, stalled_jobs=[0], started_at=now)
        failed_world = SimulatedWorld(jobs=1, files_per_job=3, seed=seed + 100, fail_records=3, staggered=False,
                                      started_at=now - 600)
        [self.failed_job] = failed_world.job_ids()
        failed_body = failed_world.job_response(self.failed_job, now)
        assert failed_body["status"] == "failed"
        broken_job = f"ij-00000000-0000-4000-8000-{seed:012d}"
        self.name = name
        self.jobs = [*world.job_ids(), self.failed_job, broken_job]
        simulator = stack.enter_context(SimulatorServer(
            world, api_key=f"{name}-key", fixtures={self.failed_job: failed_body}, faults={broken_job: "http_500"},
            data_jobs=SimulatedDataJobs(world, 2, seed=seed)))
        exporter = stack.enter_context(ExporterProcess(
            {"api": {"base_url": simulator.url}, "jobs": self.jobs, "discovery": {"enabled": True},
             "data_jobs": {"enabled": True}}, f"{name}-key"))
        self.instance = urlsplit(exporter.url).netloc

    def target_group(self) -> dict:
        """The exporter as a target of the shared scrape job, labelled with its environment."""
        return {"targets": [self.instance], "labels": {CLUSTER: self.name}}


@pytest.fixture(scope="module")
def live():
    """Two environments (production and staging: two simulators, two exporters) -> one Prometheus
    (1 s scrapes, the repository's rules), all on 127.0.0.1. One scrape job scrapes both exporters
    and the target labels tell their environment, as several clusters in one Prometheus (or
    Thanos) look to the dashboards."""
    now = time.time()
    with contextlib.ExitStack() as stack:
        environments = [Environment(stack, "production", 5, now), Environment(stack, "staging", 6, now)]
        assert not set(environments[0].jobs) & set(environments[1].jobs)
        scrape = {"job_name": "seekrflow", "scrape_interval": "1s", "scrape_timeout": "1s",
                  "static_configs": [environment.target_group() for environment in environments]}
        prometheus = stack.enter_context(PrometheusServer(
            scrape_configs=[scrape], rule_files=sorted((REPO / "prometheus" / "rules").glob("*.rules.yml")),
            extra_args=["--enable-feature=extra-scrape-metrics"]))
        started = time.time()
        prometheus.wait_for('up{job="seekrflow"} == 1', lambda rows: len(rows) == len(environments))
        yield Live(prometheus, started, environments)


class Live:
    def __init__(self, prometheus, started: float, environments: list[Environment]):
        self.prometheus = prometheus
        self.started = started
        self.environments = environments
        self.jobs = [job for environment in environments for job in environment.jobs]
        self.failed_jobs = [environment.failed_job for environment in environments]
        self._results: dict[tuple[str, str, str], int] | None = None

    def label_values(self, variable: dict, values: dict[str, str]) -> list[str]:
        """What a query variable offers, with the variables before it filled in."""
        match = VARIABLE_QUERY.match(variable["query"]["query"])
        assert match, variable["query"]
        response = requests.get(f"{self.prometheus.url}/api/v1/label/{match['label']}/values",
                                params={"match[]": fill(match["selector"], values)}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def variables(self, dashboard: dict, chosen: dict[str, str] | None = None) -> dict[str, str]:
        """Every variable's value: as `chosen`, else "All" (the variable's allValue) where it has
        it, else every value it offers (the job detail's single job); a custom one at its default."""
        chosen = chosen or {}
        values = {"__rate_interval": RATE_INTERVAL}
        for variable in dashboard["templating"]["list"]:
            name = variable["name"]
            if variable["type"] == "custom":
                values[name] = chosen.get(name, variable["current"]["value"])
            elif variable["type"] == "query":
                offered = self.label_values(variable, values)
                values[name] = chosen.get(name) or variable.get("allValue") or one_of(offered)
        return values

    def rows(self, dashboard: dict, target: dict, chosen: dict[str, str] | None = None,
             at: float | None = None) -> list[dict]:
        expr = fill(target["expr"], self.variables(dashboard, chosen))
        end = time.time() if at is None else at
        if target.get("range", True) and not target.get("instant"):
            return self.prometheus.query_range(expr, self.started, end, step=1)
        return self.prometheus.query(expr, time=at)

    def collect(self, chosen: dict[str, str] | None = None, at: float | None = None) -> dict[tuple, list[dict]]:
        """Rows per (dashboard, panel title, query refId), every query of every dashboard once."""
        results = {}
        for name in NAMES:
            dashboard = load(name)
            for item in data_panels(dashboard):
                for target in item["targets"]:
                    results[(name, item["title"], target["refId"])] = self.rows(dashboard, target, chosen, at)
        return results

    def complete(self, chosen: dict[str, str] | None = None) -> dict[tuple[str, str, str], int]:
        """The rows of every query, once all that are not expected empty have data (or the
        timeout passed: the test then names the empty ones)."""
        def attempt():
            counts = {key: len(rows) for key, rows in self.collect(chosen).items()}
            return counts if {key for key, count in counts.items() if not count} <= set(EXPECTED_EMPTY) else None

        try:
            return wait_until(attempt, timeout=45, interval=0.5, what="every panel query to have data")
        except AssertionError:
            return {key: len(rows) for key, rows in self.collect(chosen).items()}

    def panel_results(self) -> dict[tuple[str, str, str], int]:
        if self._results is None:
            self._results = self.complete()
        return self._results


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_panel_query_returns_data(live, name):
    results = {key: count for key, count in live.panel_results().items() if key[0] == name}
    empty = sorted(key for key, count in results.items() if count == 0)
    assert empty == sorted(key for key in EXPECTED_EMPTY if key[0] == name), f"queries without data: {empty}"
    assert len(results) == sum(len(item["targets"]) for item in data_panels(load(name)))


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_variables_list_what_prometheus_scraped(live, name):
    dashboard = load(name)
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "query"}
    values = live.variables(dashboard)
    expected = {"cluster": sorted(environment.name for environment in live.environments), "job": ["seekrflow"],
                "instance": sorted(environment.instance for environment in live.environments),
                "job_id": sorted(live.jobs)}
    assert {variable: sorted(live.label_values(v, values)) for variable, v in variables.items()} == expected
    # The environment narrows what the variables after it offer.
    for environment in live.environments:
        narrowed = live.variables(dashboard, {"cluster": environment.name})
        assert live.label_values(variables["instance"], narrowed) == [environment.instance]
        assert sorted(live.label_values(variables["job_id"], narrowed)) == sorted(environment.jobs)


def test_scope_variables_default_to_all_and_the_limit_to_its_default():
    for name in NAMES:
        variables = {v["name"]: v for v in load(name)["templating"]["list"]}
        for scope in ("cluster", "job", "instance"):
            assert variables[scope]["includeAll"] and variables[scope]["multi"], (name, scope)
            assert variables[scope]["current"]["value"] == ["$__all"], (name, scope)
        # Series without the environment label (one environment) are kept under "All".
        assert variables["cluster"]["allValue"] == ".*"
        assert list(variables)[:4] == ["datasource", "cluster", "job", "instance"]
    for name in ("overview.json", "exporter-health.json"):
        limit = {v["name"]: v for v in load(name)["templating"]["list"]}["limit"]
        assert (limit["type"], limit["current"]["value"], limit["query"]) == ("custom", "20", "10,20,50,100")


@pytest.mark.slow
def test_discovery_adds_no_job_beyond_the_configured_ones(live):
    # The list holds the simulated jobs and the failed one, not the broken job (faults are not listed).
    rows = live.prometheus.wait_for('seekrflow_exporter_discovery_success{job="seekrflow"} == 1',
                                    lambda rows: len(rows) == len(live.environments))
    assert {row["metric"][CLUSTER] for row in rows} == {environment.name for environment in live.environments}
    assert live.prometheus.values('seekrflow_exporter_discovered_jobs{job="seekrflow"}', "instance") == {
        environment.instance: len(environment.jobs) - 1 for environment in live.environments}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_alert_annotation_shows_the_firing_alert(live, name):
    dashboard = load(name)
    [annotation] = prometheus_annotations(dashboard)
    for environment in live.environments:
        expr = fill(annotation["target"]["expr"], live.variables(dashboard, {"cluster": environment.name}))
        rows = live.prometheus.wait_for(expr, lambda rows: any(
            row["metric"]["alertname"] == "SeekrFlowJobFailed" for row in rows))
        fired = {(row["metric"]["alertname"], row["metric"].get("job_id")) for row in rows}
        assert ("SeekrFlowJobFailed", environment.failed_job) in fired
        assert not {job for _, job in fired} & set(live.jobs) - set(environment.jobs)


def answer(rows: list[dict]) -> dict[frozenset, object]:
    """A query's rows as {labels: value or values}, to compare two answers exactly."""
    return {frozenset(row["metric"].items()): row.get("value") or tuple(map(tuple, row["values"])) for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_a_panel_filtered_to_one_environment_shows_none_of_the_others_jobs(live, name):
    """With the `cluster` variable on one environment, every query answers exactly what it answers
    when the environment's own exporter and jobs are chosen instead (cluster on All), so nothing of
    the other environment is mixed in, not even inside a sum; and no row names the other
    environment, its exporter or its jobs."""
    with_data = {key for key, count in live.panel_results().items() if key[0] == name and count}

    def compare(environment: Environment) -> tuple[set, list]:
        """The queries with data for the environment, and what in them belongs elsewhere."""
        # A time every scrape and rule evaluation before it has been stored by: both answers read
        # the same samples.
        at = time.time() - 5
        others = [other for other in live.environments if other is not environment]
        foreign_jobs = {job for other in others for job in other.jobs}
        foreign_instances = {other.instance for other in others}
        by_cluster = live.collect({"cluster": environment.name}, at)
        by_members = live.collect({"instance": environment.instance, "job_id": one_of(environment.jobs)}, at)
        shown, problems = set(), []
        for key, rows in by_cluster.items():
            if key[0] != name:
                continue
            for row in rows:
                labels = row["metric"]
                if (labels.get("job_id") in foreign_jobs or labels.get("instance") in foreign_instances
                        or labels.get(CLUSTER, environment.name) != environment.name):
                    problems.append((key, "shows", labels))
            if answer(rows) != answer(by_members[key]):
                problems.append((key, "differs from the environment's own exporter and jobs"))
            if rows:
                shown.add(key)
        return shown, problems

    for environment in live.environments:
        outcome: dict = {}

        def attempt(environment=environment, outcome=outcome):
            outcome["shown"], outcome["problems"] = compare(environment)
            return outcome["problems"] or outcome["shown"] == with_data

        with contextlib.suppress(AssertionError):  # the assertions below say what is missing
            wait_until(attempt, timeout=30, interval=1, what=f"every panel to have data in {environment.name}")
        assert outcome["problems"] == [], environment.name
        # Not vacuous: the environment has data on every panel that has data at all.
        assert sorted(with_data - outcome["shown"]) == [], environment.name


# --- two exporters on the same jobs, live -----------------------------------------------------

@pytest.fixture(scope="module")
def replicas():
    """Two exporters watching the same finished jobs, seen by two Prometheus: `single` scrapes one
    exporter, `double` scrapes both (as two instances of one scrape job, as replicas run).

    The jobs ended an hour before the simulator's frozen clock, so both exporters report the same
    values at every scrape and the two Prometheus can be compared value for value.
    """
    now = time.time()
    world = SimulatedWorld(jobs=3, files_per_job=5, seed=9, fail_records=1, staggered=False, started_at=now - 3600)
    jobs = world.job_ids()
    rules = sorted((REPO / "prometheus" / "rules").glob("*.rules.yml"))
    with contextlib.ExitStack() as stack:
        simulator = stack.enter_context(SimulatorServer(world, api_key="replica-test-key", clock=lambda: now))
        config = {"api": {"base_url": simulator.url}, "jobs": jobs}
        first = stack.enter_context(ExporterProcess(config, "replica-test-key"))
        second = stack.enter_context(ExporterProcess(config, "replica-test-key"))
        single = stack.enter_context(PrometheusServer(scrape_configs=[scrape_config("seekrflow", first.url)],
                                                      rule_files=rules))
        double = stack.enter_context(PrometheusServer(
            scrape_configs=[scrape_config("seekrflow", first.url, second.url)], rule_files=rules))
        # Every job fetched, by every exporter each Prometheus scrapes, and the per-job rules evaluated.
        for prometheus, exporters in ((single, 1), (double, 2)):
            prometheus.wait_for("seekrflow_ingestion_job_scrape_success == 1",
                                lambda rows, n=len(jobs) * exporters: len(rows) == n)
            prometheus.wait_for("job_id:seekrflow_ingestion_job_files_finished:sum",
                                lambda rows, n=len(jobs): len(rows) == n)
        yield Replicas(world, now, single, double)


class Replicas:
    def __init__(self, world, now: float, single, double):
        self.world = world
        self.now = now
        self.single = single
        self.double = double
        self.jobs = world.job_ids()
        self.at = time.time()  # one evaluation time for both Prometheus

    def substitute(self, expr: str) -> str:
        # One environment without the environment label: "All" of the scope variables keeps it.
        return fill(expr, {"cluster": ".*", "job": ".+", "instance": ".+", "job_id": one_of(self.jobs),
                           "limit": GENERATOR.DEFAULT_LIMIT, "__rate_interval": RATE_INTERVAL})

    def answer(self, prometheus, expr: str) -> dict[frozenset, str]:
        """An instant query at the common time, as {labels: value}."""
        return {frozenset(row["metric"].items()): row["value"][1]
                for row in prometheus.query(self.substitute(expr), time=self.at)}


@pytest.mark.slow
def test_own_labels_of_the_duplicate_check_are_the_exporters(live):
    """OWN_LABELS names every per-job series with labels besides job_id, and exactly those labels,
    as Prometheus stored them from the exporter (less the target labels job, instance and cluster)."""
    def stored() -> dict[str, set[str]]:
        response = requests.get(f"{live.prometheus.url}/api/v1/series",
                                params={"match[]": '{__name__=~"seekrflow_ingestion_.+"}'}, timeout=10)
        assert response.status_code == 200, response.text
        labels: dict[str, set[str]] = {}
        for series in response.json()["data"]:
            labels.setdefault(series.pop("__name__"), set()).update(
                set(series) - {"job_id", "job", "instance", CLUSTER})
        return {name: own for name, own in labels.items() if own}

    with contextlib.suppress(AssertionError):  # the assertion below names the difference
        wait_until(lambda: stored() == OWN_LABELS, timeout=20, interval=0.5, what="every per-job series")
    assert stored() == OWN_LABELS


@pytest.mark.slow
def test_two_exporters_on_the_same_jobs_double_nothing_on_jobs_by_status(replicas):
    [target] = next(item for item in data_panels(load("overview.json")) if item["title"] == "Jobs by status")["targets"]
    statuses = collections.Counter(replicas.world.job_response(job, replicas.now)["status"]
                                   for job in replicas.jobs)
    expected = {status: statuses[status] for status in ("queued", "running", "completed", "failed")}
    assert sum(expected.values()) == 3
    for prometheus in (replicas.single, replicas.double):
        assert {dict(labels)["status"]: float(value) for labels, value in
                replicas.answer(prometheus, target["expr"]).items()} == expected
    # The duplicates are really there: summed raw, the second exporter doubles every job.
    assert {dict(labels)["status"]: float(value) for labels, value in replicas.answer(
        replicas.double, "sum by (status) (seekrflow_ingestion_job_status)").items()} == {
        status: 2 * count for status, count in expected.items()}


EMPTY_ON_FINISHED_JOBS = {
    "overview.json": {("Unfinished jobs against the usual run time", "A"), ("Queue positions per job", "A"),
                      ("Queue positions per job", "B")},
    "job-detail.json": {("Queue position", "A"), ("Queue position", "B"), ("File records", "B")},
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EMPTY_ON_FINISHED_JOBS))
def test_two_exporters_on_the_same_jobs_show_what_one_shows(replicas, name):
    """Every query over the exporter's per-job series answers the same with a second exporter."""
    compared = {}
    for item in data_panels(load(name)):
        for target in item["targets"]:
            if RAW_JOB_SERIES.search(target["expr"]):
                one, two = (replicas.answer(prometheus, target["expr"])
                            for prometheus in (replicas.single, replicas.double))
                assert two == one, (item["title"], target["refId"])
                compared[(item["title"], target["refId"])] = len(one)
    # The rest have rows to compare. Empty by design on these finished jobs: nothing is queued or
    # unfinished, so there is no queue position and no unfinished job to compare with the others.
    assert {key for key, rows in compared.items() if not rows} == EMPTY_ON_FINISHED_JOBS[name]
