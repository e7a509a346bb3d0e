"""The benchmark runs end to end and prints its tables. Nothing here looks at how long anything took."""

import json
import subprocess
import sys

import pytest

from harness import ROOT

pytestmark = pytest.mark.slow  # the whole benchmark, in quick mode


def test_quick_benchmark_prints_every_table_and_the_expected_api_requests(tmp_path):
    report = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(report)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)

    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for table in ("cold / (fetch + expo), warm / expo", "Simultaneous warm scrapes", "Resident memory",
                  "API requests per scrape", "Latency-bound cold scrape", "Pure step on the same bodies"):
        assert table in out
    # Steady state: one request per unfinished job, also for scrapes sharing a round; cold: one per job.
    assert "     4 x 20          1 |       4/4 |       1/1 |       1/1 | ok" in out
    assert "   10 x 100          2 |     10/10 |       2/2 |       2/2 | ok" in out
    sizes = json.loads(report.read_text())["sizes"]
    assert [s["label"] for s in sizes] == ["4 x 20", "10 x 100"]
    for size in sizes:
        assert size["api_requests"]["ok"] is True
        # A warm scrape serves the same series as a cold one; only where the data came from differs.
        assert size["warm_samples"] == size["samples"] == size["warm_prometheus_samples"]
        assert size["moving_exposition_differs"] is True
        # Scrapes sent together shared one round, and with it one body, byte for byte.
        assert size["concurrent_bodies_agree"] is True
        # The first scrape of a fresh exporter served every job.
        assert size["first_scrape"]["jobs_with_data"] == size["size"]["jobs"]
