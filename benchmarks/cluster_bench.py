"""
One SQLite node, one Redis node and two Redis nodes, in the same runs: fan-out and one-to-one
throughput, CPU per message of the nodes and of Redis, exactly-once checked.

    python benchmarks/cluster_bench.py [--messages 20000] [--runs 5] [--fsync always|everysec]
                                       [--json FILE]

Self-contained: for each run, layout and workload it starts a fresh ``redis-server`` (AOF on,
``appendfsync always`` by default: the durability of SQLite's ``--sync full``) on a free
loopback port and real ``twistd spartan`` nodes (``--db`` a fresh file for SQLite,
``--redis`` for the others), and drives them with an asyncio load generator that pipelines
``SEND`` lines (a window of outstanding replies per sender).  Layouts alternate within each
run, so a change in the machine's load hits all of them alike; the summary gives medians
over the runs and each Redis layout's ratio to the SQLite node of the same run (median of
the per-run ratios).  Each node is pinned to its own CPU (node i to CPU i); Redis and the
load generator are not pinned.  The two nodes listen on two ports rather than sharing one
with ``--reuse-port``, so that the clients are split evenly and one-to-one messages always
cross nodes.

* fan-out: ``GROUP`` users in one group, each in one session; ``SENDERS`` of them send
  ``--messages`` messages in total to the group; every member but the sender must receive
  every message exactly once.  Rate = deliveries (``* MSG`` lines received) per second.
* one-to-one: ``PAIRS`` pairs; each sender sends ``--messages / PAIRS`` messages to its
  partner, which sits on the other node when there are two.  Rate = messages per second,
  from the first SEND to the last ``* MSG`` received.
* CPU: user + system CPU-seconds (``/proc/PID/stat``) of the nodes (summed) and of Redis
  while the workload ran, per 1,000 messages sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import LIMITS_OFF  # noqa: E402  (benchmarks/ is this script's directory)

GROUP, SENDERS, PAIRS, WINDOW = 40, 4, 20, 64
_MSG_ID = re.compile(rb"^\* MSG (\d+) ", re.M)
_SCRIPT_CALLS = re.compile(r"(\d+) messages appended in (\d+) script calls")
_REPLY = re.compile(rb"^([^*\r\n][^\r\n]*)\r?$", re.M)  # a line not starting with '*'
TWISTD = shutil.which("twistd", path=os.path.dirname(sys.executable)) or "twistd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def can_connect(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def start_redis(directory: Path, fsync: str) -> tuple[subprocess.Popen, int]:
    binary = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not binary:
        raise SystemExit("redis-server not found (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "yes", "--appendfsync", fsync, "--dir", str(directory)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(lambda: can_connect(port), 10, "redis-server")
    return process, port


def start_nodes(count: int, store: list[str], config: Path, workdir: Path) -> tuple[list, list[int]]:
    """``count`` nodes with the store options ``store``; node i pinned to CPU i."""
    processes, ports = [], []
    cpus = os.cpu_count() or 1
    for i in range(count):
        port = free_port()
        log = open(workdir / f"node{i}.log", "ab")
        process = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "spartan", "--port", f"tcp:{port}:interface=127.0.0.1",
             "--config", str(config), *store, *LIMITS_OFF,
             "--node-name", f"bench{i}", "--message-log", "off",
             "--max-pending", str(64 << 20)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()  # the node has its own copy
        os.sched_setaffinity(process.pid, {i % cpus})
        processes.append(process)
        ports.append(port)
    for port in ports:
        wait_until(lambda: can_connect(port), 20, f"node on {port}")
    return processes, ports


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(processes) -> None:
    for p in processes:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)


class Client:
    def __init__(self, user: str) -> None:
        self.user = user
        self.received: list[int] = []  # ids of * MSG lines
        self.replies: asyncio.Queue[str] = asyncio.Queue()
        self.expected = 0
        self.done = asyncio.Event()

    async def connect(self, port: int) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        await self.reader.readline()  # * HELLO
        self.task = asyncio.ensure_future(self.read())
        self.writer.write(f"LOGIN {self.user}\r\n".encode())
        reply = await self.replies.get()
        assert reply.startswith("OK LOGIN"), reply

    async def read(self) -> None:
        # Whole chunks, scanned by two regular expressions: a readline() per line would make
        # this process, not the server, the limit of a fan-out run.
        rest = b""
        while True:
            data = await self.reader.read(1 << 16)
            if not data:
                return
            data = rest + data
            end = data.rfind(b"\n") + 1
            data, rest = data[:end], data[end:]
            ids = _MSG_ID.findall(data)
            if ids:
                self.received.extend(map(int, ids))
                if len(self.received) >= self.expected > 0:
                    self.done.set()
            for reply in _REPLY.findall(data):
                self.replies.put_nowait(reply.decode())

    async def send_many(self, target: str, count: int) -> list[int]:
        """Pipelined SENDs, at most WINDOW unanswered; the ids of the stored messages."""
        ids, sent = [], 0
        while len(ids) < count:
            while sent < count and sent - len(ids) < WINDOW:
                self.writer.write(f"SEND {target} m{sent} from {self.user}\r\n".encode())
                sent += 1
            reply = await self.replies.get()
            assert reply.startswith("OK SENT"), reply
            ids.append(int(reply.split()[2]))
        return ids

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def fan_out(ports: list[int], total: int) -> tuple[float, int]:
    members = [Client(f"u{i}") for i in range(GROUP)]
    for i, client in enumerate(members):
        await client.connect(ports[i % len(ports)])
    senders = members[:SENDERS]
    per_sender = total // SENDERS
    for client in members:
        client.expected = per_sender * (SENDERS - (1 if client in senders else 0))
    started = time.perf_counter()
    sent = await asyncio.gather(*(c.send_many("#all", per_sender) for c in senders))
    await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in members)), 120)
    elapsed = time.perf_counter() - started
    all_ids = {i for ids in sent for i in ids}
    for client in members:
        own = set(sent[senders.index(client)]) if client in senders else set()
        assert len(client.received) == len(set(client.received)), f"{client.user}: duplicates"
        assert set(client.received) == all_ids - own, f"{client.user}: missing or extra"
    deliveries = sum(len(c.received) for c in members)
    for client in members:
        client.close()
    return deliveries / elapsed, deliveries


async def one_to_one(ports: list[int], total: int) -> tuple[float, int]:
    senders = [Client(f"u{2 * i}") for i in range(PAIRS)]
    receivers = [Client(f"u{2 * i + 1}") for i in range(PAIRS)]
    per_pair = total // PAIRS
    for i, (s, r) in enumerate(zip(senders, receivers)):
        await s.connect(ports[i % len(ports)])
        await r.connect(ports[(i + 1) % len(ports)])  # the other node when there are two
        r.expected = per_pair
    started = time.perf_counter()
    sent = await asyncio.gather(*(s.send_many(r.user, per_pair) for s, r in zip(senders, receivers)))
    await asyncio.wait_for(asyncio.gather(*(r.done.wait() for r in receivers)), 120)
    elapsed = time.perf_counter() - started
    for ids, r in zip(sent, receivers):
        assert r.received == ids, f"{r.user}: not exactly once, in order"
    for client in senders + receivers:
        client.close()
    return per_pair * PAIRS / elapsed, per_pair * PAIRS


LAYOUTS = (("sqlite", 1), ("redis", 1), ("redis", 2))
WORKLOADS = (("fan-out", fan_out), ("one-to-one", one_to_one))


def layout_name(store: str, count: int) -> str:
    return "SQLite, 1 node" if store == "sqlite" else f"Redis, {count} node{'s' * (count > 1)}"


def measure(store: str, count: int, workload, messages: int, fsync: str, config: Path, workdir: Path) -> dict:
    """One workload on one fresh layout: rate, units, CPU-seconds of nodes and of Redis."""
    data = Path(tempfile.mkdtemp(prefix="data-", dir=workdir))
    redis, nodes = None, []
    try:
        if store == "sqlite":
            options = ["--db", str(data / "spartan.sqlite3")]
        else:
            redis, redis_port = start_redis(data, fsync)
            options = ["--redis", f"redis://127.0.0.1:{redis_port}/0"]
        nodes, ports = start_nodes(count, options, config, data)
        watched = [p.pid for p in nodes] + ([redis.pid] if redis else [])
        before = [cpu_seconds(pid) for pid in watched] + [time.process_time()]
        wall = time.perf_counter()
        rate, units = asyncio.run(workload(ports, messages))
        wall = time.perf_counter() - wall
        after = [cpu_seconds(pid) for pid in watched] + [time.process_time()]
        used = [b - a for a, b in zip(before, after)]
        stop(nodes)  # each Redis node logs how many script calls its appends took
        calls = [
            tuple(map(int, found))
            for i in range(count)
            for found in _SCRIPT_CALLS.findall((data / f"node{i}.log").read_text(errors="replace"))
        ]
        return {
            "batch": sum(m for m, _ in calls) / sum(c for _, c in calls) if calls else None,
            "rate": rate,
            "units": units,
            "seconds": wall,
            "node_cpu": sum(used[:count]),
            "redis_cpu": used[count] if redis else 0.0,
            "load_cpu": used[-1],
        }
    finally:
        stop(nodes)
        if redis is not None:
            stop([redis])
        shutil.rmtree(data, ignore_errors=True)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000, help="messages sent per workload")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="spartan-cluster-bench-"))
    users = [f"u{i}" for i in range(max(GROUP, 2 * PAIRS))]
    config = workdir / "directory.toml"
    config.write_text(f"users = {users!r}\n[groups]\nall = {users[:GROUP]!r}\n".replace("'", '"'))
    load_before = os.getloadavg()
    results: dict = {}  # (layout, workload) -> one dict per run
    for run in range(args.runs):
        for store, count in LAYOUTS:
            for name, workload in WORKLOADS:
                r = measure(store, count, workload, args.messages, args.fsync, config, workdir)
                results.setdefault((layout_name(store, count), name), []).append(r)
                per_k = 1000 / args.messages
                print(
                    f"run {run + 1} {layout_name(store, count):15} {name:10} {r['rate']:10.0f}/s"
                    f"  CPU-s per 1k msgs: nodes {r['node_cpu'] * per_k:.3f}"
                    f" redis {r['redis_cpu'] * per_k:.3f}  load generator {r['load_cpu'] / r['seconds']:.0%}",
                    flush=True,
                )
    load_after = os.getloadavg()
    shutil.rmtree(workdir, ignore_errors=True)
    summary = summarize(results, args.messages)
    print()
    print(
        f"{args.runs} runs of {args.messages} messages per workload; AOF fsync {args.fsync}; "
        f"{os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print("| layout | workload | rate (median, exactly-once checked) | x SQLite | node CPU-s / 1k msgs "
          "| x SQLite | Redis CPU-s / 1k msgs | load generator CPU-s / 1k msgs |")
    print("|---|---|---|---|---|---|---|---|")
    for row in summary:
        unit = "deliveries/s" if row["workload"] == "fan-out" else "msgs/s"
        print(
            f"| {row['layout']} | {row['workload']} | {row['rate']:,.0f} {unit} | {row['rate_ratio']:.2f} "
            f"| {row['node_cpu_per_k']:.3f} | {row['node_cpu_ratio']:.2f} | {row['redis_cpu_per_k']:.3f} "
            f"| {row['load_cpu_per_k']:.3f} |"
        )
    model = capacity_model(summary)
    print()
    print("Capacity model (docs/cluster.md): one CPU per node, one for Redis; messages/s")
    print("| workload | node CPU/msg a | + per extra node x | Redis CPU/msg r | + per extra node s "
          "| 1 | 2 | 4 | 8 | 16 nodes | nodes before Redis saturates | ceiling 1/x |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m in model:
        print(
            f"| {m['workload']} | {m['a'] * 1e6:.1f} µs | {m['x'] * 1e6:.1f} µs | {m['r'] * 1e6:.1f} µs "
            f"| {m['s'] * 1e6:.1f} µs | "
            + " | ".join(f"{m['throughput'][n]:,.0f}" for n in MODEL_NODES)
            + f" | {m['redis_carries']} | {m['ceiling']:,.0f} |"
        )
    print()
    print("Check: cores the measured rate implies = messages/s x CPU-s per message of nodes, Redis")
    print("and load generator (2 = this machine saturated by this benchmark alone)")
    for row in summary:
        batch = f", {row['batch']:.0f} messages per script call" if row["batch"] else ""
        print(f"  {row['layout']:15} {row['workload']:10} {row['busy_cores']:.2f} cores{batch}")
    report = {"model": model, "messages": args.messages, "runs": args.runs, "fsync": args.fsync,
              "load_average": [load_before, load_after], "summary": summary,
              "raw": {f"{k[0]} / {k[1]}": v for k, v in results.items()}}  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


def summarize(results: dict, messages: int) -> list[dict]:
    """Medians per layout and workload, and per-run ratios to the SQLite node's run."""
    rows = []
    for (layout, workload), runs in results.items():
        base = results[(layout_name("sqlite", 1), workload)]
        rows.append({
            "layout": layout,
            "workload": workload,
            "rate": statistics.median(r["rate"] for r in runs),
            "rate_ratio": statistics.median(r["rate"] / b["rate"] for r, b in zip(runs, base)),
            "node_cpu_per_k": statistics.median(r["node_cpu"] for r in runs) * 1000 / messages,
            "node_cpu_ratio": statistics.median(r["node_cpu"] / b["node_cpu"] for r, b in zip(runs, base)),
            "redis_cpu_per_k": statistics.median(r["redis_cpu"] for r in runs) * 1000 / messages,
            "load_cpu_per_k": statistics.median(r["load_cpu"] for r in runs) * 1000 / messages,
            "batch": statistics.median([r["batch"] for r in runs if r["batch"]] or [0]),
            "busy_cores": statistics.median(
                (r["node_cpu"] + r["redis_cpu"] + r["load_cpu"]) / r["seconds"] for r in runs
            ),
        })  # fmt: skip
    return rows


