"""The line framer every front end shares: lines out of bytes, with a size limit."""

from hypothesis import given, settings
from hypothesis import strategies as st

from spartan.net.framing import TOO_LONG, LineFramer


def test_lines_end_with_lf_and_keep_their_cr():
    framer = LineFramer(100)
    assert framer.feed(b"PING a\r\nPING b\nPART") == [b"PING a\r", b"PING b"]
    assert framer.partial == b"PART"
    assert framer.feed(b"IAL\n") == [b"PARTIAL"]


def test_an_overlong_line_is_reported_once_in_its_place_and_the_next_lines_are_kept():
    framer = LineFramer(5)
    assert framer.feed(b"ok\n" + b"x" * 20 + b"\nnext\n") == [b"ok", TOO_LONG, b"next"]


def test_an_overlong_line_arriving_in_pieces_is_discarded_to_its_end():
    framer = LineFramer(5)
    assert framer.feed(b"xxxxxxx") == [TOO_LONG]  # known as soon as it passes the limit
    assert framer.feed(b"yyyyyyyyyy") == []
    assert framer.feed(b"zz\nafter\n") == [b"after"]


def test_a_line_exactly_at_the_limit_is_kept():
    assert LineFramer(5).feed(b"12345\n123456\n") == [b"12345", TOO_LONG]


streams = st.lists(
    st.one_of(st.binary(max_size=12), st.sampled_from([b"\n", b"\r\n", b"x" * 30])), max_size=30
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(streams, st.lists(st.integers(min_value=0, max_value=200), max_size=10))
def test_arbitrary_splits_give_the_same_lines_as_one_read(stream, cuts):
    whole = LineFramer(16).feed(stream)
    framer, pieces, start = LineFramer(16), [], 0
    for cut in sorted(cuts):
        pieces.extend(framer.feed(stream[start:cut]))
        start = max(start, cut)
    pieces.extend(framer.feed(stream[start:]))
    assert pieces == whole
    # Every line kept is within the limit, and each one is a line of the stream.
    kept = [line for line in whole if line is not TOO_LONG]
    assert all(len(line) <= 16 and b"\n" not in line for line in kept)
