"""Gateway and worker processes over the machine's Redis, for the distributed benches
(``distributed.py``, ``shared_state.py``).

Every process gets the parent's environment minus its ``TOOLFLEET_*`` settings, the
repository on ``PYTHONPATH``, log level ``warning`` and the settings given (``name=value``
becomes ``TOOLFLEET_NAME``). Distributed ones share one Redis key prefix (``PREFIX``), whose
keys :func:`clean` deletes afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port  # noqa: E402

__all__ = ["DISTRIBUTED", "PREFIX", "REDIS_URL", "ROOT", "clean", "free_port"]

REDIS_URL = os.environ.get("TOOLFLEET_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"tfbench-{uuid.uuid4().hex[:8]}"
#: the settings of a distributed process: this machine's Redis, this run's prefix
DISTRIBUTED = {"redis_url": REDIS_URL, "redis_prefix": PREFIX}


def env(**values: Any) -> dict[str, str]:
    """A child's environment with the settings ``values``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")}
    extra = {f"TOOLFLEET_{k.upper()}": str(v) for k, v in values.items()}
    return {**base, "PYTHONPATH": str(ROOT), "TOOLFLEET_LOG_LEVEL": "warning", **extra}


def start(args: list[str], **values: Any) -> subprocess.Popen[bytes]:
    """``python ARGS`` in the repository, with the settings ``values``, output discarded."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=env(**values),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def gateway(port: int, *, distributed: bool = True, **values: Any) -> subprocess.Popen[bytes]:
    """``toolfleet serve`` on 127.0.0.1:``port``: distributed, or embedded."""
    where = DISTRIBUTED if distributed else {}
    return start(
        ["-m", "toolfleet.client.cli", "serve"], **where, port=port, host="127.0.0.1", **values
    )


def worker(*args: str, **values: Any) -> subprocess.Popen[bytes]:
    """``toolfleet worker ARGS`` on this run's prefix."""
    return start(["-m", "toolfleet.core.worker", *args], **DISTRIBUTED, **values)


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each (they drain), then wait; kill one that takes over a minute."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def processes(*procs: subprocess.Popen[bytes]) -> Iterator[None]:
    """Stop ``procs`` when the block ends."""
    try:
        yield
    finally:
        stop(list(procs))


def clean(prefix: str = PREFIX) -> None:
    """Delete this run's Redis keys."""
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
