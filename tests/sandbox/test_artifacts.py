"""The supervisor's store of compiled programs (``toolfleet.box.artifacts``): bounded, the
least recently used out first, and nothing but base64 taken in."""

from __future__ import annotations

import base64

import pytest
from toolfleet.box.artifacts import Artifacts


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_the_store_keeps_what_was_used_last_within_its_size():
    store = Artifacts(max_bytes=10)
    store.keep({"a": b64(b"aaaa"), "b": b64(b"bbbb")})
    assert store.take({"x/main": "a"}) == ({"x/main": b"aaaa"}, [])  # a used: b is older
    store.keep({"c": b64(b"cccc")})  # 12 bytes: the least recently used goes
    assert store.take({"1": "a", "2": "b", "3": "c"}) == ({"1": b"aaaa", "3": b"cccc"}, ["b"])
    assert store.size == 8
    # over the whole size: never held, nothing dropped — but the run it came with has it
    given = store.keep({"big": b64(b"x" * 11)})
    assert store.take({"p": "big"}, given) == ({"p": b"x" * 11}, [])
    assert store.take({"p": "big"}) == ({}, ["big"]) and store.size == 8


def test_the_store_refuses_what_is_not_base64():
    with pytest.raises(ValueError, match="not base64"):
        Artifacts().keep({"k": "not base64!"})
