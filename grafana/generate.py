"""Generate the SeekrFlow Grafana dashboards in grafana/dashboards/.

    python grafana/generate.py           write the dashboards
    python grafana/generate.py --check   exit 1 if a committed dashboard differs from a fresh one
    python grafana/generate.py --selector 'job="seekrflow-exporter"' --output-dir /tmp/dashboards

The JSON files are generated: change this file, never the JSON (tests/test_dashboards.py fails
when they drift apart). Plain dictionaries: each dashboard is a list of panels built by the small
helpers below, and the helpers own what every panel must have (a datasource taken from the
`datasource` variable, a unit, a description, a unique ID, a place on the grid).

Like the rules, the dashboards are rendered from one selector and one environment label, read from
prometheus/thresholds.yml (`selector`, `cluster_label`) unless given on the command line: every
query of the exporter's series carries the selector, and the `cluster`, `job` and `instance`
variables (all by default) narrow it to some environments, scrape jobs and exporters. The
recording rules keep only the environment label of those three, so a panel on a recording rule
follows `cluster` and `job_id`. Panels that draw one series per job show the `$limit` largest.

Every panel and variable query is run by the tests against a real Prometheus that scraped the
exporter and the simulator with the repository's recording rules loaded; those rules
(prometheus/rules/seekrflow-recording.rules.yml) are used where they hold what a panel shows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
THRESHOLDS_FILE = Path(__file__).resolve().parent.parent / "prometheus" / "thresholds.yml"


def load_selectors(path: Path = THRESHOLDS_FILE) -> tuple[str, str]:
    """The rules' selector of the exporter's series and their environment label."""
    values = yaml.safe_load(path.read_text(encoding="utf-8"))
    return values["selector"], values["cluster_label"]


# Set from the command line by main(); the dashboards are built after.
SELECTOR, CLUSTER_LABEL = load_selectors()

# Grafana 11 dashboard model.
SCHEMA_VERSION = 39
TAG = "seekrflow"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# How many series a per-job panel draws at most, and the default.
LIMITS = ("10", "20", "50", "100")
DEFAULT_LIMIT = "20"

UID_OVERVIEW = "seekrflow-overview"
UID_JOB_DETAIL = "seekrflow-job-detail"
UID_EXPORTER_HEALTH = "seekrflow-exporter-health"

# Colours of the four documented statuses, the same on every panel.
STATUS_COLORS = {"queued": "yellow", "processing": "blue", "running": "blue", "completed": "green",
                 "failed": "red"}

# A data job's statuses: waiting for files, for a person, for its start, then its alignment's.
DATA_JOB_STATUS_COLORS = {"file_processing": "blue", "needs_review": "orange", "ready_to_start": "purple",
                          "pending": "yellow", "queued": "yellow", "running": "blue", "completed": "green",
                          "failed": "red", "cancelled": "text", "stopped": "text"}

# Title and URL path of each dashboard, in the order of the links at the top of every dashboard.
DASHBOARD_PATHS = {
    UID_OVERVIEW: ("Overview", "/d/" + UID_OVERVIEW + "/seekrflow-overview"),
    UID_JOB_DETAIL: ("Job detail", "/d/" + UID_JOB_DETAIL + "/seekrflow-job-detail"),
    UID_EXPORTER_HEALTH: ("Exporter health", "/d/" + UID_EXPORTER_HEALTH + "/seekrflow-exporter-health"),
}

# The data link from a table cell holding a job ID to the job detail of that one job.
JOB_DETAIL_LINK = (DASHBOARD_PATHS[UID_JOB_DETAIL][1] + "?${datasource:queryparam}"
                   "&var-job_id=${__value.raw}&${__url_time_range}")


# --- selectors -----------------------------------------------------------------------------

def scope() -> str:
    """The exporter targets the variables choose: environments, scrape jobs, instances."""
    return f'{SELECTOR}, {CLUSTER_LABEL}=~"$cluster", job=~"$job", instance=~"$instance"'


def jobs_filter() -> str:
    """The exporter's per-job series of the chosen jobs of the chosen targets."""
    return f'{scope()}, job_id=~"$job_id"'


def recorded_filter() -> str:
    """A per-job recording rule of the chosen jobs: those keep only the environment label."""
    return f'{CLUSTER_LABEL}=~"$cluster", job_id=~"$job_id"'


def limited(expr: str) -> str:
    """The `$limit` largest series of a per-job panel, so it stays readable with many jobs."""
    return f"topk($limit, {expr})"


# --- queries -------------------------------------------------------------------------------

def query(expr: str, legend: str = "", *, ref: str = "A", instant: bool = False, fmt: str = "time_series") -> dict:
    """A Prometheus query of a panel."""
    return {
        "datasource": DATASOURCE,
        "editorMode": "code",
        "expr": expr,
        "format": fmt,
        "instant": instant,
        "legendFormat": legend,
        "range": not instant,
        "refId": ref,
    }


def per_job(series: str, *labels: str) -> str:
    """One value per job (of an environment) and label set, however many exporters report the job.

    Two exporters watching the same job (replicas, or one exporter in two scrape jobs) each report
    it under their own instance, so summing raw series over jobs would count it twice. As in the
    recording rules (prometheus/rules/), `max` first keeps one value per job: the larger is the
    fresher, since a job's counts only grow between deletions. Aggregate over jobs only after this.
    """
    return f"max by ({', '.join((CLUSTER_LABEL, 'job_id', *labels))}) ({series})"


