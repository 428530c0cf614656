"""SessionStates directly: values are kept per session and key, forks copy them (forking the
stateful ones, deep-copying plain data), ends close them, and failures leak nothing."""

from __future__ import annotations

import logging

import pytest
from toolfleet.core.state import SessionState, SessionStates


class Handle:
    """A stateful value that records what happens to it."""

    def __init__(self, name: str, log: list[str], fail_fork: bool = False) -> None:
        self.name = name
        self.log = log
        self.fail_fork = fail_fork

    async def fork(self) -> Handle:
        if self.fail_fork:
            raise RuntimeError(f"cannot fork {self.name}")
        self.log.append(f"fork {self.name}")
        return Handle(f"{self.name}'", self.log)

    async def close(self) -> None:
        self.log.append(f"close {self.name}")
        if self.name.startswith("bad"):
            raise OSError("close failed")


def test_a_handle_is_a_session_state():
    assert isinstance(Handle("a", []), SessionState)
    assert not isinstance({"plain": 1}, SessionState)


async def test_fork_copies_plain_data_and_forks_handles():
    log: list[str] = []
    states = SessionStates()
    states.put("s1", "files", {"a.txt": [1, 2]})
    states.put("s1", "kernel", Handle("k", log))
    assert states.get("s1", "files") == {"a.txt": [1, 2]}
    assert states.get("s1", "missing") is None and states.get("nobody", "files") is None

    await states.fork("s1", "s2")
    assert log == ["fork k"]
    assert states.get("s2", "kernel").name == "k'"
    states.get("s2", "files")["a.txt"].append(3)  # a deep copy: the parent keeps its own
    assert states.get("s1", "files") == {"a.txt": [1, 2]}
    assert len(states) == 2

    await states.fork("never-had-state", "s3")  # nothing to copy, nothing made
    assert len(states) == 2

    await states.close("s1")
    assert log == ["fork k", "close k"]
    assert states.get("s1", "kernel") is None
    await states.close("s1")  # twice is harmless
    assert log == ["fork k", "close k"]


async def test_a_failed_fork_closes_the_copies_it_made():
    log: list[str] = []
    states = SessionStates()
    states.put("s1", "first", Handle("one", log))
    states.put("s1", "second", Handle("two", log, fail_fork=True))
    with pytest.raises(RuntimeError, match="cannot fork two"):
        await states.fork("s1", "s2")
    assert log == ["fork one", "close one'"]  # the copy of the first was released
    assert states.get("s2", "first") is None and len(states) == 1


async def test_close_all_closes_every_value_despite_failures(caplog):
    log: list[str] = []
    states = SessionStates()
    states.put("s1", "a", Handle("bad-a", log))
    states.put("s1", "b", Handle("b", log))
    states.put("s2", "c", Handle("c", log))
    with caplog.at_level(logging.ERROR, logger="toolfleet.core.state"):
        await states.close_all()
    assert log == ["close bad-a", "close b", "close c"]
    assert "closing session state" in caplog.text
    assert len(states) == 0
