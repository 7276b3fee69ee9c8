"""
How a Spartan server sets up CPython: the garbage collector and thread switching.

Both are process-wide, so `spartan.service.SpartanService` applies them when it starts, and the
benchmarks apply the same ones so that they measure what the server runs
(docs/performance.md, "Durable store").
"""

from __future__ import annotations

import gc
import sys

# Messages waiting for a commit are many young objects: collecting the youngest generation
# every 700 allocations (the default) cost the server a fifth of its throughput; every
# 20,000, little.
GC_THRESHOLD = (20_000, 10, 10)

# The store's worker thread needs the GIL for a moment to start each commit.  With the
# default 5 ms it waited for the reactor's turn to end (2.3 ms a commit, measured), and
# the reactor then waited for the commit: a third of the time idle.  At 0.5 ms the worker
# starts while the reactor answers the previous commit.  A switch happens only when another
# thread asks for the GIL, so a server without one pays nothing.
SWITCH_INTERVAL = 0.0005


def tune_for_serving(gen0: int = GC_THRESHOLD[0], switch_interval: float = SWITCH_INTERVAL) -> None:
    """Apply the server's settings; the benchmarks pass others to compare."""
    if hasattr(gc, "set_threshold"):  # CPython; PyPy's collector has no such threshold
        gc.set_threshold(gen0, *GC_THRESHOLD[1:])
    sys.setswitchinterval(switch_interval)
