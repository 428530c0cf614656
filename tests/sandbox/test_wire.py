"""The frames every hop of a call crosses (service, supervisor, kernel): what the other end
sends is decoded as a JSON object or closes the channel, never anything in between."""

from __future__ import annotations

import pytest
from toolfleet.box import wire

MESSAGES = [
    {"id": 1, "stdout": "2\n", "images": [], "cpu_ms": 0.25, "ok": True, "error": None},
    {"id": 2, "text": "é ✓ 😀", "nested": {"list": [1, -2, 3.5, "x"]}},
    {"id": 3, "text": "a lone \ud800 and \udcff", "pids": [2**40]},
]


@pytest.fixture(params=["orjson", "json"])
def codec(request, monkeypatch):
    """Each end with orjson (the service, our runtime) and without (a runtime of the user's
    own that lacks it)."""
    if request.param == "json":
        monkeypatch.setattr(wire, "orjson", None)
    else:
        assert wire.orjson is not None  # a dependency of the service and of our runtime
    return request.param


@pytest.mark.parametrize("sender", ["orjson", "json"])
@pytest.mark.parametrize("receiver", ["orjson", "json"])
def test_either_codec_reads_what_the_other_wrote(sender, receiver, monkeypatch):
    codecs = {"orjson": wire.orjson, "json": None}
    monkeypatch.setattr(wire, "orjson", codecs[sender])
    stream = b"".join(wire.encode(m) for m in MESSAGES)
    monkeypatch.setattr(wire, "orjson", codecs[receiver])
    assert wire.FrameBuffer().feed(stream) == MESSAGES


def test_frames_come_whole_however_the_bytes_are_cut(codec):
    sent = [{"id": 1, "stdout": "2\n", "images": []}, {"id": 2, "text": "é \ud800 ✓"}]
    stream = b"".join(wire.encode(m) for m in sent)
    # lone surrogates: escapes (json), never bytes that fail to encode
    assert b"\\ud800" in stream
    frames = wire.FrameBuffer()
    got = []
    for i in range(0, len(stream), 7):
        got += frames.feed(stream[i : i + 7])
    assert got == sent


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe{}",
        b"\xef\xbb\xbf{}",
        b'{"a": 1',
        b"[1, 2]",
        b"null",
        b"",
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
    ids=["not utf-8", "a byte-order mark", "cut json", "an array", "null", "empty", "too deep"],
)
def test_a_frame_that_is_no_json_object_closes_the_channel(payload, codec):
    with pytest.raises((wire.ChannelClosedError, ValueError)):
        wire.FrameBuffer().feed(wire.frame(payload))


def test_a_frame_over_the_limit_closes_the_channel_before_it_is_read():
    with pytest.raises(wire.ChannelClosedError, match="over the limit"):
        wire.FrameBuffer(max_frame=100).feed(wire.HEADER.pack(101))