def buckets_by_le(histogram: str, selector: str, *labels: str) -> str:
    """The selected jobs' gauge-histogram buckets summed per `le`, one value per job first;
    `labels` are the histogram's own labels besides job_id and le."""
    return f"sum by (le) ({per_job(f'{histogram}_bucket{{{selector}}}', *labels, 'le')})"


def quantile_queries(histogram: str, selector: str, *labels: str) -> list[dict]:
    """p50, p90 and p99 over the selected jobs' gauge-histogram buckets, one query each."""
    buckets = buckets_by_le(histogram, selector, *labels)
    return [query(f"histogram_quantile({q}, {buckets})", f"p{round(float(q) * 100)}", ref=ref)
            for q, ref in (("0.5", "A"), ("0.9", "B"), ("0.99", "C"))]


def job_files(status: str = "") -> str:
    """The selected jobs' file-record counts: every status, or the one given."""
    selector = f'{jobs_filter()}, status="{status}"' if status else jobs_filter()
    return f"seekrflow_ingestion_job_files{{{selector}}}"


def queue_position_queries(selector: str, *, limit: bool = True) -> list[dict]:
    """Best and worst queue position per job. Over duplicate exporters, the best any of them saw
    and the worst: positions fall as the queue drains and rise as files join, so neither the max
    nor the min of both alone is always the fresher value. The jobs furthest back in the queue
    are drawn when there are more than `$limit` (unless `limit` is off: one job)."""
    by = f"{CLUSTER_LABEL}, job_id"
    pick = limited if limit else (lambda expr: expr)
    return [query(pick(f"min by ({by}) (seekrflow_ingestion_job_queue_position_min{{{selector}}})"),
                  "{{job_id}} best"),
            query(pick(f"max by ({by}) (seekrflow_ingestion_job_queue_position_max{{{selector}}})"),
                  "{{job_id}} worst", ref="B")]


def table_queries(*exprs: str) -> list[dict]:
    """Instant queries in table format, A, B, C...: rows of label values joined by `merge`."""
    return [query(expr, ref=chr(ord("A") + i), instant=True, fmt="table") for i, expr in enumerate(exprs)]


# --- field configuration -------------------------------------------------------------------

def thresholds(*steps: tuple[float, str], base: str = "green") -> dict:
    return {"mode": "absolute", "steps": [{"color": base, "value": None}]
            + [{"color": color, "value": value} for value, color in steps]}


def by_name(name: str, *properties: tuple[str, object]) -> dict:
    return {"matcher": {"id": "byName", "options": name},
            "properties": [{"id": key, "value": value} for key, value in properties]}


def status_color_overrides(colors: dict[str, str] = STATUS_COLORS) -> list[dict]:
    return [by_name(status, ("color", {"mode": "fixed", "fixedColor": color}))
            for status, color in colors.items()]


def value_text(mapping: dict[str, tuple[str, str]]) -> list[dict]:
    """Value mappings, e.g. {"1": ("up", "green")}."""
    return [{"type": "value", "options": {value: {"text": text, "color": color, "index": i}
                                         for i, (value, (text, color)) in enumerate(mapping.items())}}]


def field_config(unit: str, *, custom: dict | None = None, steps: dict | None = None, min_: float | None = None,
                 max_: float | None = None, mappings: list | None = None, overrides: list | None = None,
                 color: str = "palette-classic", decimals: int | None = None) -> dict:
    defaults: dict = {"color": {"mode": color}, "mappings": mappings or [],
                      "thresholds": steps or thresholds(), "unit": unit}
    if custom is not None:
        defaults["custom"] = custom
    if min_ is not None:
        defaults["min"] = min_
    if max_ is not None:
        defaults["max"] = max_
    if decimals is not None:
        defaults["decimals"] = decimals
    return {"defaults": defaults, "overrides": overrides or []}


def line_style(*, stack: bool = False, fill: int = 10, threshold_line: bool = False, bars: bool = False) -> dict:
    return {
        "axisSoftMin": 0,
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 80 if bars else fill,
        "lineInterpolation": "stepAfter" if stack else "linear",
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stack else "none"},
        "thresholdsStyle": {"mode": "dashed" if threshold_line else "off"},
    }


LEGEND_TABLE = {"calcs": ["lastNotNull", "max"], "displayMode": "table", "placement": "right", "showLegend": True}
LEGEND_LIST = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
TOOLTIP = {"mode": "multi", "sort": "desc"}


# --- panels --------------------------------------------------------------------------------

def panel(kind: str, title: str, description: str, targets: list[dict], fields: dict, options: dict,
          *, size: tuple[int, int], transformations: list | None = None) -> dict:
    result = {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": fields,
        "options": options,
        "targets": targets,
        "title": title,
        "type": kind,
        "gridPos": {"w": size[0], "h": size[1]},
    }
    if transformations:
        result["transformations"] = transformations
    return result


def timeseries(title, description, targets, unit, *, size=(12, 8), stack=False, steps=None, threshold_line=False,
               legend=LEGEND_TABLE, overrides=None, min_=None, max_=None) -> dict:
    return panel("timeseries", title, description, targets,
                 field_config(unit, custom=line_style(stack=stack, threshold_line=threshold_line), steps=steps,
                              overrides=overrides, min_=min_, max_=max_),
                 {"legend": legend, "tooltip": TOOLTIP}, size=size)


