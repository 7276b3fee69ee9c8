"""
CPU time per message through the server's own code, in one process: for comparing two
checkouts, or two front ends, on a machine that is too busy for throughput figures.

    .venv/bin/python benchmarks/cpu_bench.py                       # this checkout
    .venv/bin/python benchmarks/cpu_bench.py --against /tmp/base   # and another, alternating

The chat core and the protocols run over `StringTransport` with the in-memory store and a
`task.Clock`: no sockets, no reactor, no disk, so what is measured is the Python a message
costs (parsing, the core, encoding, batching), in CPU time (`time.process_time`), which a
busy machine disturbs far less than it disturbs throughput.  Fan-out: five of 50 members of
a group send 64 lines per read; one-to-one: 20 users in pairs, 32 lines per read.  Each
figure is the best of several rounds.  A checkout from before the IRC gateway shared the
connection layer is measured natively only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

MEMBERS = [f"f{i}" for i in range(50)]
PAIRS = [f"d{i}" for i in range(20)]


def measure(rounds: int, scale: float = 1.0) -> dict:
    """Run in the checkout on sys.path: ns of CPU per delivery (fan-out) and per message."""
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    try:
        from spartan.core.chat import Chat
        from spartan.core.directory import Directory
        from spartan.native.protocol import NativeFactory
    except ImportError:  # a checkout from before the folders by layer
        from spartan.chat import Chat
        from spartan.directory import Directory
        from spartan.server import SpartanFactory as NativeFactory
    from spartan.store.memory import MemoryStore

    directory = Directory(users=tuple(MEMBERS + PAIRS), groups={"fan": tuple(MEMBERS)})
    clock = Clock()
    clock.advance(1_790_000_000.0)
    chat = Chat(directory, MemoryStore(), clock, message_log="off")
    chat.start()
    factories = {"native": NativeFactory(chat)}
    try:
        from spartan.irc import IRCGatewayFactory
        from spartan.net.connection import ConnectionFactory

        if issubclass(IRCGatewayFactory, ConnectionFactory):
            factories["irc"] = IRCGatewayFactory(chat, batch=factories["native"].batch)
    except ImportError:
        pass

    def connect(protocol_name: str, user: str):
        protocol = factories[protocol_name].buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        if protocol_name == "native":
            protocol.dataReceived(f"LOGIN {user}\n".encode())
        else:
            protocol.dataReceived(f"NICK {user}\r\nUSER {user} 0 * :{user}\r\nJOIN #fan\r\n".encode())
        clock.advance(0)
        transport.clear()
        return protocol, transport

    def send_line(protocol_name: str, target: str, text: str) -> bytes:
        if protocol_name == "native":
            return f"SEND {target} {text}\n".encode()
        return f"PRIVMSG {target} :{text}\r\n".encode()

    def drive(connections, reads: int, data_for, clear_every: int) -> float:
        """CPU seconds for ``reads`` reads, each ``data_for(i)`` into one connection."""
        start = time.process_time()
        for i in range(reads):
            index, data = data_for(i)
            connections[index][0].dataReceived(data)
            if i % clear_every == clear_every - 1:
                clock.advance(0.05)  # the IRC acknowledgements run
                for _, transport in connections:
                    transport.clear()
        spent = time.process_time() - start
        for protocol, _ in connections:
            protocol.connectionLost(None)
        return spent

    def fanout(protocol_name: str, reads: int) -> float:
        members = [connect(protocol_name, user) for user in MEMBERS]
        data = b"".join(send_line(protocol_name, "#fan", f"hello world {i}") for i in range(64))
        spent = drive(members, reads, lambda i: (i % 5, data), 10)
        return spent / (reads * 64 * (len(MEMBERS) - 1)) * 1e9

    def direct(protocol_name: str, reads: int) -> float:
        users = [connect(protocol_name, user) for user in PAIRS]
        data = [
            b"".join(
                send_line(protocol_name, PAIRS[k + 1 if k % 2 == 0 else k - 1], f"hi there {i}")
                for i in range(32)
            )
            for k in range(len(PAIRS))
        ]
        spent = drive(users, reads, lambda i: (i % len(PAIRS), data[i % len(PAIRS)]), 20)
        return spent / (reads * 32) * 1e9

    figures = {}
    for name in factories:
        reads = max(1, int(200 * scale)), max(1, int(2000 * scale))
        figures[f"{name} fan-out ns/delivery"] = min(fanout(name, reads[0]) for _ in range(rounds))
        figures[f"{name} one-to-one ns/message"] = min(direct(name, reads[1]) for _ in range(rounds))
    return figures


def run_in(checkout: str, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout)}
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--measure", "--rounds", str(rounds)],
        env=env, cwd="/", capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--against", help="another checkout (e.g. `git archive` of a commit)")
    parser.add_argument("--runs", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per run (best is kept)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.rounds)))
        return
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    checkouts = {"this": here} | ({"other": args.against} if args.against else {})
    results: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.runs):
        for name, path in checkouts.items():
            results[name].append(run_in(path, args.rounds))
    print(f"CPU per message, best of {args.rounds} rounds, median of {args.runs} runs")
    for figure in results["this"][0]:
        values = {name: sorted(r[figure] for r in runs if figure in r) for name, runs in results.items()}
        medians = {name: v[len(v) // 2] for name, v in values.items() if v}
        line = "  ".join(f"{name} {m:8.1f}" for name, m in medians.items())
        if len(medians) == 2:
            line += f"  this/other {medians['this'] / medians['other']:.2f}"
        print(f"{figure:32} {line}")
    if "irc fan-out ns/delivery" in results["this"][0]:
        this = {f: sorted(r[f] for r in results["this"])[len(results["this"]) // 2] for f in results["this"][0]}
        print(f"IRC / native CPU: fan-out {this['irc fan-out ns/delivery'] / this['native fan-out ns/delivery']:.2f}, "
              f"one-to-one {this['irc one-to-one ns/message'] / this['native one-to-one ns/message']:.2f}")


if __name__ == "__main__":
    main()
