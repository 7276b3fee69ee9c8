"""
Messages per second stored and delivered: the in-memory store against the SQLite store.

Not a test.  Runs the real server protocol and chat core over in-memory transports (no
sockets, so the figure is the server's own work), once per store, interleaved, several
times, and prints the medians and the ratios (results: docs/performance.md)::

    .venv/bin/python benchmarks/store_bench.py [--messages 30000] [--repeat 5] [--gc0 N] [--switch S] [--one-cpu 0]

Workload: three senders (alice, charlie, eve) each keep up to ``--window`` SENDs
outstanding, writing ``--burst`` lines per reactor turn while their window has room (as a
pipelining client's lines arrive over a socket); every SEND carries a client id.  Half go
to bob, half to #group1 (alice, bob, charlie, eve), so a message reaches one or three
sessions.  A run ends when every SEND is answered ``OK SENT`` and every ``* MSG`` has been
written.

Stores: ``memory`` (answers at once), ``next-turn`` (the in-memory store answering one
reactor turn later: the cost of being asynchronous at all, in the core and the server),
``sqlite-full`` and ``sqlite-normal`` (the durable store, with each ``--sync``).  Each
run is a fresh process, so no run inherits another's heap; the first round is a warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import run  # benchmarks/ is this script's directory: its machine() description

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import defer, error, task  # noqa: E402
from twisted.internet.address import IPv4Address  # noqa: E402
from twisted.internet.testing import StringTransport  # noqa: E402
from twisted.logger import globalLogBeginner  # noqa: E402
from twisted.python import failure  # noqa: E402

from spartan import interpreter  # noqa: E402
from spartan.core.chat import LOG_OFF, Chat  # noqa: E402
from spartan.core.directory import DEMO  # noqa: E402
from spartan.native.protocol import NativeFactory  # noqa: E402
from spartan.store.memory import MemoryStore  # noqa: E402
from spartan.store.sqlite import SQLiteStore  # noqa: E402

SENDERS = ("alice", "charlie", "eve")  # members of group1, like bob
RECEIVERS = ("bob",)


class CountingTransport(StringTransport):
    """Counts replies and pushed messages instead of keeping the bytes."""

    def __init__(self, run: Run) -> None:
        super().__init__(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.run = run
        self.sent = 0
        self.delivered = 0

    def write(self, data: bytes) -> None:
        sent = data.count(b"OK SENT ")
        self.delivered += data.count(b"* MSG ")
        if sent:
            self.sent += sent
            self.run.replies_came(self)
        elif b"ERR " in data:
            raise SystemExit(f"the server answered an error: {data[:200]!r}")

    def writeSequence(self, seq) -> None:
        self.write(b"".join(seq))


class NextTurnMemoryStore(MemoryStore):
    """The in-memory store, answering appends one reactor turn later, all at once.

    Not a store to use: a yardstick.  It costs nothing but being asynchronous, so it
    shows what the chat core and the server spend on a store that answers later, as
    every durable store must; the SQLite store's own cost is the rest.  Like
    `SQLiteStore` it answers a turn's appends together, inside ``output_batch``.
    """

    def __init__(self, reactor) -> None:
        super().__init__()
        self._reactor = reactor
        self._waiting: list = []
        self._call = None

    def append_to(self, conversation, sender, text, timestamp, client_id, receiver) -> None:
        result = self._append(conversation, sender, text, timestamp, client_id)
        self._waiting.append((result, receiver))
        if self._call is None:
            self._call = self._reactor.callLater(0, self._answer)

    def _answer(self) -> None:
        self._call = None
        waiting, self._waiting = self._waiting, []
        with self.output_batch:
            for (message, is_new), receiver in waiting:
                receiver.appended(message, is_new)


class Run:
    """One measured run: drive the senders until everything is stored and delivered."""

    def __init__(self, reactor, store, messages: int, window: int, burst: int) -> None:
        self.reactor = reactor
        self.store = store
        self.per_sender = messages // len(SENDERS)
        self.window, self.burst = window, burst
        self.chat = Chat(DEMO, store, reactor, message_log=LOG_OFF)
        self.factory = NativeFactory(self.chat)
        store.output_batch = self.factory.batch  # as spartan.tap wires it
        self.written: dict[CountingTransport, int] = {}
        self.senders: dict[CountingTransport, object] = {}
        self.receivers: list[CountingTransport] = []
        self.protocols: list = []
        self.done: defer.Deferred[None] = defer.Deferred()
        self.scheduled = None
        self.expected_deliveries = 0

    def connect(self, user: str) -> tuple[object, CountingTransport]:
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = CountingTransport(self)
        protocol.makeConnection(transport)
        self.protocols.append(protocol)
        protocol.dataReceived(f"LOGIN {user}\n".encode())
        return protocol, transport

    @defer.inlineCallbacks
    def execute(self):
        yield self.chat.start()
        try:
            for user in SENDERS:
                protocol, transport = self.connect(user)
                self.senders[transport] = (user, protocol)
                self.written[transport] = 0
            for user in RECEIVERS:
                protocol, transport = self.connect(user)
                self.receivers.append(transport)
            yield defer.succeed(None)
            started = time.perf_counter()
            self.turn()
            yield self.done
            elapsed = time.perf_counter() - started
            delivered = sum(t.delivered for t in list(self.senders) + self.receivers)
            assert delivered == self.expected_deliveries, (delivered, self.expected_deliveries)
        finally:
            if self.scheduled is not None:
                self.scheduled.cancel()
            for protocol in self.protocols:
                protocol.connectionLost(failure.Failure(error.ConnectionDone()))
            yield self.chat.stop()
        return elapsed, delivered

    def replies_came(self, transport) -> None:
        if self.scheduled is None:
            self.scheduled = self.reactor.callLater(0, self.turn)

    def turn(self) -> None:
        """One reactor turn of client traffic: each sender writes a burst if it may."""
        self.scheduled = None
        finished = True
        wrote = False
        for transport, (user, protocol) in self.senders.items():
            written = self.written[transport]
            if transport.sent < self.per_sender:
                finished = False
            room = min(self.window - (written - transport.sent), self.per_sender - written, self.burst)
            if room <= 0:
                continue
            wrote = True
            lines = []
            for i in range(written, written + room):
                if i % 2:
                    lines.append(f"SEND id={user}-{i} bob message {i} from {user}\n")
                    self.expected_deliveries += 1  # bob
                else:
                    lines.append(f"SEND id={user}-{i} #group1 message {i} from {user}\n")
                    self.expected_deliveries += 3  # the other members
            self.written[transport] = written + room
            protocol.dataReceived("".join(lines).encode())
        if finished and not self.done.called:
            self.done.callback(None)
        elif wrote and self.scheduled is None:
            # Clients keep writing while their window has room, replies or not; when
            # every window is full, the next turn waits for replies (replies_came).
            self.scheduled = self.reactor.callLater(0, self.turn)


def machine() -> str:
    return f"{run.machine()}, SQLite {sqlite3.sqlite_version}"


@defer.inlineCallbacks
def measure(reactor, args):
    """The child: one run of one store, printed as a JSON line."""
    # Logging must begin, or Twisted keeps every event (and the Chat each names) in memory.
    globalLogBeginner.beginLoggingTo([lambda event: None], redirectStandardIO=False)
    interpreter.tune_for_serving(args.gc0, args.switch)
    if args.child == "memory":
        store = MemoryStore()
    elif args.child == "next-turn":
        store = NextTurnMemoryStore(reactor)
    else:
        store = SQLiteStore(args.db, reactor=reactor, sync=args.child.split("-")[1])
    run = Run(reactor, store, args.messages, args.window, args.burst)
    elapsed, delivered = yield run.execute()
    result = {
        "rate": run.per_sender * len(SENDERS) / elapsed,
        "elapsed": elapsed,
        "deliveries": delivered,
        "commits": getattr(store, "transactions", None),
    }
    print(json.dumps(result))


def main(args) -> None:
    """The parent: every store in turn, each run in a fresh process, so that no run
    inherits another's heap or garbage (CPython's collector is a large part of the cost)."""
    directory = tempfile.mkdtemp(prefix="spartan-bench-", dir=args.dir)
    kinds = ["memory", "next-turn"] + [f"sqlite-{sync}" for sync in args.sync]
    figures: dict[str, list[float]] = {kind: [] for kind in kinds}
    gc0, switch = args.gc0, args.switch
    try:
        print(f"# {machine()}, {time.strftime('%Y-%m-%d %H:%M %Z')}")
        cpus = f"CPU {args.one_cpu} only" if args.one_cpu is not None else "unpinned"
        print(f"# {args.messages} messages per run, window {args.window}, burst {args.burst}, {cpus}, "
              f"{args.repeat} runs per store, gc threshold {gc0}, switch interval {switch * 1000:g} ms, "
              f"databases in {directory}")
        for repetition in range(args.repeat + 1):  # the first round warms up and is not counted
            for kind in kinds:
                path = os.path.join(directory, f"{kind}-{repetition}.sqlite3")
                command = [
                    sys.executable, os.path.abspath(__file__), "--child", kind, "--db", path,
                    "--messages", str(args.messages), "--window", str(args.window),
                    "--burst", str(args.burst), "--gc0", str(gc0), "--switch", str(switch),
                ]
                pin = (lambda: os.sched_setaffinity(0, {args.one_cpu})) if args.one_cpu is not None else None
                done = subprocess.run(command, capture_output=True, text=True, timeout=600, preexec_fn=pin)
                if done.returncode != 0:
                    raise SystemExit(f"{kind} run failed:\n{done.stdout}{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                extra = f", {result['commits']} commits" if result["commits"] is not None else ""
                label = "warm-up" if repetition == 0 else f"run {repetition}"
                print(f"{label:8} {kind:14} {result['rate']:9.0f} messages/s "
                      f"({result['deliveries']} deliveries, {result['elapsed']:.2f} s{extra})", flush=True)
                if repetition:
                    figures[kind].append(result["rate"])
                if os.path.exists(path):
                    os.remove(path)
        print()
        memory = statistics.median(figures["memory"])
        print(f"median   {'memory':14} {memory:9.0f} messages/s")
        for kind in kinds[1:]:
            median = statistics.median(figures[kind])
            print(f"median   {kind:14} {median:9.0f} messages/s   ratio to memory {median / memory:.2f}")
        print("(next-turn: the in-memory store answering one reactor turn later -- the cost of")
        print(" any asynchronous store in the chat core and server, not a store to use)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--window", type=int, default=200, help="outstanding SENDs per sender")
    parser.add_argument("--burst", type=int, default=50, help="SENDs a sender writes per turn")
    parser.add_argument("--sync", nargs="+", default=["full", "normal"], choices=["full", "normal"])
    parser.add_argument("--gc0", type=int, default=interpreter.GC_THRESHOLD[0],
                        help="CPython's generation-0 collection threshold (default: the server's, "
                             "spartan.interpreter; the interpreter's own is 700)")
    parser.add_argument("--switch", type=float, default=interpreter.SWITCH_INTERVAL,
                        help="CPython's thread switch interval in seconds (default: the server's; "
                             "the interpreter's own is 0.005)")
    parser.add_argument("--one-cpu", type=int, default=None, metavar="CPU",
                        help="run each store on this one CPU only, worker thread included "
                             "(default: unpinned, so the store's worker has the second CPU)")
    parser.add_argument("--dir", default=None, help="where the database files go (default: the temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args(sys.argv[1:])
    if arguments.child:
        task.react(measure, (arguments,))
    else:
        main(arguments)
