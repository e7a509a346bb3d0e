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
                          cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "ratio = exporter / (fetch floor + exposition floor)" in out
    assert "API requests per scrape" in out
    assert "Pure step on the same bodies" in out
    # Steady state: one request per unfinished job; cold and shared rounds: one per job.
    assert "    4 x 20          1 |       4/4 |       1/1 |       4/4 | ok" in out
    assert "  10 x 100          2 |     10/10 |       2/2 |     10/10 | ok" in out
    sizes = json.loads(report.read_text())["sizes"]
    assert [s["label"] for s in sizes] == ["4 x 20", "10 x 100"]
    for size in sizes:
        assert size["api_requests"]["ok"] is True
        # A warm scrape serves the same series as a cold one; only where the data came from differs.
        assert size["warm_samples"] == size["samples"]
