"""A store that is slow on demand, for tests of what the core and the front ends do while a
message waits for the store."""

from __future__ import annotations

from spartan.store.memory import MemoryStore


class HeldStore(MemoryStore):
    """A `MemoryStore` whose appends wait while ``holding`` is set, until `release` (stored,
    in order) or `fail` (each receiver fails with ``reason``)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.holding = False
        self.held: list[tuple] = []

    def append_to(self, *args) -> None:
        if self.holding:
            self.held.append(args)
        else:
            super().append_to(*args)

    def release(self) -> None:
        held, self.held = self.held, []
        with self.output_batch:
            for args in held:
                super().append_to(*args)

    def fail(self, reason) -> None:
        held, self.held = self.held, []
        with self.output_batch:
            for args in held:
                args[-1].failed(reason)
