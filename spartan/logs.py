"""
Logs for collectors: one JSON object a line instead of twistd's text.

twistd picks its log observer before it builds the service, from ``--logger``, the dotted
name of a zero-argument factory: `json_observer` is that factory.  ``twistd spartan
--log-format json`` names it for the operator (see `spartan.tap`).

Each object is Twisted's own serialisation of the event (``log_time``, ``log_level``,
``log_namespace``, ``log_format`` and the event's fields), plus ``text``: the line the text
log would have shown, so that a collector need not know Twisted's format strings.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, formatEvent, jsonFileLogObserver
from zope.interface import provider

JSON_OBSERVER = f"{__name__}.json_observer"


def json_observer() -> ILogObserver:
    """Every event as one line of JSON on standard output (journald, a container's log)."""
    # sys.stdout here is still the real one: twistd redirects it into the log afterwards.
    write_json = jsonFileLogObserver(sys.stdout, recordSeparator="")

    @provider(ILogObserver)
    def observe(event: dict) -> None:
        write_json({**event, "text": formatEvent(event)})  # a copy: other observers share it

    return observe
