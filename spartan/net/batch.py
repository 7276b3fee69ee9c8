"""
One write per connection per turn: the output batch.

While a batch is open, what connections write is gathered, and when the outermost batch
closes each connection that has output writes it all at once.  A read of 64 SENDs to a
group of 50 members is 50 writes instead of 3,200, and a commit of the store answers a
whole batch of senders and recipients the same way.  Batches nest (a store's commit may
fire inside a read); only the outermost one writes.

The service makes one `OutputBatch` and gives it to every listener's factory and to the
store, which opens it around the results of a commit:

    with batch:
        ...  # connections write; nothing goes out yet
    # every connection with output has written it, once
"""

from __future__ import annotations

from typing import Protocol


class Gathering(Protocol):
    def flush(self) -> None:
        """Write what was gathered, as one write."""


class OutputBatch:
    __slots__ = ("depth", "_waiting")

    def __init__(self) -> None:
        self.depth = 0  # open batches; output is gathered while above 0
        self._waiting: list[Gathering] = []

    def __enter__(self) -> OutputBatch:
        self.depth += 1
        return self

    def __exit__(self, *exc_info) -> None:
        self.depth -= 1
        if self.depth == 0 and self._waiting:
            waiting, self._waiting = self._waiting, []
            for connection in waiting:
                connection.flush()

    def add(self, connection: Gathering) -> None:
        """``connection`` has started gathering output: flush it when the batch closes."""
        self._waiting.append(connection)
