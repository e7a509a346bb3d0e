"""End to end: a file fails in the API, and the alert reaches a webhook through the real stack.

simulator -> exporter (a process) -> prometheus (the repo's rules) -> prometheus-alertmanager
(the example config, pointed at a local webhook) -> webhook receiver. All on 127.0.0.1.

A failure is "new" only if Prometheus saw the job before it failed, so the order is forced rather
than left to timing: the simulator's clock is held just before the failure until Prometheus has
stored the job with no failure, then released.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import secrets
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from exporter.simulator import SimulatedWorld, SimulatorServer
from harness import ExporterProcess, wait_until
from promstack import AlertmanagerServer, PrometheusServer, WebhookReceiver, scrape_config

pytestmark = pytest.mark.slow  # a real Prometheus and Alertmanager

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = REPO / "prometheus"
RECORDING_RULES = PROMETHEUS_DIR / "rules" / "seekrflow-recording.rules.yml"

# Alerts about the exporter, the API and fetching decide within a second here: had any of them a
# reason to fire, it would have fired long before the failure alert arrives.
FAST_THRESHOLDS = {"exporter_down_for": "1s", "api_down_for": "1s", "job_scrape_failing_for": "1s"}


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_rules", PROMETHEUS_DIR / "render_rules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class HeldClock:
    """The simulator's clock: stands still at ``held_at`` until ``release()``, then is real time."""

    def __init__(self, held_at: float) -> None:
        self._held_at = held_at
        self._released = threading.Event()

    def __call__(self) -> float:
        return time.time() if self._released.is_set() else self._held_at

    def release(self) -> None:
        self._released.set()


