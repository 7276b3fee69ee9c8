"""
How fast the terminal client's line editor takes a paste: ``python benchmarks/client_paste.py``.

A paste goes through the whole input path of a terminal session without the terminal:
insults' key parser, the UTF-8 decoder, the editor and the drawing of the line after each
read (``ConsoleTerminal`` on a `StringTransport`, 200 columns).  It prints, for each size,
the time from the first byte to the line entered, and the bytes written to the screen.
The line entered must be exactly what was pasted, or it exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import time

from twisted.internet.testing import StringTransport

from spartan.client.console import ConsoleTerminal
from spartan.client.flow import Prompt

READ = 4096  # bytes a read from a pty gives at most


def paste(size: int, columns: int = 200) -> tuple[float, int]:
    """Seconds to take a paste of ``size`` bytes and Enter, and the bytes drawn."""
    entered: list[list[str]] = []
    console = ConsoleTerminal(
        entered.append, lambda: None, lambda: None, stdin_fd=None, columns=lambda: columns
    )
    reader = console.stdio_protocol()
    screen = StringTransport()
    reader.makeConnection(screen)
    console.show([Prompt("[alice] > ")])
    words = "wörd 日本 e\u0301 ok " * (size // 10 + 1)
    text = words.encode()[:size].decode("utf-8", "ignore")  # whole characters only
    data = text.encode() + b"\r"
    start = time.perf_counter()
    for at in range(0, len(data), READ):  # bounded by the paste
        reader.dataReceived(data[at : at + READ])
    took = time.perf_counter() - start
    if entered != [[text]]:
        raise SystemExit(f"the line entered is not what was pasted ({size} bytes)")
    return took, len(screen.value())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument(
        "--sizes", default="10240,102400,1048576", help="paste sizes in bytes, comma-separated"
    )
    options = parser.parse_args(argv)
    for size in (int(s) for s in options.sizes.split(",")):
        took, drawn = paste(size)
        print(
            f"paste {size:>8} bytes: {took * 1000:8.1f} ms, {size / took / 1e6:5.2f} MB/s,"
            f" {drawn} bytes drawn"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
