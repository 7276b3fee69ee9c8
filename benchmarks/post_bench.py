"""
The chat core's cost per message, with no sockets and no disk: `Session.post` to the
in-memory store, one-to-one and to a group of four online members, per-message log off.
It prints the best CPU time per post of several rounds.

    .venv/bin/python benchmarks/post_bench.py                 # the Spartan this venv imports
    .venv/bin/python benchmarks/post_bench.py --checkout DIR  # another checkout (git archive)

Run both, alternating, to see what a change to the core's hot path costs (the counters
the metrics read cost an addition or two per message: docs/operations.md).
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--checkout", help="import Spartan from this directory instead")
    parser.add_argument("--posts", type=int, default=100_000, help="posts per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if args.checkout:
        sys.path.insert(0, args.checkout)

    from twisted.internet.task import Clock

    import spartan
    from spartan.core.chat import Chat
    from spartan.core.directory import DEMO
    from spartan.store.memory import MemoryStore

    class Client:
        def receive(self, delivery) -> None:
            pass

    class Reply:
        def sent(self, message) -> None:
            pass

        def refused(self, reason) -> None:
            raise AssertionError(reason)

    chat = Chat(DEMO, MemoryStore(max_per_conversation=1000), Clock(), message_log="off")
    chat.start()
    sessions = {}
    for user in ("alice", "bob", "charlie", "eve"):  # group1's members, all online
        chat.login(user, None, Client()).addCallback(lambda s, user=user: sessions.update({user: s}))
    alice, reply = sessions["alice"], Reply()
    figures = {}
    for kind, target in (("one-to-one", "bob"), ("group", "#group1")):
        best = float("inf")
        for _ in range(args.rounds):
            started = time.process_time()
            for _ in range(args.posts):
                alice.post(target, "hello", None, reply)
            best = min(best, time.process_time() - started)
        figures[kind] = best / args.posts * 1e6
    where = spartan.__file__.rsplit("/spartan/", 1)[0]
    print(f"{where}: " + ", ".join(f"{kind} {us:.3f} µs per post" for kind, us in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