def stat(title, description, targets, unit, *, size=(4, 4), steps=None, mappings=None, overrides=None,
         text_mode="auto", color_mode="value", graph=False, decimals=None) -> dict:
    return panel("stat", title, description, targets,
                 field_config(unit, steps=steps, mappings=mappings, overrides=overrides, color="thresholds",
                              decimals=decimals),
                 {"colorMode": color_mode, "graphMode": "area" if graph else "none", "justifyMode": "auto",
                  "orientation": "auto", "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                  "showPercentChange": False, "textMode": text_mode, "wideLayout": True},
                 size=size)


def bargauge(title, description, targets, unit, *, size=(12, 8), steps=None, min_=None, max_=None,
             color="thresholds", overrides=None) -> dict:
    return panel("bargauge", title, description, targets,
                 field_config(unit, steps=steps, min_=min_, max_=max_, color=color, overrides=overrides),
                 {"displayMode": "gradient", "maxVizHeight": 300, "minVizHeight": 16, "minVizWidth": 8,
                  "namePlacement": "auto", "orientation": "horizontal",
                  "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                  "showUnfilled": True, "sizing": "auto", "valueMode": "color"},
                 size=size)


def table(title, description, targets, unit, *, size=(24, 10), columns: dict[str, str], units=None,
          overrides=None, sort_by: str | None = None, hidden: tuple[str, ...] = ()) -> dict:
    """A table of merged instant queries. `columns` maps a field to its header, in display order.
    Hidden: the time, the value of the first query (an _info series or a state, always 1) and the
    fields named in `hidden`."""
    organize = {
        "excludeByName": {field: True for field in ("Time", "Value #A", *hidden)},
        "indexByName": {field: i for i, field in enumerate(columns)},
        "renameByName": columns,
    }
    unit_overrides = [by_name(field, ("unit", field_unit)) for field, field_unit in (units or {}).items()]
    options = {"cellHeight": "sm", "footer": {"countRows": False, "fields": "", "reducer": ["sum"], "show": False},
               "showHeader": True}
    if sort_by:
        options["sortBy"] = [{"desc": False, "displayName": columns[sort_by]}]
    return panel("table", title, description, targets,
                 field_config(unit, custom={"align": "auto", "cellOptions": {"type": "auto"}, "inspect": False},
                              overrides=unit_overrides + (overrides or []), color="thresholds"),
                 options, size=size,
                 transformations=[{"id": "merge", "options": {}}, {"id": "organize", "options": organize}])


def state_timeline(title, description, targets, unit, *, size=(24, 8), steps=None, mappings=None) -> dict:
    return panel("state-timeline", title, description, targets,
                 field_config(unit, custom={"fillOpacity": 70, "lineWidth": 0, "spanNulls": False},
                              steps=steps, mappings=mappings, color="thresholds"),
                 {"alignValue": "left", "legend": LEGEND_LIST, "mergeValues": True, "rowHeight": 0.9,
                  "showValue": "never", "tooltip": {"mode": "single", "sort": "none"}},
                 size=size)


def row(title: str) -> dict:
    return {"collapsed": False, "panels": [], "title": title, "type": "row", "gridPos": {"w": 24, "h": 1}}


def lay_out(panels: list[dict]) -> list[dict]:
    """Number the panels 1.. and place them left to right, wrapping at Grafana's 24 columns."""
    x = y = row_height = 0
    for number, item in enumerate(panels, start=1):
        w, h = item["gridPos"]["w"], item["gridPos"]["h"]
        if x + w > 24:
            x, y, row_height = 0, y + row_height, 0
        item["gridPos"] = {"h": h, "w": w, "x": x, "y": y}
        item["id"] = number
        x += w
        row_height = max(row_height, h)
        if w == 24:
            x, y, row_height = 0, y + h, 0
    return panels


# --- variables, annotations, links ---------------------------------------------------------

def datasource_variable() -> dict:
    return {"hide": 0, "includeAll": False, "label": "Data source", "multi": False, "name": "datasource",
            "options": [], "query": "prometheus", "refresh": 1, "regex": "", "type": "datasource"}


def label_variable(name: str, label: str, metric: str, *, description: str, include_all: bool = True,
                   multi: bool = True, source_label: str = "", all_value: str = ".+") -> dict:
    """A variable of the values of `source_label` (default: its own name) in `metric`."""
    result = {
        "datasource": DATASOURCE,
        "description": description,
        "hide": 0,
        "includeAll": include_all,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": {"qryType": 1, "query": f"label_values({metric}, {source_label or name})",
                  "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }
    if include_all:
        # A regex of every value Prometheus has, rather than a list that grows with the jobs.
        result["allValue"] = all_value
        result["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    return result


def scope_variables() -> list[dict]:
    """Environment, scrape job and exporter instance, each narrowing the next; all by default."""
    return [
        # ".*": series without the label (a single environment) are kept under "All".
        label_variable("cluster", "Environment", f"up{{{SELECTOR}}}", source_label=CLUSTER_LABEL,
                       all_value=".*",
                       description=f"Environments (the {CLUSTER_LABEL} label) that run a seekrflow exporter."),
        label_variable("job", "Scrape job", f'up{{{SELECTOR}, {CLUSTER_LABEL}=~"$cluster"}}',
                       description="Prometheus scrape jobs of the chosen environments that scrape a seekrflow "
                       "exporter."),
        label_variable("instance", "Exporter",
                       f'up{{{SELECTOR}, {CLUSTER_LABEL}=~"$cluster", job=~"$job"}}',
                       description="The seekrflow exporters (targets) of the chosen scrape jobs."),
    ]


def limit_variable() -> dict:
    return {
        "current": {"selected": True, "text": DEFAULT_LIMIT, "value": DEFAULT_LIMIT},
        "description": "How many jobs a panel that draws one series per job shows at most (the largest).",
        "hide": 0,
        "includeAll": False,
        "label": "Jobs per panel",
        "multi": False,
        "name": "limit",
        "options": [{"selected": value == DEFAULT_LIMIT, "text": value, "value": value} for value in LIMITS],
        "query": ",".join(LIMITS),
        "type": "custom",
    }


def job_id_variable() -> dict:
    # From scrape_success: the one series every configured job has, even one whose fetch fails.
    return label_variable("job_id", "Ingestion jobs", f"seekrflow_ingestion_job_scrape_success{{{scope()}}}",
                          description="SeekrFlow ingestion jobs of the chosen exporters.")


def single_job_id_variable() -> dict:
    """The job detail is about one job: one value, no "All"."""
    return label_variable("job_id", "Ingestion job", f"seekrflow_ingestion_job_scrape_success{{{scope()}}}",
                          include_all=False, multi=False,
                          description="The SeekrFlow ingestion job to show, of the chosen exporters.")


def annotations(alert_selector: str) -> dict:
    return {"list": [
        {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True, "hide": True,
         "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
         "target": {"limit": 100, "matchAny": False, "tags": [], "type": "dashboard"}, "type": "dashboard"},
        # Prometheus keeps one ALERTS series per alert while it is pending or firing.
        {"datasource": DATASOURCE, "enable": True, "hide": False, "iconColor": "red", "name": "Firing alerts",
         "target": {"expr": f'ALERTS{{alertstate="firing", alertname=~"SeekrFlow.+"{alert_selector}}}',
                    "interval": "1m", "refId": "Anno"},
         "tagKeys": "severity,job_id", "textFormat": "{{job_id}}", "titleFormat": "{{alertname}}",
         "useValueForTime": False},
    ]}


def dashboard_links(uid: str) -> list[dict]:
    """Links to the other two dashboards, keeping the time range. Links to the multi-job
    dashboards carry the variables (the job or jobs selected here). The link to the job detail
    carries only the data source: a selection of several jobs (or All) has no one job to open,
    so the job detail opens on its own first job; a job is opened by clicking its ID in a table."""
    links = []
    for target, (title, path) in DASHBOARD_PATHS.items():
        if target == uid:
            continue
        one_job = target == UID_JOB_DETAIL
        links.append({"asDropdown": False, "icon": "dashboard", "includeVars": not one_job, "keepTime": True,
                      "tags": [], "targetBlank": False, "title": title, "tooltip": "", "type": "link",
                      "url": path + ("?${datasource:queryparam}" if one_job else "")})
    return links


def dashboard(uid: str, title: str, description: str, panels: list[dict], variables: list[dict],
              alert_selector: str) -> dict:
    return {
        "annotations": annotations(alert_selector),
        "description": description,
        "editable": False,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": dashboard_links(uid),
        "panels": lay_out(panels),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [TAG],
        "templating": {"list": variables},
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


# --- the dashboards ------------------------------------------------------------------------

def overview() -> dict:
    f, r, c = jobs_filter(), recorded_filter(), CLUSTER_LABEL
    unfinished = f'(seekrflow_ingestion_job_status{{{f}, status=~"queued|running"}} == 1)'
    finished_all = f'(seekrflow_ingestion_job_status{{{scope()}, status=~"completed|failed"}} == 1)'
    job_status = f"seekrflow_ingestion_job_status{{{f}}}"
    panels = [
        row("Jobs"),
        table("Jobs", "Each selected ingestion job: status, age or run time, file records and failure ratio. "
              "Click a job ID for its detail.",
              table_queries(
                  f"max by ({c}, job_id, status) (seekrflow_ingestion_job_status{{{f}}} == 1)",
                  per_job(f"seekrflow_ingestion_job_duration_seconds{{{f}}}"),
                  f"sum by ({c}, job_id) ({per_job(job_files(), 'status')})",
                  f"max by ({c}, job_id) (job_id:seekrflow_ingestion_job_files_failed_per_finished:ratio{{{r}}})",
              ), "none", size=(12, 9),
              columns={"job_id": "Job", c: "Environment", "status": "Status", "Value #B": "Duration",
                       "Value #C": "Files", "Value #D": "Failed"},
              units={"Value #B": "s", "Value #C": "short", "Value #D": "percentunit"},
              overrides=[by_name("job_id", ("links", [{"title": "Job detail", "url": JOB_DETAIL_LINK}]))],
              sort_by="job_id"),
        bargauge("Jobs by status", "How many of the selected ingestion jobs are queued, running, completed or "
                 "failed right now.",
                 [query(f"sum by (status) ({per_job(job_status, 'status')})", "{{status}}", instant=True)],
                 "short", size=(6, 9), color="fixed", overrides=status_color_overrides(), min_=0),
        stat("Files finished per minute", "File records that completed or failed per minute over the last "
             "5 minutes, over the selected jobs (recording rule, from the change of the finished count).",
             [query(f"sum(job_id:seekrflow_ingestion_job_files_finished:per_minute5m{{{r}}})")],
             "recpm", size=(6, 3), graph=True, decimals=1),
        stat("Failure ratio", "Failed file records out of the finished ones, over the selected jobs.",
             [query(f"sum({per_job(job_files('failed'))}) / "
                    f"(sum(job_id:seekrflow_ingestion_job_files_finished:sum{{{r}}}) > 0)")],
             "percentunit", size=(6, 3), steps=thresholds((0.05, "orange"), (0.2, "red")), decimals=1),
        stat("Files waiting", "File records queued now, over the selected jobs.",
             [query(f"sum({per_job(job_files('queued'))})")], "short", size=(6, 3),
             graph=True),
        stat("Files processing", "File records being converted now, over the selected jobs.",
             [query(f"sum({per_job(job_files('processing'))})")], "short", size=(6, 3),
             graph=True),
        timeseries("File records by status", "Non-deleted file records of the selected jobs per status, "
                   "stacked: the queue draining into completed and failed.",
                   [query(f"sum by (status) ({per_job(job_files(), 'status')})", "{{status}}")],
                   "short", stack=True, overrides=status_color_overrides(), legend=LEGEND_LIST),
        timeseries("Completion throughput", "Files finished (completed or failed) per minute, per job, over "
                   "the last 5 minutes (recording rule).",
                   [query(limited(f"job_id:seekrflow_ingestion_job_files_finished:per_minute5m{{{r}}}"),
                          "{{job_id}}")],
                   "recpm", stack=True),
        timeseries("Failure ratio per job", "Failed file records out of the finished ones, per job "
                   "(recording rule). Absent until a job has a finished file.",
                   [query(limited(f"job_id:seekrflow_ingestion_job_files_failed_per_finished:ratio{{{r}}}"),
                          "{{job_id}}")],
                   "percentunit", steps=thresholds((0.05, "orange"), (0.2, "red")), threshold_line=True, min_=0,
                   max_=1),
        bargauge("Unfinished jobs against the usual run time",
                 "Age of each queued or running job as a share of the median run time of the finished jobs "
                 "of its environment: above 100% the job runs longer than usual, above 200% it is worth a "
                 "look. Empty while no job has finished or none is unfinished. The $limit largest.",
                 # Matching on the environment against its one-series median leaves nothing, rather
                 # than NaN, while no job of the environment has finished.
                 [query(limited(f"max by ({c}, job_id) (seekrflow_ingestion_job_duration_seconds{{{f}}} "
                                f"and on ({c}, job_id) {unfinished}) / on ({c}) group_left () "
                                f"quantile by ({c}) (0.5, max by ({c}, job_id) ("
                                f"seekrflow_ingestion_job_duration_seconds{{{scope()}}} and on ({c}, job_id) "
                                f"{finished_all}))"),
                        "{{job_id}}", instant=True)],
                 "percentunit", steps=thresholds((1, "orange"), (2, "red")), min_=0, max_=3),
        row("Queue"),
        timeseries("Queued files per job", "File records waiting in each job's queue.",
                   [query(limited(per_job(job_files("queued"))), "{{job_id}}")],
                   "short"),
        timeseries("Queue positions per job", "The best (lowest) and worst (highest) queue position of each "
                   "job's queued files. A best position that stays put while files wait means a stalled queue.",
                   queue_position_queries(f),
                   "none"),
        row("Durations"),
        timeseries("Processing time", "p50, p90 and p99 of the processing time of finished files over the "
                   "selected jobs (from the gauge histogram of each job).",
                   quantile_queries("seekrflow_ingestion_job_file_processing_duration_seconds", f, "status"),
                   "s", legend=LEGEND_LIST),
        timeseries("Queue wait", "p50, p90 and p99 of the time files waited in the queue before a worker "
                   "picked them, over the selected jobs.",
                   quantile_queries("seekrflow_ingestion_job_file_queue_wait_seconds", f),
                   "s", legend=LEGEND_LIST),
        timeseries("p90 processing time per job", "90th percentile of each job's processing time of "
                   "finished files (recording rule).",
                   [query(limited("job_id_quantile:seekrflow_ingestion_job_file_processing_duration_seconds"
                                  f':histogram_quantile{{{r}, quantile="0.9"}}'), "{{job_id}}")],
                   "s"),
        timeseries("p90 queue wait per job", "90th percentile of each job's queue wait (recording rule).",
                   [query(limited("job_id_quantile:seekrflow_ingestion_job_file_queue_wait_seconds"
                                  f':histogram_quantile{{{r}, quantile="0.9"}}'), "{{job_id}}")],
                   "s"),
        *data_job_panels(),
    ]
    return dashboard(UID_OVERVIEW, "SeekrFlow / Overview",
                     "SeekrFlow file-conversion (ingestion) jobs: status, progress, failures, queue and durations.",
                     panels, [datasource_variable(), *scope_variables(), job_id_variable(), limit_variable()],
                     f', {CLUSTER_LABEL}=~"$cluster", job_id=~"$job_id"')


def data_job_panels() -> list[dict]:
    """The data jobs (with data_jobs on in the exporter): a table and their statuses. A data job
    groups ingestion jobs; its status tells whether it waits for files, for a person
    (needs_review), for its start, or mirrors its alignment job."""
    s, c = scope(), CLUSTER_LABEL
    status = f"seekrflow_data_job_status{{{s}}}"
    return [
        row("Data jobs"),
        table("Data jobs", "Each data job the exporter watches (data_jobs in its configuration): status, name, "
              "type, time since its last change, and its files with the failed ones. A data job in needs_review "
              "waits for a person.",
              table_queries(
                  f"max by ({c}, data_job_id, status) ({status} == 1)",
                  f"max by ({c}, data_job_id, name, job_type) (seekrflow_data_job_info{{{s}}})",
                  f"time() - max by ({c}, data_job_id) (seekrflow_data_job_updated_timestamp_seconds{{{s}}})",
                  f"sum by ({c}, data_job_id) (max by ({c}, data_job_id, status) (seekrflow_data_job_files{{{s}}}))",
                  f'max by ({c}, data_job_id) (seekrflow_data_job_files{{{s}, status="failed"}})',
              ), "none", size=(18, 8),
              columns={"data_job_id": "Data job", c: "Environment", "name": "Name", "job_type": "Type",
                       "status": "Status", "Value #C": "Unchanged for", "Value #D": "Files", "Value #E": "Failed"},
              units={"Value #C": "s", "Value #D": "short", "Value #E": "short"},
              hidden=("Value #B",), sort_by="data_job_id"),
        bargauge("Data jobs by status", "How many data jobs are in each status: file_processing, needs_review, "
                 "ready_to_start, then their alignment's pending, queued, running and the end states.",
                 [query(f"sum by (status) (max by ({c}, data_job_id, status) ({status}))", "{{status}}",
                        instant=True)],
                 "short", size=(6, 8), color="fixed", overrides=status_color_overrides(DATA_JOB_STATUS_COLORS),
                 min_=0),
    ]


def job_detail() -> dict:
    f, r, c = jobs_filter(), recorded_filter(), CLUSTER_LABEL
    record_columns = {"job_id": "Job", c: "Environment", "filename": "File", "status": "Status", "Value #B": "Queue position",
                      "Value #C": "Queue wait", "Value #D": "Processing time", "worker_id": "Worker",
                      "method": "Method", "error_message": "Error", "suggested_fix": "Suggested fix",
                      "record_id": "Record"}
    panels = [
        stat("Status", "The job's current status.",
             [query(f"max by ({c}, job_id, status) (seekrflow_ingestion_job_status{{{f}}} == 1)", "{{status}}",
                    instant=True)],
             "none", text_mode="name", color_mode="background", steps=thresholds(base="text"),
             overrides=status_color_overrides()),
        stat("Duration", "Run time of a finished job (its last file end minus its creation); age of an "
             "unfinished one.",
             [query(per_job(f"seekrflow_ingestion_job_duration_seconds{{{f}}}"), "{{job_id}}")], "s"),
        stat("Files", "Non-deleted file records of the job.",
             [query(f"sum by ({c}, job_id) ({per_job(job_files(), 'status')})", "{{job_id}}")], "short"),
        stat("Failed files", "File records that failed.",
             [query(per_job(job_files("failed")), "{{job_id}}")],
             "short", steps=thresholds((1, "red"))),
        stat("Deleted files", "Soft-deleted file records; they count nowhere else.",
             [query(per_job(f"seekrflow_ingestion_job_files_deleted{{{f}}}"), "{{job_id}}")], "short"),
        stat("Output files", "Converted files the job has produced.",
             [query(per_job(f"seekrflow_ingestion_job_output_files{{{f}}}"), "{{job_id}}")], "short"),
        timeseries("File records by status", "The job's non-deleted file records per status, stacked.",
                   [query(f"sum by (status) ({per_job(job_files(), 'status')})", "{{status}}")],
                   "short", stack=True, overrides=status_color_overrides(), legend=LEGEND_LIST),
        timeseries("Queue position", "Best (lowest) and worst (highest) queue position of the job's queued "
                   "files. Absent once nothing is queued.",
                   queue_position_queries(f, limit=False),
                   "none", legend=LEGEND_LIST),
        table("File records", "Every file record the exporter reports for the job (up to its per-file "
              "limit): status, queue position, wait, processing time, worker, and the error and suggested "
              "fix of failed files, joined from the _info series.",
              table_queries(
                  f"max by ({c}, job_id, record_id, filename, status, method, worker_id) "
                  f"(seekrflow_ingestion_file_info{{{f}}})",
                  f"max by ({c}, job_id, record_id) (seekrflow_ingestion_file_queue_position{{{f}}})",
                  f"max by ({c}, job_id, record_id) (seekrflow_ingestion_file_queue_wait_seconds{{{f}}})",
                  f"max by ({c}, job_id, record_id) (seekrflow_ingestion_file_processing_duration_seconds{{{f}}})",
                  f"max by ({c}, job_id, record_id, error_message, suggested_fix) "
                  f"(seekrflow_ingestion_file_error_info{{{f}}})",
              ), "none", size=(24, 12), columns=record_columns,
              units={"Value #B": "none", "Value #C": "s", "Value #D": "s"},
              hidden=("Value #E",),
              sort_by="filename"),
        table("Failed files and suggested fixes", "Failed file records with the API's error message and suggested fix.",
              table_queries(
                  f"max by ({c}, job_id, record_id, filename, worker_id, error_message, suggested_fix) ("
                  f"seekrflow_ingestion_file_error_info{{{f}}} * on ({c}, job, instance, job_id, record_id) "
                  f"group_left (filename, worker_id) seekrflow_ingestion_file_info{{{f}}})",
              ), "none", size=(24, 7),
              columns={"job_id": "Job", c: "Environment", "filename": "File", "worker_id": "Worker", "error_message": "Error",
                       "suggested_fix": "Suggested fix", "record_id": "Record"},
              sort_by="filename"),
        bargauge("Processing time distribution", "Finished files per processing-time bucket (the job's "
                 "gauge histogram, completed and failed together).",
                 [query(buckets_by_le("seekrflow_ingestion_job_file_processing_duration_seconds", f, "status"),
                        "{{le}}", instant=True, fmt="heatmap")],
                 "short", color="continuous-BlPu", min_=0),
        bargauge("Queue wait distribution", "Started files per queue-wait bucket (the job's gauge histogram).",
                 [query(buckets_by_le("seekrflow_ingestion_job_file_queue_wait_seconds", f),
                        "{{le}}", instant=True, fmt="heatmap")],
                 "short", color="continuous-BlPu", min_=0),
        timeseries("Processing time quantiles", "p50, p90 and p99 of the job's processing time of finished "
                   "files (recording rule).",
                   [query("job_id_quantile:seekrflow_ingestion_job_file_processing_duration_seconds"
                          f":histogram_quantile{{{r}}}", "{{job_id}} p{{quantile}}")],
                   "s"),
        timeseries("Queue wait quantiles", "p50, p90 and p99 of the job's queue wait (recording rule).",
                   [query("job_id_quantile:seekrflow_ingestion_job_file_queue_wait_seconds"
                          f":histogram_quantile{{{r}}}", "{{job_id}} p{{quantile}}")],
                   "s"),
    ]
    return dashboard(UID_JOB_DETAIL, "SeekrFlow / Job detail",
                     "One SeekrFlow ingestion job: its file records, failures with suggested fixes, and its "
                     "duration distributions.",
                     panels, [datasource_variable(), *scope_variables(), single_job_id_variable()],
                     f', {CLUSTER_LABEL}=~"$cluster", job_id=~"$job_id"')


def exporter_health() -> dict:
    f, s, c = jobs_filter(), scope(), CLUSTER_LABEL
    up_text = value_text({"0": ("down", "red"), "1": ("up", "green")})
    panels = [
        stat("SeekrFlow API", "1 when the API answered the last scrape with the key accepted; 0 when it was "
             "unreachable or refused the key for every request.",
             [query(f"seekrflow_up{{{s}}}", "{{instance}}")], "none", size=(5, 4),
             steps=thresholds((1, "green"), base="red"), mappings=up_text, color_mode="background"),
        stat("Exporter targets", "Prometheus's own `up` for the exporter targets.",
             [query(f"up{{{s}}}", "{{instance}}")], "none", size=(5, 4),
             steps=thresholds((1, "green"), base="red"), mappings=up_text, color_mode="background"),
        # Per exporter, like the rest of this dashboard: two exporters watching the same jobs each
        # count them, and a job one of them fails to fetch is that exporter's problem.
        stat("Jobs fetched", "Selected jobs whose data is fresh in each exporter's last scrape.",
             [query(f"sum by ({c}, instance) (seekrflow_ingestion_job_scrape_success{{{f}}})", "{{instance}}")],
             "short", size=(5, 4)),
        stat("Jobs failing", "Selected jobs whose last fetch by each exporter failed (see the errors below).",
             [query(f"sum by ({c}, instance) (seekrflow_ingestion_job_scrape_success{{{f}}} == bool 0)",
                    "{{instance}}")],
             "short", size=(5, 4), steps=thresholds((1, "red"))),
        stat("Version", "Exporter version and its Python.",
             [query(f"max by (version, python_version) (seekrflow_exporter_build_info{{{s}}})",
                    "{{version}} (Python {{python_version}})", instant=True)],
             "none", size=(4, 4), text_mode="name", color_mode="none"),
        stat("Config reload", "Whether the exporter accepted its configuration file at the last reload (SIGHUP "
             "or POST /-/reload). \"refused\": the file has a mistake, the exporter runs the configuration "
             "it had and would not start with the file (alert SeekrFlowExporterConfigReloadFailed).",
             [query(f"seekrflow_exporter_config_last_reload_successful{{{s}}}", "{{instance}}")], "none",
             size=(8, 4), steps=thresholds((1, "green"), base="red"),
             mappings=value_text({"0": ("refused", "red"), "1": ("ok", "green")}), color_mode="background"),
        # Exporters without discovery.enabled have no discovery series: these two stay empty there.
        stat("Job list", "Whether the exporter's latest read of the job list succeeded (alert "
             "SeekrFlowJobDiscoveryFailing). Only exporters with discovery.enabled read it; empty otherwise.",
             [query(f"seekrflow_exporter_discovery_success{{{s}}}", "{{instance}}")], "none",
             size=(8, 4), steps=thresholds((1, "green"), base="red"),
             mappings=value_text({"0": ("failing", "red"), "1": ("ok", "green")}), color_mode="background"),
        stat("Discovered jobs", "Jobs each exporter took from the job list at its last good read: every "
             "unfinished one and the finished ones younger than discovery.max_age. Only with "
             "discovery.enabled; empty otherwise.",
             [query(f"seekrflow_exporter_discovered_jobs{{{s}}}", "{{instance}}")], "short", size=(8, 4)),
        # bottomk: the failing jobs (0) come first when there are more than $limit.
        state_timeline("Job fetches", "Whether each selected job was fetched in each scrape; failing jobs "
                       "first, at most $limit.",
                       [query(f"bottomk($limit, seekrflow_ingestion_job_scrape_success{{{f}}})", "{{job_id}}")],
                       "none", steps=thresholds((1, "green"), base="red"),
                       mappings=value_text({"0": ("failing", "red"), "1": ("ok", "green")})),
        table("Fetch errors", "Jobs whose latest fetch failed, with the reason (timeout, connection_error, "
              "http_<status>, invalid_json, invalid_schema). Empty when every fetch works. Click a job ID "
              "for its detail.",
              table_queries(f"max by ({c}, job_id, reason) (seekrflow_ingestion_job_scrape_error_info{{{f}}})"),
              "none", size=(12, 8), columns={"job_id": "Job", "reason": "Reason"}, sort_by="job_id",
              overrides=[by_name("job_id", ("links", [{"title": "Job detail", "url": JOB_DETAIL_LINK}]))]),
        timeseries("Data age", "Time since each job was last fetched successfully. Finished jobs are fetched "
                   "rarely, so their age grows up to the exporter's refresh interval.",
                   [query(limited(f"time() - seekrflow_ingestion_job_last_success_timestamp_seconds{{{f}}}"),
                          "{{job_id}}")],
                   "s"),
        timeseries("API requests by code", "Requests from the exporter to the SeekrFlow API per second, by "
                   "HTTP status or failure kind.",
                   [query(f"sum by (code) (rate(seekrflow_exporter_api_requests_total{{{s}}}[$__rate_interval]))",
                          "{{code}}")],
                   "reqps", stack=True),
        timeseries("API error ratio", "Share of API requests that did not answer 2xx.",
                   [query(f'sum(rate(seekrflow_exporter_api_requests_total{{{s}, code!~"2.."}}[$__rate_interval])) '
                          f"/ sum(rate(seekrflow_exporter_api_requests_total{{{s}}}[$__rate_interval]))",
                          "errors")],
                   "percentunit", steps=thresholds((0.05, "orange"), (0.5, "red")), threshold_line=True, min_=0,
                   max_=1, legend=LEGEND_LIST),
        timeseries("Scrape duration against the timeout", "How long the exporter took to fetch the jobs, "
                   "the fetch budget it allowed itself (Prometheus's scrape timeout minus 0.5s, at most "
                   "scrape.timeout), the whole scrape as Prometheus measured it, and Prometheus's scrape "
                   "timeout (that last line needs Prometheus's extra-scrape-metrics feature). Fetches "
                   "that reach the budget lose jobs to timeouts.",
                   [query(f"seekrflow_exporter_scrape_duration_seconds{{{s}}}", "{{instance}} fetch"),
                    query(f"seekrflow_exporter_scrape_timeout_seconds{{{s}}}", "{{instance}} fetch budget",
                          ref="D"),
                    query(f"scrape_duration_seconds{{{s}}}", "{{instance}} scrape", ref="B"),
                    query(f"scrape_timeout_seconds{{{s}}}", "{{instance}} timeout", ref="C")],
                   "s"),
        timeseries("Per-file records left out", "Live file records of each job left out of the per-file "
                   "series because the job has more than metrics.per_file_limit.",
                   [query(limited(f"seekrflow_ingestion_job_file_records_omitted{{{f}}}"), "{{job_id}}")],
                   "short", steps=thresholds((1, "orange")), threshold_line=True),
        timeseries("Exporter CPU", "CPU time the exporter process uses per second.",
                   [query(f"rate(process_cpu_seconds_total{{{s}}}[$__rate_interval])", "{{instance}}")],
                   "percentunit"),
        timeseries("Exporter memory", "Resident memory of the exporter process.",
                   [query(f"process_resident_memory_bytes{{{s}}}", "{{instance}}")], "bytes"),
    ]
    return dashboard(UID_EXPORTER_HEALTH, "SeekrFlow / Exporter health",
                     "Is the exporter healthy: the SeekrFlow API, its configuration and job discovery, "
                     "per-job fetches, API answers, scrape time against the timeout, and the exporter process.",
                     panels, [datasource_variable(), *scope_variables(), job_id_variable(), limit_variable()],
                     f', {CLUSTER_LABEL}=~"$cluster"')


DASHBOARDS = {"overview.json": overview, "job-detail.json": job_detail, "exporter-health.json": exporter_health}


def render(build) -> str:
    return json.dumps(build(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    parser.add_argument("--selector", default=None,
                        help="label matchers of the exporter's series (default: selector in prometheus/thresholds.yml)")
    parser.add_argument("--cluster-label", default=None,
                        help="the label of the environment (default: cluster_label in prometheus/thresholds.yml)")
    parser.add_argument("--output-dir", type=Path, default=DASHBOARD_DIR, help="where the dashboards are")
    args = parser.parse_args(argv)
    global SELECTOR, CLUSTER_LABEL
    SELECTOR, CLUSTER_LABEL = load_selectors()
    SELECTOR = args.selector if args.selector is not None else SELECTOR
    CLUSTER_LABEL = args.cluster_label if args.cluster_label is not None else CLUSTER_LABEL
    stale = []
    for name, build in DASHBOARDS.items():
        path = args.output_dir / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"out of date, run python grafana/generate.py: {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
