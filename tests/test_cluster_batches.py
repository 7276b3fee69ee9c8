"""The cluster's message batches (`spartan.cluster.batches`): round trip, and no input raises."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from spartan.cluster.batches import batch_prefix, decode_batch, encode_batch
from spartan.store import StoredMessage

MESSAGES = [
    StoredMessage(7, 1700000000.125, "dm:alice:bob", "alice", "héllo\tthere \"quoted\" \\ ✓"),
    StoredMessage(8, 1700000000.5, "group:group1", "bob", ""),
]


def test_a_batch_round_trips_without_client_ids():
    node, messages = decode_batch(encode_batch("node-a", MESSAGES))
    assert node == "node-a" and messages == MESSAGES
    with_client_id = StoredMessage(9, 1.0, "dm:alice:bob", "alice", "x", client_id="c-1")
    assert decode_batch(encode_batch("n", [with_client_id]))[1][0].client_id is None


def test_one_array_per_message_and_no_field_names():
    payload = encode_batch("n", MESSAGES[:1])
    assert json.loads(payload) == ["n", [[7, 1700000000.125, "dm:alice:bob", "alice", MESSAGES[0].text]]]
    assert decode_batch(payload.encode())[1] == MESSAGES[:1]  # bytes as the subscriber may give


def test_anything_else_is_none():
    for payload in [
        "", "not json", "{}", "[]", '["n"]', '["n", {}]', '[1, []]', '["n", [[1, 2, "k", "s"]]]',
        '["n", [[0, 1.0, "k", "s", "x"]]]', '["n", [["1", 1.0, "k", "s", "x"]]]',
        '["n", [[1, 1.0, "k", "s", 5]]]', '["n", [[true, 1.0, "k", "s", "x"]]]',
        '{"n": "a", "i": 1, "t": 1.0, "k": "dm:a:b", "s": "a", "x": "old format"}',
        b"\xff\xfe", "[" * 100000,
    ]:  # fmt: skip
        assert decode_batch(payload) is None, payload


@given(st.one_of(st.text(), st.binary()))
def test_no_input_raises(data):
    result = decode_batch(data)
    assert result is None or isinstance(result[0], str)


def test_a_node_recognises_its_own_batches_by_their_prefix():
    for node in ("a", "ab", 'host:1 "é"'):
        assert encode_batch(node, MESSAGES).startswith(batch_prefix(node))
    assert not encode_batch("ab", MESSAGES).startswith(batch_prefix("a"))
    assert not encode_batch("a", MESSAGES).startswith(batch_prefix("ab"))
