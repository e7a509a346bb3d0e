"""Configuration: every kind of mistake stops start-up with one line naming the key and the reason."""

import subprocess
import sys

import pytest
import yaml

from exporter.config import ApiConfig, ConfigError, build_config, load_config, parse_duration

ENV = {"SEEKR_API_KEY": "sk-test-config"}


def test_minimal_config_and_defaults():
    config = build_config({"api": {"base_url": "http://127.0.0.1:8080"}, "jobs": ["ij-0001", "ij-0002"]}, ENV)
    assert config.jobs == ("ij-0001", "ij-0002")
    assert config.api.base_url == "http://127.0.0.1:8080"
    assert config.api.path_template == "/v1/flow/alignment/ingestion/{id}"
    assert config.api.api_key == "sk-test-config"
    assert config.api.team_id is None
    assert (config.scrape.timeout, config.scrape.cache_ttl, config.scrape.finished_job_refresh) == (25, 5, 600)
    assert (config.metrics.per_file, config.metrics.per_file_window, config.metrics.per_file_limit) == ("all", 3600, 500)
    assert (config.metrics.allow, config.metrics.deny) == ((), ())


@pytest.mark.parametrize("written, policy", [
    (True, "all"), (False, "none"), ("all", "all"), ("recent", "recent"), ("unfinished", "unfinished"), ("none", "none"),
])
def test_per_file_policy_and_the_booleans_it_had_before(written, policy):
    config = build_config({"jobs": ["ij-1"], "metrics": {"per_file": written, "per_file_window": "1d"}}, ENV)
    assert (config.metrics.per_file, config.metrics.per_file_window) == (policy, 86400)


def test_allow_and_deny_lists_are_kept_as_written():
    config = build_config({"jobs": ["ij-1"], "metrics": {"deny": ["seekrflow_ingestion_file_.*", "x|y"]}}, ENV)
    assert (config.metrics.allow, config.metrics.deny) == ((), ("seekrflow_ingestion_file_.*", "x|y"))
    config = build_config({"jobs": ["ij-1"], "metrics": {"allow": ["seekrflow_ingestion_job_status"], "deny": []}}, ENV)
    assert (config.metrics.allow, config.metrics.deny) == (("seekrflow_ingestion_job_status",), ())


def test_the_job_list_has_a_deadline_of_its_own():
    assert build_config({"discovery": {"enabled": True}}, ENV).discovery.timeout == 120
    assert build_config({"discovery": {"enabled": True, "timeout": "5m"}}, ENV).discovery.timeout == 300
    with pytest.raises(ConfigError) as err:
        build_config({"discovery": {"enabled": True, "timeout": "2h"}}, ENV)
    assert str(err.value) == "discovery.timeout: must be at most 1h"


def test_discovery_makes_the_job_list_optional():
    config = build_config({"discovery": {"enabled": True, "interval": "1m", "max_age": "2d"}}, ENV)
    assert config.jobs == ()
    assert (config.discovery.enabled, config.discovery.interval, config.discovery.max_age) == (True, 60, 172800)
    assert config.api.list_path == "/v1/flow/alignment/ingestion"
    assert build_config({"discovery": {"enabled": True}, "jobs": []}, ENV).jobs == ()


def test_environment_fills_base_url_team_and_key():
    env = dict(ENV, SEEKR_BASE_URL="https://flow.example.test/", SEEKR_TEAM_ID="team-9")
    config = build_config({"jobs": ["ij-1"], "api": {"endpoint": "ingestion"}}, env)
    assert config.api.base_url == "https://flow.example.test"
    assert config.api.team_id == "team-9"
    assert config.api.path_template == "/v1/flow/ingestion/{id}"


