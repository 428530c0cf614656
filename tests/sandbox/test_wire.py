"""The frames every hop of a call crosses (service, supervisor, kernel): what the other end
sends is decoded as a JSON object or closes the channel, never anything in between."""

from __future__ import annotations

import pytest
from toolfleet.box import wire


def test_frames_come_whole_however_the_bytes_are_cut():
    sent = [{"id": 1, "stdout": "2\n", "images": []}, {"id": 2, "text": "é \ud800 ✓"}]
    stream = b"".join(wire.encode(m) for m in sent)
    assert stream.isascii()  # lone surrogates and all: escapes, never bytes that fail to encode
    frames = wire.FrameBuffer()
    got = []
    for i in range(0, len(stream), 7):
        got += frames.feed(stream[i : i + 7])
    assert got == sent


@pytest.mark.parametrize(
    "payload",
    [b"\xff\xfe{}", b"\xef\xbb\xbf{}", b'{"a": 1', b"[1, 2]", b"null", b""],
    ids=["not utf-8", "a byte-order mark", "cut json", "an array", "null", "empty"],
)
def test_a_frame_that_is_no_json_object_closes_the_channel(payload):
    with pytest.raises((wire.ChannelClosedError, ValueError)):
        wire.FrameBuffer().feed(wire.frame(payload))


def test_a_frame_over_the_limit_closes_the_channel_before_it_is_read():
    with pytest.raises(wire.ChannelClosedError, match="over the limit"):
        wire.FrameBuffer(max_frame=100).feed(wire.HEADER.pack(101))
