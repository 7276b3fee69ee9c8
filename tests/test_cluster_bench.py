"""
The cluster benchmark still works: ``benchmarks/cluster_bench.py`` with small counts starts
a real redis-server and real nodes (one SQLite node, one and two Redis nodes), finds every
message delivered exactly once (it exits non-zero otherwise) and reports every figure the
capacity model in docs/cluster.md is built from.  No speed is asserted: the machine running
the tests may be busy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.redis_support import require_redis_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cluster_benchmark_reports_every_layout_and_figure(tmp_path):
    env = dict(os.environ, REDIS_SERVER=require_redis_server())
    report_path = tmp_path / "cluster.json"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "cluster_bench.py"),
         "--runs", "1", "--messages", "2000", "--json", str(report_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "load average" in result.stdout
    report = json.loads(report_path.read_text())
    rows = {(row["layout"], row["workload"]): row for row in report["summary"]}
    layouts = ("SQLite, 1 node", "Redis, 1 node", "Redis, 2 nodes")
    assert set(rows) == {(layout, w) for layout in layouts for w in ("fan-out", "one-to-one")}
    for (layout, workload), row in rows.items():
        assert row["rate"] > 0 and row["rate_ratio"] > 0, row
        assert row["node_cpu_per_k"] > 0 and row["load_cpu_per_k"] > 0, row
        if layout.startswith("SQLite"):
            assert row["redis_cpu_per_k"] == 0, row  # no Redis was running
    assert rows["SQLite, 1 node", "fan-out"]["rate_ratio"] == 1.0
    raw = report["raw"]["Redis, 2 nodes / fan-out"][0]
    assert raw["units"] == 2000 * 39  # every member but the sender got every message
