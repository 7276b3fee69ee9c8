"""
Replacing a file so that a reader sees the old one or the new one, never half of one.

The new content is written to a temporary file in the same folder (so the rename stays on
one filesystem), flushed to disk, then renamed over the old name with ``os.replace``, and
the folder is flushed too so that the rename itself survives a power cut.  A failure
removes the temporary file and leaves the old one as it was.  The directory file edited
by ``spartan-admin`` and the database backup both go through here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yield the name of a new, empty temporary file beside ``path``; once the block ends
    without an exception, that file is flushed to disk and becomes ``path``."""
    path = os.path.realpath(path)  # a symlink stays a symlink: replace what it points to
    folder, name = os.path.split(path)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield temporary
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    try:  # the rename itself, on disk
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
