"""
One node versus two, over one Redis: fan-out and one-to-one throughput, exactly-once checked.

    python benchmarks/cluster_bench.py [--messages 2000] [--fsync always|everysec]

Self-contained: starts its own ``redis-server`` (AOF on) on a free loopback port, then for
each layout (one node; two nodes) starts real ``twistd spartan --redis`` nodes and drives
them with an asyncio load generator that pipelines ``SEND`` lines (a window of outstanding
replies per sender).  The two nodes listen on two ports rather than sharing one with
``--reuse-port``, so that the clients are split evenly and one-to-one messages always
cross nodes (the kernel's SO_REUSEPORT hashing would split them only roughly).

* fan-out: ``GROUP`` users in one group, each in one session; ``SENDERS`` of them send
  ``--messages`` messages in total to the group; every member but the sender must receive
  every message exactly once.  Rate = deliveries (``* MSG`` lines received) per second.
* one-to-one: ``PAIRS`` pairs; each sender sends ``--messages / PAIRS`` messages to its
  partner, which sits on the other node when there are two.  Rate = messages per second,
  from the first SEND to the last ``* MSG`` received.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import LIMITS_OFF  # noqa: E402  (benchmarks/ is this script's directory)

GROUP, SENDERS, PAIRS, WINDOW = 40, 4, 20, 64
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


def start_nodes(count: int, redis_port: int, config: Path, workdir: Path) -> tuple[list, list[int]]:
    processes, ports = [], []
    for i in range(count):
        port = free_port()
        log = open(workdir / f"node{i}.log", "ab")
        processes.append(
            subprocess.Popen(
                [TWISTD, "-n", "--pidfile=", "spartan", "--port", f"tcp:{port}:interface=127.0.0.1",
                 "--config", str(config), "--redis", f"redis://127.0.0.1:{redis_port}/0", *LIMITS_OFF,
                 "--node-name", f"bench{i}", "--message-log", "off",
                 "--max-pending", str(64 << 20)],
                cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        )
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
        while True:
            line = await self.reader.readline()
            if not line:
                return
            if line.startswith(b"* MSG "):
                self.received.append(int(line.split(b" ", 3)[2]))
                if len(self.received) >= self.expected > 0:
                    self.done.set()
            elif not line.startswith(b"*"):
                await self.replies.put(line.decode().rstrip())

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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--fsync", choices=["always", "everysec"], default="always")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="spartan-cluster-bench-"))
    users = [f"u{i}" for i in range(max(GROUP, 2 * PAIRS))]
    config = workdir / "directory.toml"
    config.write_text(f"users = {users!r}\n[groups]\nall = {users[:GROUP]!r}\n".replace("'", '"'))
    rows = []
    for count in (1, 2):
        for name, workload in (("fan-out", fan_out), ("one-to-one", one_to_one)):
            data = workdir / f"redis-{count}-{name}"
            data.mkdir()
            redis, redis_port = start_redis(data, args.fsync)
            nodes = []
            try:
                nodes, ports = start_nodes(count, redis_port, config, workdir)
                before = [cpu_seconds(p.pid) for p in [redis, *nodes]] + [time.process_time()]
                wall = time.perf_counter()
                rate, units = asyncio.run(workload(ports, args.messages))
                wall = time.perf_counter() - wall
                after = [cpu_seconds(p.pid) for p in [redis, *nodes]] + [time.process_time()]
                busy = [(b - a) / wall for a, b in zip(before, after)]
                cpu = f"redis {busy[0]:.0%}, nodes {'+'.join(f'{x:.0%}' for x in busy[1:-1])}, load {busy[-1]:.0%}"
                rows.append((count, name, units, rate, cpu))
                print(f"{count} node(s) {name:10} {units:7d} {rate:10.0f}/s  CPU: {cpu}", flush=True)
            finally:
                stop(nodes)
                stop([redis])
    print()
    print(f"AOF fsync {args.fsync}, {os.cpu_count()} cores; CPU = share of one core while running")
    print("| nodes | workload | count | rate (exactly-once checked) | CPU |")
    print("|---|---|---|---|---|")
    for count, name, units, rate, cpu in rows:
        unit = "deliveries/s" if name == "fan-out" else "messages/s"
        print(f"| {count} | {name} | {units} | {rate:,.0f} {unit} | {cpu} |")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