MODEL_NODES = (1, 2, 4, 8, 16)


def capacity_model(summary: list[dict]) -> list[dict]:
    """Throughput for N nodes from CPU per message (docs/cluster.md states the model).

    a: node CPU per message with one node; x: what each further node adds per message
    (every node decodes every batch); r: Redis CPU per message with one node; s: what each
    further node adds to it.  With a core per node and one for Redis, N nodes carry
    N / (a + (N-1) x) messages/s and Redis r + (N-1) s per message: the lower bound wins.
    """
    rows = {(row["layout"], row["workload"]): row for row in summary}
    model = []
    for workload, _ in WORKLOADS:
        one, two = rows[layout_name("redis", 1), workload], rows[layout_name("redis", 2), workload]
        a, r = one["node_cpu_per_k"] / 1000, one["redis_cpu_per_k"] / 1000
        x = max(two["node_cpu_per_k"] / 1000 - a, 0.0)
        s = max(two["redis_cpu_per_k"] / 1000 - r, 0.0)

        def nodes_bound(n):
            return n / (a + (n - 1) * x)

        def redis_bound(n):
            return 1 / (r + (n - 1) * s) if r + (n - 1) * s > 0 else float("inf")

        carries = 1
        while carries < 1000 and nodes_bound(carries + 1) <= redis_bound(carries + 1):
            carries += 1
        model.append({
            "workload": workload, "a": a, "x": x, "r": r, "s": s,
            "throughput": {n: min(nodes_bound(n), redis_bound(n)) for n in MODEL_NODES},
            "redis_carries": carries,
            "ceiling": 1 / x if x > 0 else float("inf"),
        })  # fmt: skip
    return model


if __name__ == "__main__":
    main()