def unix_seconds(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def failed_record(world: SimulatedWorld, job_id: str) -> dict:
    """The job's one failing record, as the job's final body shows it."""
    records = world.job_response(job_id, float("1e10"))["file_records"]
    (record,) = [r for r in records if r["status"] == "failed"]
    return record


def alertmanager_config(webhook_url: str) -> dict:
    """The example config, its receivers pointed at the webhook and its waits cut to a second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = webhook_url + urlsplit(webhook["url"]).path
    return config


def recording_rule_names(*rule_files: Path) -> list[str]:
    groups = [group for path in rule_files for group in yaml.safe_load(path.read_text())["groups"]]
    return sorted({rule["record"] for group in groups for rule in group["rules"] if "record" in rule})


def test_a_failing_file_reaches_the_webhook_and_nothing_else_fires(tmp_path):
    render_rules = load_renderer()
    alert_rules = tmp_path / "seekrflow-alerts.rules.yml"
    alert_rules.write_text(render_rules.render(FAST_THRESHOLDS)[alert_rules.name])
    thresholds = render_rules.load_thresholds()
    [scrape_job] = re.fullmatch(r'job="([^"]+)"', thresholds["selector"]).groups()
    runbook_base_url = thresholds["runbook_base_url"]

    # Job A: four files; the first one picked fails, the others complete.
    now = time.time()
    world = SimulatedWorld(
        jobs=1, files_per_job=4, seed=7, failure_rate=0.0, deleted_rate=0.0,
        fail_records=1, staggered=False, started_at=now - 60,
    )
    (failing_job,) = world.job_ids()
    failure = failed_record(world, failing_job)
    failed_at = unix_seconds(failure["failed_at"])
    assert failed_at < now, "the failure must lie in the past once the clock is released"
    clock = HeldClock(held_at=failed_at - 1.0)
    # Job B: finished cleanly ten minutes ago, served as a fixed body.
    clean_world = SimulatedWorld(
        jobs=1, files_per_job=4, seed=8, failure_rate=0.0, deleted_rate=0.0,
        staggered=False, started_at=now - 600,
    )
    (clean_job,) = clean_world.job_ids()
    clean_body = clean_world.job_response(clean_job, now)
    assert clean_body["status"] == "completed"

    api_key = secrets.token_hex(16)
    with contextlib.ExitStack() as stack:
        webhook = stack.enter_context(WebhookReceiver())
        alertmanager = stack.enter_context(AlertmanagerServer(alertmanager_config(webhook.url)))
        simulator = stack.enter_context(
            SimulatorServer(world, api_key, fixtures={clean_job: clean_body}, clock=clock)
        )
        exporter = stack.enter_context(ExporterProcess(
            {
                "api": {"base_url": simulator.url, "endpoint": "alignment"},
                "scrape": {"cache_ttl": "0s"},
                "jobs": [failing_job, clean_job],
            },
            api_key,
        ))
        instance = urlsplit(exporter.url).netloc
        # Prometheus gives each scrape 0.5 s to fetch. Once a job has data, a fetch that misses that
        # is no failure, so one scrape here (with the default budget) keeps a busy machine from
        # firing the fetch alerts.
        exporter.scrape()
        prometheus = stack.enter_context(PrometheusServer(
            scrape_configs=[scrape_config(scrape_job, exporter.url)],
            rule_files=[RECORDING_RULES, alert_rules],
            alertmanager_urls=[alertmanager.url],
        ))

        # Prometheus has stored job A with no failure; only now may the file fail.
        prometheus.wait_for(
            f'seekrflow_ingestion_job_files{{job_id="{failing_job}", status="failed"}} == 0'
        )
        clock.release()

        def failure_alert_delivered():
            return [
                (path, alert) for path, alert in webhook.alerts()
                if alert["labels"]["alertname"] == "SeekrFlowFileFailures"
            ]

        ((path, alert),) = wait_until(
            failure_alert_delivered, timeout=40, interval=0.1, what="SeekrFlowFileFailures at the webhook"
        )

        # The right alert, for the right job, routed as a warning (to the ticket receiver).
        assert path == "/seekrflow/ticket"
        assert alert["status"] == "firing"
        assert alert["labels"] == {
            "alertname": "SeekrFlowFileFailures",
            "severity": "warning",
            "job": scrape_job,
            "instance": instance,
            "job_id": failing_job,
            "status": "failed",
        }
        assert alert["annotations"] == {
            "summary": f"New file failures in SeekrFlow ingestion job {failing_job}",
            "description": (
                f"1 file(s) of ingestion job {failing_job} failed in the last 15m. Failed files: "
                f"{failure['filename']} ({failure['error_message']}); see the runbook to list them all."
            ),
            "runbook_url": f"{runbook_base_url}#seekrflowfilefailures",
        }

        # Nothing else was delivered, and nothing else is pending or firing in Prometheus.
        assert [a["labels"]["alertname"] for _, a in webhook.alerts()] == ["SeekrFlowFileFailures"]
        assert [
            (a["labels"]["alertname"], a["labels"].get("job_id"), a["state"]) for a in prometheus.alerts()
        ] == [("SeekrFlowFileFailures", failing_job, "firing")]

        # Prometheus scrapes the exporter, and every rule evaluates without error on real data.
        assert prometheus.values(f'up{{job="{scrape_job}"}}', "instance") == {instance: 1.0}
        for group in prometheus.rule_groups():
            for rule in group["rules"]:
                assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"

        # Every recording rule returns data, with exact values where the data are fixed.
        for name in recording_rule_names(RECORDING_RULES, alert_rules):
            prometheus.wait_for(name, timeout=20)
        assert prometheus.values('status:seekrflow_ingestion_job_files:sum{status="failed"}', "status") == {
            "failed": 1.0
        }
        assert prometheus.values("job_id:seekrflow_ingestion_job_files_finished:sum", "job_id")[clean_job] == 4.0
        assert prometheus.values("job_id:seekrflow_ingestion_job_files_failed_per_finished:ratio", "job_id")[
            clean_job
        ] == 0.0
        assert {
            row["metric"]["quantile"]
            for row in prometheus.query(
                f'job_id_quantile:seekrflow_ingestion_job_file_processing_duration_seconds:histogram_quantile{{job_id="{clean_job}"}}'
            )
        } == {"0.5", "0.9", "0.99"}

        # The API key reaches neither Prometheus's alerts nor the webhook.
        assert api_key not in repr(webhook.deliveries)
        assert api_key not in repr(prometheus.alerts())
