"""
What cluster nodes tell each other on the message channel: a batch of stored messages.

Theory of operation
-------------------
* A node publishes once per store batch, not once per message: the payload is the node's
  name and the batch's messages, as one JSON array
  ``[node, [[id, timestamp, conversation, sender, text], ...]]``.  Arrays, not objects,
  keep the field names off the wire; `json` encodes and decodes the whole batch in one C
  call each, which is what made a per-message JSON object expensive (a Python call per
  message) cheap per batch.  Client ids are not sent: deliveries do not show them.
* Nothing here does I/O, and `decode_batch` never raises: anything that is not a
  well-formed batch comes back as None, and the caller logs and drops it.
"""

from __future__ import annotations

import json

from spartan.store import StoredMessage

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_batch(node: str, messages: list[StoredMessage]) -> str:
    return _encode(
        [node, [[m.id, m.timestamp, m.conversation, m.sender, m.text] for m in messages]]
    )


def batch_prefix(node: str) -> str:
    """How every batch ``node`` publishes starts: a node skips its own batches (it has
    delivered them already) by this test, without decoding them."""
    return _encode([node])[:-1] + ","


def decode_batch(data: str | bytes) -> tuple[str, list[StoredMessage]] | None:
    """``(node, messages)`` from a payload, or None when it is not a batch."""
    try:
        node, rows = json.loads(data)
        if type(node) is not str or type(rows) is not list:
            return None
        messages = []
        for id_, timestamp, conversation, sender, text in rows:
            if not (
                type(id_) is int
                and id_ > 0
                and type(timestamp) in (float, int)
                and type(conversation) is str
                and type(sender) is str
                and type(text) is str
            ):
                return None
            messages.append(StoredMessage(id_, float(timestamp), conversation, sender, text))
        return node, messages
    except (ValueError, TypeError, RecursionError):
        # ValueError: not JSON (UnicodeDecodeError is one); TypeError: not the right
        # shape (unpacking a non-list, a wrong length raises ValueError).
        return None