def test_key_file_wins_over_environment_and_is_not_in_repr(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("sk-from-file\n")
    config = build_config({"jobs": ["ij-1"], "api": {"api_key_file": str(key_file)}}, ENV)
    assert config.api.api_key == "sk-from-file"
    assert "sk-from-file" not in repr(config)


def test_full_example_config_in_the_repo_is_valid():
    config = load_config("config.yaml", ENV)
    assert len(config.jobs) >= 2
    # The example shows the defaults.
    assert config.api.terminal_record_statuses == ApiConfig().terminal_record_statuses


@pytest.mark.parametrize("text, seconds", [
    ("10s", 10), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("2d", 172800), ("1m30s", 90), ("0s", 0),
    ("0", 0), ("1y2w3d4h5m6s7ms", 31536000 + 1209600 + 259200 + 14400 + 300 + 6.007)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds


@pytest.mark.parametrize("text", ["5s1h", "1h1h", "1.5h", "10", "-5s", "1h ", "5m\n", "\u0663s", ""])
def test_durations_outside_prometheus_grammar_are_refused(text):
    # Units largest first, each at most once, whole ASCII numbers: what Prometheus itself accepts.
    with pytest.raises(ConfigError) as error:
        parse_duration(text, "scrape.cache_ttl")
    assert str(error.value) == f"scrape.cache_ttl: must be a duration like 10s or 5m, got {text!r}"


MISTAKES = [
    ({"jobs": ["ij-1"], "bogus": 1}, "bogus: unknown key (allowed: api, data_jobs, discovery, jobs, metrics, scrape)"),
    ({"jobs": ["ij-1"], "api": {"base_urll": "x"}},
     "api.base_urll: unknown key (allowed: api_key_file, base_url, endpoint, max_concurrency, team_id, "
     "terminal_record_statuses, timeout)"),
    ({"api": {}}, "jobs: is required: list the ingestion job IDs to export, or turn on discovery.enabled "
                  "or data_jobs.enabled"),
    ({"jobs": ["ij-1"], "discovery": {"enabled": "yes"}}, "discovery.enabled: must be true or false, got 'yes'"),
    ({"jobs": ["ij-1"], "discovery": {"max_age": "0s"}}, "discovery.max_age: must be longer than 0s"),
    ({"discovery": {"enabled": True}, "jobs": "ij-1"}, "jobs: must be a non-empty list of ingestion job IDs, got 'ij-1'"),
    ({"jobs": []}, "jobs: must be a non-empty list of ingestion job IDs, got []"),
    ({"jobs": "ij-1"}, "jobs: must be a non-empty list of ingestion job IDs, got 'ij-1'"),
    ({"jobs": ["ij-1", ""]}, "jobs[1]: must be a non-empty job ID string, got ''"),
    ({"jobs": ["ij-1", 7]}, "jobs[1]: must be a non-empty job ID string, got 7"),
    ({"jobs": ["ij-1", "ij-2", "ij-1"]}, "jobs[2]: duplicate job ID 'ij-1'"),
    ({"jobs": ["../admin"]}, "jobs[0]: '../admin' is not a valid job ID (letters, digits, '.', '_', '~', '-' only)"),
    ({"jobs": ["ij-1/../../x"]}, "jobs[0]: 'ij-1/../../x' is not a valid job ID (letters, digits, '.', '_', '~', '-' only)"),
    ({"jobs": ["ij-1?x=1"]}, "jobs[0]: 'ij-1?x=1' is not a valid job ID (letters, digits, '.', '_', '~', '-' only)"),
    ({"jobs": ["ij-1"], "api": {"base_url": "flow.seekr.com"}},
     "api.base_url: must be an http(s) URL like https://flow.seekr.com, got 'flow.seekr.com'"),
    ({"jobs": ["ij-1"], "api": {"base_url": "ftp://host"}},
     "api.base_url: must be an http(s) URL like https://flow.seekr.com, got 'ftp://host'"),
    ({"jobs": ["ij-1"], "api": {"endpoint": "v2"}}, "api.endpoint: must be one of alignment, ingestion, got 'v2'"),
    ({"jobs": ["ij-1"], "api": {"timeout": "10"}}, "api.timeout: must be a duration like 10s or 5m, got '10'"),
    ({"jobs": ["ij-1"], "api": {"timeout": 10}}, "api.timeout: must be a duration like 10s or 5m, got 10"),
    ({"jobs": ["ij-1"], "api": {"timeout": "0s"}}, "api.timeout: must be longer than 0s"),
    ({"jobs": ["ij-1"], "scrape": {"cache_ttl": "5 minutes"}},
     "scrape.cache_ttl: must be a duration like 10s or 5m, got '5 minutes'"),
    ({"jobs": ["ij-1"], "api": {"max_concurrency": 0}}, "api.max_concurrency: must be a whole number from 1 to 256, got 0"),
    ({"jobs": ["ij-1"], "api": {"max_concurrency": "8"}}, "api.max_concurrency: must be a whole number from 1 to 256, got '8'"),
    ({"jobs": ["ij-1"], "api": {"team_id": 42}}, "api.team_id: must be a string, got 42"),
    ({"jobs": ["ij-1"], "metrics": {"per_file": "yes"}},
     "metrics.per_file: must be one of all, recent, unfinished, none, got 'yes'"),
    ({"jobs": ["ij-1"], "metrics": {"per_file_window": "0s"}}, "metrics.per_file_window: must be longer than 0s"),
    ({"jobs": ["ij-1"], "metrics": {"allow": ["seekrflow_.*"], "deny": ["seekrflow_ingestion_file_.*"]}},
     "metrics.deny: cannot be set together with metrics.allow: use one of the two"),
    ({"jobs": ["ij-1"], "metrics": {"deny": "seekrflow_ingestion_file_.*"}},
     "metrics.deny: must be a list of regular expressions over metric names, got 'seekrflow_ingestion_file_.*'"),
    ({"jobs": ["ij-1"], "metrics": {"allow": ["seekrflow_up", "seekrflow_(ingestion"]}},
     "metrics.allow[1]: not a valid regular expression (missing ), unterminated subpattern): 'seekrflow_(ingestion'"),
    ({"jobs": ["ij-1"], "metrics": {"deny": ["a", ""]}}, "metrics.deny[1]: must be a non-empty regular expression, got ''"),
    ({"jobs": ["ij-1"], "metrics": {"deny": [3]}}, "metrics.deny[0]: must be a non-empty regular expression, got 3"),
    ({"jobs": ["ij-1"], "metrics": {"per_file_limit": True}},
     "metrics.per_file_limit: must be a whole number from 1 to 100000, got True"),
    ({"jobs": ["ij-1"], "metrics": {"queue_wait_buckets": [5, 1]}},
     "metrics.queue_wait_buckets: bucket bounds must be strictly increasing"),
    ({"jobs": ["ij-1"], "metrics": {"processing_duration_buckets": [1, "5s"]}},
     "metrics.processing_duration_buckets: bucket bounds must be positive numbers of seconds, got '5s'"),
    ({"jobs": ["ij-1"], "metrics": []}, "metrics: must be a mapping, got []"),
    (["ij-1"], "must be a mapping, got ['ij-1']"),
]


@pytest.mark.parametrize("raw, message", MISTAKES)
def test_each_mistake_names_the_key_and_the_reason(raw, message):
    with pytest.raises(ConfigError) as err:
        build_config(raw, ENV)
    assert str(err.value) == message


def test_missing_key_is_a_config_error():
    with pytest.raises(ConfigError) as err:
        build_config({"jobs": ["ij-1"]}, {})
    assert str(err.value) == "api.api_key_file: no API key: set api.api_key_file or the SEEKR_API_KEY environment variable"


def test_unreadable_key_file(tmp_path):
    with pytest.raises(ConfigError) as err:
        build_config({"jobs": ["ij-1"], "api": {"api_key_file": str(tmp_path / "nope")}}, ENV)
    assert str(err.value) == f"api.api_key_file: cannot read {tmp_path / 'nope'}: No such file or directory"


def run_exporter(*args, env=None):
    return subprocess.run([sys.executable, "-m", "exporter", *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, timeout=30)


def test_bad_config_stops_startup_with_one_line_and_exit_1(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"jobs": ["ij-1", "ij-1"]}))
    proc = run_exporter("--config.file", str(path), "--web.listen-address", "127.0.0.1:0", env=ENV)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "level=error" in lines[0] and "jobs[1]: duplicate job ID 'ij-1'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("jobs:\n  - ij-1\n api: [\n")
    proc = run_exporter("--config.check", "--config.file", str(path), env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{path}: {path} is not valid YAML at line 3, column 2"


@pytest.mark.slow
def test_config_check_accepts_a_good_file_and_refuses_a_bad_one(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"jobs": ["ij-1", "ij-2"], "api": {"endpoint": "ingestion"}}))
    proc = run_exporter("--config.check", "--config.file", str(good), env=ENV)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{good}: valid, 2 job(s), endpoint /v1/flow/ingestion/{{id}}")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"jobs": ["ij-1"], "scrape": {"timeout": "soon"}}))
    proc = run_exporter("--config.check", "--config.file", str(bad), env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"{bad}: scrape.timeout: must be a duration like 10s or 5m, got 'soon'"


def test_missing_config_file(tmp_path):
    proc = run_exporter("--config.check", "--config.file", str(tmp_path / "none.yaml"), env=ENV)
    assert proc.returncode == 1
    assert proc.stderr.strip().endswith(f"cannot read config file {tmp_path / 'none.yaml'}: No such file or directory")


@pytest.mark.parametrize("env, message", [
    ({"SEEKR_API_KEY": "sk-\u20ac-euro"}, "SEEKR_API_KEY: the API key holds characters that cannot be sent in an HTTP header"),
    ({"SEEKR_API_KEY": "sk-a\nb"}, "SEEKR_API_KEY: the API key holds characters that cannot be sent in an HTTP header"),
    ({"SEEKR_API_KEY": "sk-test-key", "SEEKR_TEAM_ID": "t\x00m"},
     "SEEKR_TEAM_ID: the team ID holds characters that cannot be sent in an HTTP header"),
])
def test_values_that_cannot_travel_as_headers_are_refused_without_showing_them(env, message):
    with pytest.raises(ConfigError) as err:
        build_config({"jobs": ["ij-1"]}, env)
    assert str(err.value) == message


SHORT = ("the API key is shorter than 8 characters, so it could not be told apart in the log to keep it out")
ESCAPED = ("the API key holds a backslash, a single quote or characters beyond ASCII, which an error could show "
           "escaped, out of reach of redaction")


@pytest.mark.parametrize("key, reason", [
    ("sk-1234", SHORT),
    ("sk-back\\slash", ESCAPED),
    ("sk-it's-a-key", ESCAPED),
    ("sk-caf\xe9-key", ESCAPED),
    ("sk-nbsp\xa0key", ESCAPED),
])
@pytest.mark.parametrize("source", ["SEEKR_API_KEY", "api.api_key_file"])
def test_a_key_the_log_could_not_redact_is_refused_without_showing_it(key, reason, source, tmp_path):
    raw: dict = {"jobs": ["ij-1"]}
    env = {"SEEKR_API_KEY": key}
    if source == "api.api_key_file":
        key_file = tmp_path / "key"
        key_file.write_text(key + "\n", encoding="utf-8")
        raw["api"] = {"api_key_file": str(key_file)}
        env = {}
    with pytest.raises(ConfigError) as err:
        build_config(raw, env)
    assert str(err.value) == f"{source}: {reason}"
    assert key not in str(err.value)


def test_the_shortest_key_the_log_can_redact_is_accepted():
    assert build_config({"jobs": ["ij-1"]}, {"SEEKR_API_KEY": "sk-12345"}).api.api_key == "sk-12345"


def test_key_file_that_is_not_text(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xff\xfe\x00sk")
    with pytest.raises(ConfigError) as err:
        build_config({"jobs": ["ij-1"], "api": {"api_key_file": str(key_file)}}, ENV)
    assert str(err.value) == f"api.api_key_file: {key_file} is not UTF-8 text"


def test_config_file_that_is_not_text(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"jobs: [\xff\xfe]\n")
    proc = run_exporter("--config.file", str(path), "--web.listen-address", "127.0.0.1:0", env=ENV)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert f"{path} is not UTF-8 text" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("raw, message", [
    ({"jobs": ["ij-1"], "scrape": {"timeout": "300y"}}, "scrape.timeout: must be at most 100y, got '300y'"),
    ({"jobs": ["ij-1"], "scrape": {"timeout": "2h"}}, "scrape.timeout: must be at most 1h"),
    ({"jobs": ["ij-1"], "api": {"timeout": "9" * 40 + "ms"}},
     "api.timeout: must be a duration like 10s or 5m, got '" + "9" * 40 + "ms'"),
    ({"jobs": ["ij-1"], "metrics": {"queue_wait_buckets": [10 ** 400]}},
     "metrics.queue_wait_buckets: bucket bounds must be positive numbers of seconds, got " + "1" + "0" * 56 + "..."),
    ({"jobs": ["ij-1\n"]}, "jobs[0]: 'ij-1\\n' is not a valid job ID (letters, digits, '.', '_', '~', '-' only)"),
])
def test_values_past_any_sane_range_are_refused(raw, message):
    with pytest.raises(ConfigError) as err:
        build_config(raw, ENV)
    assert str(err.value) == message


@pytest.mark.slow
def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("jobs: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path), ENV)
    assert str(err.value) == f"{path} is nested too deeply"
