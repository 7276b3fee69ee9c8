"""
The benchmark still works: ``benchmarks/run.py --quick`` starts a real ``twistd spartan``
and the bare relay, runs every scenario once with small counts, finds every message
delivered exactly once and prints its figures.  No speed is asserted here: the machine
running the tests may be busy; docs/performance.md holds the measured figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_quick_benchmark_runs_and_delivers_every_message_once(tmp_path):
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
         "--connections", "300", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "every message delivered exactly once" in result.stdout
    for label in ("fan-out deliveries/s", "one-to-one messages/s", "connections held",
                  "server memory per connection", "light-load round trip p99",
                  "--message-log text"):
        assert label in result.stdout

    report = json.loads(report_path.read_text())
    assert report["exactly_once"] and not report["failures"]
    by_key = {(r["key"], r["server"]): r for r in report["results"]}
    for key in ("fanout", "direct", "held", "light"):
        for server in ("spartan", "relay"):
            assert (key, server) in by_key, (key, server)
    for key in ("fanout", "direct"):
        spartan = by_key[key, "spartan"]
        assert spartan["exactly_once"] and spartan["deliveries"] > 0
    assert by_key["fanout", "spartan"]["deliveries"] == 49 * by_key["fanout", "spartan"]["messages"]
    assert by_key["held", "spartan"]["reached"] == 300
    row = next(r for r in report["table"] if r["figure"] == "deliveries_per_s")
    assert row["spartan"] > 0 and row["relay"] > 0 and row["ratio"] > 0


def test_a_second_interpreter_and_the_durable_store_get_their_own_column(tmp_path):
    # How PyPy is compared (docs/performance.md): the same Spartan under --spartan-python, in
    # the same runs, with a ratio column; here the same interpreter stands in for PyPy.
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "run.py"), "--quick",
         "--scenarios", "light", "--servers", "spartan", "--db", "fresh", "--sync", "normal",
         "--spartan-python", sys.executable, "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| Spartan, --spartan-python |" in result.stdout
    assert "--spartan-python / Spartan" in result.stdout
    report = json.loads(report_path.read_text())
    servers = {r["server"] for r in report["results"]}
    assert servers == {"spartan", "spartan_alt"}
    row = next(r for r in report["table"] if r["figure"] == "p99_ms")
    assert row["spartan_alt"] > 0 and row["ratio_alt"] > 0
