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
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import jsonschema
import pytest

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
    for item in data_panels(load(name)):
        assert item["fieldConfig"]["defaults"]["unit"], item["title"]
        assert item["title"] and item["description"], item


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


@pytest.mark.parametrize("name", NAMES)
def test_job_queries_follow_the_multi_select_job_id_variable(name):
    dashboard = load(name)
    job_id = next(v for v in dashboard["templating"]["list"] if v["name"] == "job_id")
    assert job_id["multi"] is True
    assert job_id["refresh"] == 2  # refresh on time range change: new jobs appear
    for item in data_panels(dashboard):
        for target in item["targets"]:
            if re.search(r"seekrflow_ingestion_|\bjob_id[a-z_]*:", target["expr"]):
                assert 'job_id=~"$job_id"' in target["expr"], (item["title"], target["expr"])


def test_dashboards_link_to_each_other():
    uids = {load(name)["uid"] for name in NAMES}
    assert uids == {"seekrflow-overview", "seekrflow-job-detail", "seekrflow-exporter-health"}
    for name in NAMES:
        dashboard = load(name)
        assert "seekrflow" in dashboard["tags"]
        assert [(link["type"], link["tags"], link["includeVars"], link["keepTime"]) for link in dashboard["links"]] == [
            ("dashboards", ["seekrflow"], True, True)]
    # The overview's jobs table opens the job detail for the clicked job.
    jobs_table = next(item for item in data_panels(load("overview.json")) if item["title"] == "Jobs")
    links = [link for override in jobs_table["fieldConfig"]["overrides"] for prop in override["properties"]
             if prop["id"] == "links" for link in prop["value"]]
    assert [link["url"].split("?")[0] for link in links] == ["/d/seekrflow-job-detail/seekrflow-job-detail"]
    assert "var-job_id=${__value.raw}" in links[0]["url"]


@pytest.mark.parametrize("name", NAMES)
def test_firing_alerts_are_annotated(name):
    [annotation] = prometheus_annotations(load(name))
    assert annotation["enable"] is True
    assert annotation["target"]["expr"].startswith('ALERTS{alertstate="firing", alertname=~"SeekrFlow.+"')
