"""The fault suite, configuration side: files that block, bombs, and values that would fail every fetch.

Each bad file gives one line (the path, the key, the reason), exit code 1 and no traceback; a
running exporter refuses it on reload and keeps serving, within a memory bound read from /proc.
"""

import os
import signal
import subprocess
import sys

import pytest
import requests
import yaml

from exporter.config import ConfigError, build_config, load_config
from harness import ExporterProcess, peak_rss_mib, wait_until
from hostile_api import HostileAPI, good
from metric_samples import parse_exposition, value

ENV = {"SEEKR_API_KEY": "sk-test-fault-config"}
KEY = ENV["SEEKR_API_KEY"]

# 450 bytes that a plain YAML loader expands to 10^9 list items.
ALIAS_BOMB = "\n".join(
    ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    + ["jobs: [ij-1]", ""])


def check(path, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exporter", "--config.check", "--config.file", str(path)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=60)


def assert_refused(proc: subprocess.CompletedProcess, line: str) -> None:
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [line]
    assert proc.stdout == ""


def test_an_alias_bomb_is_refused_at_its_first_alias(tmp_path):
    assert len(ALIAS_BOMB) < 500
    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    assert_refused(check(path), f"{path}: {path} is not valid YAML at line 2, column 8: aliases are not allowed")


@pytest.mark.slow
def test_config_check_refuses_what_would_fail_every_fetch(tmp_path):
    cases = {
        "port": ("api:\n  base_url: http://127.0.0.1:99999\n", "api.base_url: port out of range 1-65535, got 'http://127.0.0.1:99999'"),
        "port0": ("api:\n  base_url: http://127.0.0.1:0\n", "api.base_url: port out of range 1-65535, got 'http://127.0.0.1:0'"),
        "ipv6": ("api:\n  base_url: 'http://[::1'\n", "api.base_url: not a URL, got 'http://[::1'"),
        "space": ("api:\n  base_url: 'http://flow.example.test /v1'\n",
                  "api.base_url: must not contain spaces or control characters, got 'http://flow.example.test /v1'"),
        "crlf": ('api:\n  base_url: "http://flow.example.test\\r\\nX-Evil: 1"\n',
                 "api.base_url: must not contain spaces or control characters, got 'http://flow.example.test\\r\\nX-Evil: 1'"),
        "team": ("api:\n  team_id: ' team-1'\n", "api.team_id: the team ID must not contain spaces or control characters"),
        "digits": ("api:\n  max_concurrency: " + "9" * 100_000 + "\n",
                   "{path} is not valid YAML at line 2, column 20: number too long"),
    }
    for name, (text, reason) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text + "jobs: [ij-1]\n")
        assert_refused(check(path), f"{path}: " + reason.format(path=path))


@pytest.mark.slow
def test_a_fifo_config_is_refused_at_once(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert_refused(check(fifo), f"{fifo}: config file {fifo} is not a regular file")
    assert_refused(check("/dev/zero"), "/dev/zero: config file /dev/zero is not a regular file")
    with pytest.raises(ConfigError) as err:
        build_config({"jobs": ["ij-1"], "api": {"api_key_file": str(fifo)}}, ENV)
    assert str(err.value) == f"api.api_key_file: {fifo} is not a regular file"


def test_an_oversized_config_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("jobs: [ij-1]\n" + "#" * (2 << 20) + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path), ENV)
    assert str(err.value) == f"config file {path} is larger than 1048576 bytes"


@pytest.mark.slow
def test_a_running_exporter_refuses_a_bomb_and_a_fifo_and_still_stops_on_sigterm(tmp_path):
    with HostileAPI({"ij-1": good()}) as api:
        config = {"api": {"base_url": api.url}, "jobs": ["ij-1"]}
        with ExporterProcess(config, KEY, extra_args=["--web.enable-lifecycle"]) as exporter:
            exporter.scrape()
            exporter.config_path.write_text(ALIAS_BOMB)
            refused = requests.post(exporter.url + "/-/reload", timeout=30)
            got = parse_exposition(exporter.scrape().text)
            assert value(got, "seekrflow_exporter_config_last_reload_successful") == 0
            assert value(got, "seekrflow_ingestion_job_scrape_success", job_id="ij-1") == 1
            assert peak_rss_mib(exporter.proc.pid) < 100

            exporter.config_path.unlink()
            os.mkfifo(exporter.config_path)  # nobody ever writes to it
            exporter.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "is not a regular file" in exporter._stderr_path.read_text(),
                       what="the FIFO to be refused")
            assert exporter.scrape().status_code == 200
            exporter.proc.send_signal(signal.SIGTERM)
            exporter.proc.wait(timeout=20)
    assert refused.status_code == 500
    assert refused.text.startswith("failed to reload config: /")
    assert refused.text.endswith("is not valid YAML at line 2, column 8: aliases are not allowed\n")
    assert exporter.proc.returncode == 0
    assert "Traceback" not in exporter.log


def test_safe_yaml_still_reads_anchors_free_documents(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump({"jobs": ["ij-1"], "api": {"max_concurrency": 4, "timeout": "3s"}}))
    config = load_config(str(path), ENV)
    assert (config.jobs, config.api.max_concurrency, config.api.request_timeout) == (("ij-1",), 4, 3.0)
