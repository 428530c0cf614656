"""The real trainer packages (verl, skyrl-gym, trl), each driven by its own code against the
live gateway. They run in the virtualenv ``make compat-venv`` builds (CPU torch, pip), as
``pytest`` there, one run per stack (tests/compat/stacks/check_*.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.helpers import ROOT

VENV = ROOT / ".venv-compat"
STACKS = ROOT / "tests" / "compat" / "stacks"


@pytest.mark.parametrize("stack", ["verl", "skyrl", "trl"])
def test_stack_against_the_gateway(live_gateway: str, stack: str) -> None:
    python = VENV / "bin" / "python"
    if not (VENV / ".installed").is_file():
        pytest.fail(f"the trainer stacks are not installed: run `make compat-venv` ({VENV})")
    src = [ROOT / "clients" / "python" / "src", ROOT / "services" / "core" / "src"]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TOOLFLEET_")},
        "TOOLFLEET_URL": live_gateway,
        "PYTHONPATH": os.pathsep.join(str(p) for p in [ROOT, *src]),
        "HF_HUB_OFFLINE": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
    }
    proc = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--noconftest", "-o",
         "python_files=check_*.py", "--rootdir", str(STACKS), str(STACKS / f"check_{stack}.py")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
