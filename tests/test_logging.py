"""The log: logfmt or JSON (--log.format), unexpected errors with their whole traceback, and the API
key never in a line, whatever carries it (message, field, error, traceback)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading

import pytest
import requests

from exporter import client
from exporter import log as exporter_log
from exporter.cli import _Reloader
from exporter.config import build_config
from exporter.runtime import Runtime
from exporter.selfmetrics import SelfMetrics
from exporter.web import make_app
from harness import ExporterProcess, wait_until

KEY = "sk-logging-test-0123456789abcdef"


def raise_with(text: str) -> None:
    raise RuntimeError(f"broken while holding {text}")


def record_of_a_failure(message: str = "internal error", **fields) -> logging.LogRecord:
    try:
        raise_with(KEY)
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("seekrflow_exporter", logging.ERROR, __file__, 1, message, None, exc_info)
    record.fields = fields
    return record


@pytest.fixture(autouse=True)
def key_is_secret():
    exporter_log.redact(KEY)


def test_logfmt_keeps_an_error_on_one_line_with_its_traceback():
    line = exporter_log.LogfmtFormatter().format(record_of_a_failure(path="/metrics"))
    assert "\n" not in line
    assert line.split(" ", 1)[1].startswith('level=error msg="internal error" path=/metrics err="RuntimeError: '
                                            'broken while holding <redacted>" trace="Traceback (most recent call '
                                            'last):\\n')
    # The whole chain of calls, with the function that raised and the line that raised.
    assert 'in raise_with\\n    raise RuntimeError(f\\"broken while holding {text}\\")\\n' in line
    assert line.endswith('RuntimeError: broken while holding <redacted>"')


def test_json_is_one_object_a_line_with_the_same_fields():
    line = exporter_log.JsonFormatter().format(record_of_a_failure(path="/metrics", jobs=3, tls=False))
    assert "\n" not in line
    entry = json.loads(line)
    assert list(entry) == ["ts", "level", "msg", "path", "jobs", "tls", "err", "trace"]
    assert (entry["level"], entry["msg"], entry["jobs"], entry["tls"]) == ("error", "internal error", 3, False)
    assert entry["err"] == "RuntimeError: broken while holding <redacted>"
    assert entry["trace"].startswith("Traceback (most recent call last):\n")
    assert entry["trace"].endswith("RuntimeError: broken while holding <redacted>")
    assert entry["ts"].endswith("Z")


@pytest.mark.parametrize("formatter", [exporter_log.LogfmtFormatter(), exporter_log.JsonFormatter()])
def test_the_key_is_redacted_from_every_part_of_a_line(formatter):
    line = formatter.format(record_of_a_failure(f"message with {KEY}", field=f"x{KEY}y", other=KEY))
    assert KEY not in line
    assert line.count("<redacted>") == 5  # the message, two fields, err, and the trace's last line


def test_a_short_value_is_not_taken_for_a_secret():
    exporter_log.redact("abc")
    record = logging.LogRecord("seekrflow_exporter", logging.INFO, __file__, 1, "abc", None, None)
    assert 'msg=abc' in exporter_log.LogfmtFormatter().format(record)


class _BrokenRuntime:
    """A runtime whose collector has a bug: what a handler meets when the code is wrong."""

    @property
    def collector(self):
        raise_with(KEY)

    def reload(self):
        return None


@pytest.mark.parametrize("fmt", exporter_log.FORMATS)
def test_a_bug_in_a_handler_logs_its_traceback_without_the_key(fmt, capfd):
    exporter_log.setup_logging("info", fmt)
    app = make_app(_BrokenRuntime())
    statuses = []
    body = b"".join(app({"PATH_INFO": "/metrics", "REQUEST_METHOD": "GET"},
                        lambda status, headers, exc_info=None: statuses.append(status)))
    assert statuses == ["500 Internal Server Error"]
    assert KEY.encode() not in body
    [line] = capfd.readouterr().err.splitlines()
    assert KEY not in line
    entry = json.loads(line) if fmt == "json" else None
    if entry is not None:
        assert entry["msg"] == "internal error" and entry["path"] == "/metrics"
        assert "in collector\n" in entry["trace"] and "in raise_with\n" in entry["trace"]
    else:
        assert 'msg="internal error" path=/metrics' in line
        assert "in collector\\n" in line and "in raise_with\\n" in line


@pytest.mark.slow
def test_the_process_logs_json_with_log_format_json(tmp_path):
    """Through the real process: every line JSON, the start-up line with its fields."""
    with ExporterProcess({"api": {"base_url": "http://127.0.0.1:9"}, "jobs": ["ij-1"]}, KEY,
                         extra_args=["--log.format", "json", "--log.level", "debug"]) as exporter:
        requests.get(exporter.url + "/metrics", timeout=30)
        wait_until(lambda: exporter._stderr_path.read_text().count("\n") >= 2, timeout=20,
                   what="a log line about the failed fetch")
    entries = [json.loads(line) for line in exporter.log.splitlines()]
    listening = next(entry for entry in entries if entry["msg"] == "listening")
    assert listening["address"] == f"127.0.0.1:{exporter.port}" and listening["tls"] is False
    assert {entry["level"] for entry in entries} <= {"debug", "info", "warn", "error"}
    assert KEY not in exporter.log


def test_an_unknown_log_format_is_refused():
    result = subprocess.run([sys.executable, "-m", "exporter", "--log.format", "xml"], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "--log.format: invalid choice: 'xml' (choose from 'logfmt', 'json')" in result.stderr


def test_a_bug_met_while_fetching_is_logged_with_its_traceback_once_per_kind(capfd):
    exporter_log.setup_logging("info", "logfmt")

    def fail(line_of: int) -> Exception:
        try:
            if line_of == 1:
                raise_with(KEY)
            {}["missing"]
        except Exception as err:  # noqa: BLE001 - the test collects what it raised
            return err
        raise AssertionError("nothing raised")

    for err, job in ((fail(1), "ij-a"), (fail(1), "ij-b"), (fail(2), "ij-c")):
        client._log_first_of_its_kind(err, job)
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(" job_id=")[1].split(" ")[0] for line in lines] == ["ij-a", "ij-c"]
    assert 'err="RuntimeError: broken while holding <redacted>" trace="Traceback' in lines[0]
    assert "err=\"KeyError: 'missing'\"" in lines[1]
    assert KEY not in "".join(lines)


# --- errors nobody expected: reloads, threads, the process ----------------------------------------


def running_config(base_url: str = "http://127.0.0.1:9"):
    return build_config({"api": {"base_url": base_url}, "jobs": ["ij-1"]}, {"SEEKR_API_KEY": KEY})


def reload_gauge(self_metrics: SelfMetrics) -> float | None:
    return self_metrics.registry.get_sample_value("seekrflow_exporter_config_last_reload_successful")


def test_an_unexpected_error_loading_the_file_is_logged_with_its_traceback_without_the_key(capfd):
    exporter_log.setup_logging("info", "logfmt")

    def load():
        raise_with(KEY)

    self_metrics = SelfMetrics(process_metrics=False)
    runtime = Runtime(running_config(), self_metrics, load)
    try:
        assert runtime.reload() == "unexpected RuntimeError (see the log)"
    finally:
        runtime.close()
    [line] = capfd.readouterr().err.splitlines()
    assert line.split(" ", 1)[1].startswith('level=error msg="reload failed, keeping the running configuration" '
                                            'err="RuntimeError: broken while holding <redacted>" trace="Traceback')
    assert "in load\\n" in line and "in raise_with\\n" in line
    assert KEY not in line
    assert reload_gauge(self_metrics) == 0


def test_a_mistake_in_the_file_is_one_line_without_a_traceback(capfd):
    exporter_log.setup_logging("info", "logfmt")

    def load():
        return build_config({"jobs": "ij-1"}, {"SEEKR_API_KEY": KEY})

    runtime = Runtime(running_config(), SelfMetrics(process_metrics=False), load)
    try:
        reason = runtime.reload()
    finally:
        runtime.close()
    assert reason == "jobs: must be a non-empty list of ingestion job IDs, got 'ij-1'"
    [line] = capfd.readouterr().err.splitlines()
    assert line.split(" ", 1)[1] == ('level=error msg="reload failed, keeping the running configuration" '
                                     f'err="{reason}"')


def test_a_reload_that_breaks_after_loading_is_logged_and_the_next_sighup_still_reloads(capfd):
    exporter_log.setup_logging("info", "logfmt")
    self_metrics = SelfMetrics(process_metrics=False)
    runtime = Runtime(running_config(), self_metrics, running_config)
    builds = []
    real_build = runtime._build

    def build(config):
        builds.append(config)
        if len(builds) == 1:
            raise_with(KEY)  # a bug met while building the new poller
        return real_build(config)

    runtime._build = build  # type: ignore[method-assign]
    reloader = _Reloader(runtime, demo=False)
    try:
        running = runtime.collector
        reloader.request()
        wait_until(lambda: not reloader._running, what="the failed reload to end")
        assert runtime.collector is running  # the running configuration stays
        assert reload_gauge(self_metrics) == 0
        reloader.request()
        wait_until(lambda: len(builds) == 2 and not reloader._running, what="the next reload")
        assert runtime.collector is not running
        assert reload_gauge(self_metrics) == 1
    finally:
        runtime.close()
    lines = capfd.readouterr().err.splitlines()
    assert [line.split(" msg=")[1].split('"')[1] for line in lines] == [
        "reload failed, keeping the running configuration", "configuration reloaded"]
    assert 'err="RuntimeError: broken while holding <redacted>" trace="Traceback' in lines[0]
    assert "in build\\n" in lines[0] and "in _reload_once\\n" in lines[0]
    assert KEY not in "".join(lines)


@pytest.mark.parametrize("fmt", exporter_log.FORMATS)
def test_an_exception_nobody_caught_goes_through_the_log_format_without_the_key(fmt, capfd, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    exporter_log.setup_logging("info", fmt)
    exporter_log.log_uncaught_exceptions()
    thread = threading.Thread(target=raise_with, args=(KEY,), name="worker")
    thread.start()
    thread.join(timeout=30)
    try:
        raise_with(KEY)
    except RuntimeError:
        sys.excepthook(*sys.exc_info())
    lines = capfd.readouterr().err.splitlines()
    assert len(lines) == 2
    assert KEY not in "".join(lines)
    if fmt == "json":
        in_thread, in_process = (json.loads(line) for line in lines)
        assert (in_thread["msg"], in_thread["thread"]) == ("uncaught exception ended a thread", "worker")
        assert in_process["msg"] == "uncaught exception"
        for entry in (in_thread, in_process):
            assert entry["err"] == "RuntimeError: broken while holding <redacted>"
            assert "in raise_with\n" in entry["trace"]
    else:
        assert 'msg="uncaught exception ended a thread" thread=worker err="RuntimeError: broken while holding ' \
            '<redacted>" trace="Traceback' in lines[0]
        assert 'msg="uncaught exception" err="RuntimeError: broken while holding <redacted>" trace="Traceback' \
            in lines[1]
