"""A multi-turn agent loop against a running toolfleet gateway.

Each turn: the "model" writes a turn from the context so far → the trainer format's parser
reads the calls out of it → the gateway runs them in the trajectory's session → the
observations are rendered in the trainer's convention and appended to the context → next turn,
until the model answers or runs out of turns. The reward uses the answer and the usage ledger.

There is no LLM here, so :class:`ScriptedModel` stands in for one: it writes each turn from
what the context shows (the outputs of its earlier calls, read back out of the rendered
observations), makes one malformed call and one buggy program on purpose, and recovers from
the diagnostics it is shown. Swap it for your inference engine (``generate(context) -> str``
with the format's ``stop`` strings) and the loop is unchanged.

    .venv/bin/toolfleet serve &                     # the gateway (python, bash ...)
    .venv/bin/python examples/agent_loop.py         # Hermes / Qwen tool calls
    .venv/bin/python examples/agent_loop.py --format torl --rollouts 4
    .venv/bin/python examples/agent_loop.py --branches 3   # a rollout tree (forks)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from dataclasses import dataclass, field, replace

from toolfleet.client import AsyncSession, AsyncToolfleetClient
from toolfleet.client.adapters import TrainerFormat, formats
from toolfleet.core.protocol import TrajectoryUsage

QUESTION = "How many prime numbers are there below 10000? Save them to primes.txt, one per line."
EXPECTED = "1229"

#: Where each format puts a tool's output in the context (what the model reads back).
OUTPUT = {
    "hermes": re.compile(r"<tool_response>\n(.*?)\n</tool_response>", re.S),
    "torl": re.compile(r"```output\n(.*?)\n```", re.S),
    "retool": re.compile(r"<interpreter>\n(.*?)\n</interpreter>", re.S),
    "verl-tool": re.compile(r"<result>\n(.*?)\n</result>", re.S),
}

COUNT_PRIMES = (
    "primes = [n for n in range(2, 10000)"
    " if all(n % d for d in range(2, int(n ** 0.5) + 1))]\n"
    "len(primes)"
)
WRITE_BUGGY = "open('primes.txt', 'w').write('\\n'.join(map(str, primez)) + '\\n')"
WRITE_FIXED = "open('primes.txt', 'w').write('\\n'.join(map(str, primes)) + '\\n')\nprint('saved')"
COUNT_LINES_PY = "print(sum(1 for _ in open('primes.txt')))"


def make_format(name: str) -> TrainerFormat:
    """The trainer convention the loop speaks (with ``<answer>`` as the final answer)."""
    fmt = {
        "hermes": lambda: formats.hermes(chatml=True),
        "torl": formats.torl,
        "retool": formats.retool,
        "verl-tool": formats.verl_tool_python,
    }[name]()
    return replace(fmt, answer_tag="answer")


def prompt(fmt_name: str) -> str:
    """The start of the context (a ChatML prompt for the Hermes format)."""
    if fmt_name == "hermes":
        return (
            "<|im_start|>system\nYou can call the tools python (code) and bash (command) with "
            "<tool_call> JSON blocks. Give the final answer in <answer></answer>.<|im_end|>\n"
            f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n"
        )
    return f"{QUESTION}\nWrite Python to compute; give the final answer in <answer></answer>.\n"


@dataclass
class ScriptedModel:
    """Stands in for an LLM: each turn is decided by what the context shows so far.

    ``style`` varies how it counts the saved lines (so branches of a rollout tree differ)."""

    fmt: str
    style: int = 0

    def generate(self, context: str) -> str:
        outputs = OUTPUT[self.fmt].findall(context)
        step = len(outputs)
        if step == 0:
            return "Let me count them with code." + self.code(COUNT_PRIMES)
        if step == 1:
            if self.fmt == "hermes":  # a malformed call: one closing brace short
                return (
                    f"There are {outputs[0].strip()}. Now I save them.\n<tool_call>\n"
                    '{"name": "python", "arguments": {"code": "print(1)"}\n</tool_call>'
                )
            return "Now I save them." + self.code(WRITE_BUGGY)
        if step == 2:
            last = outputs[-1]
            if "not valid JSON" in last or "NameError" in last:
                return "I made a mistake; fixing it." + self.code(WRITE_FIXED)
            return "Saved." + self.code(WRITE_FIXED)
        if step == 3:
            if self.fmt == "hermes" and self.style % 2 == 0:
                return "Let me check the file." + self.bash("wc -l < primes.txt")
            return "Let me check the file." + self.code(COUNT_LINES_PY)
        count = outputs[0].strip()
        lines = outputs[-1].strip()
        verdict = "matches" if lines == count else f"does not match ({lines} lines)"
        return f"The file {verdict}. <answer>{count}</answer>"

    def code(self, source: str) -> str:
        if self.fmt == "hermes":
            call = {"name": "python", "arguments": {"code": source}}
            return f"\n<tool_call>\n{json.dumps(call)}\n</tool_call>"
        if self.fmt == "retool":
            return f"\n<code>\n```python\n{source}\n```\n</code>"
        if self.fmt == "verl-tool":
            return f"\n<python>\n{source}\n</python>"
        return f"\n```python\n{source}\n```\n"  # torl

    def bash(self, command: str) -> str:
        call = {"name": "bash", "arguments": {"command": command}}
        return f"\n<tool_call>\n{json.dumps(call)}\n</tool_call>"


@dataclass
class Rollout:
    """One trajectory's outcome."""

    trajectory_id: str
    context: str
    answer: str | None = None
    turns: int = 0
    calls: int = 0
    parse_errors: int = 0
    usage: TrajectoryUsage | None = None
    log: list[str] = field(default_factory=list)

    @property
    def reward(self) -> float:
        """1 for the right answer, minus 0.05 per failed call (an efficiency penalty)."""
        correct = 1.0 if self.answer == EXPECTED else 0.0
        errors = self.usage.total.errors if self.usage else 0
        return correct - 0.05 * (errors + self.parse_errors)


async def run_turns(
    session: AsyncSession,
    model: ScriptedModel,
    fmt: TrainerFormat,
    rollout: Rollout,
    max_turns: int,
) -> None:
    """The loop: generate → parse → call → render, until an answer or ``max_turns``."""
    while rollout.turns < max_turns:
        turn = model.generate(rollout.context)
        rollout.turns += 1
        rollout.context += turn
        parsed = fmt.parse(turn)
        answer = fmt.answer(turn)
        if answer is not None and not parsed.calls:
            rollout.answer = answer
            rollout.log.append(f"turn {rollout.turns}: answer {answer}")
            return
        observations = await session.batch(parsed.tool_calls()) if parsed.calls else []
        observations += parsed.error_observations()  # unreadable calls: shown to the model
        rollout.calls += len(parsed.calls)
        rollout.parse_errors += len(parsed.errors)
        for obs in observations:
            what = "ok" if obs.ok else f"{obs.error.kind.value}: {obs.error.message}"
            rollout.log.append(f"turn {rollout.turns}: {obs.tool} -> {what}")
        if not observations:
            rollout.log.append(f"turn {rollout.turns}: no call, no answer")
            break
        rollout.context += fmt.render(observations, turn)


async def rollout_group(
    client: AsyncToolfleetClient, fmt_name: str, group: str, n: int, max_turns: int
) -> list[Rollout]:
    """``n`` independent trajectories of the same prompt, run concurrently."""

    async def one(i: int) -> Rollout:
        fmt = make_format(fmt_name)
        rollout = Rollout(f"{group}-{i}", prompt(fmt_name))
        async with (
            client.trajectory(rollout.trajectory_id) as traj,
            traj.session(metadata={"sample": i}) as session,
        ):
            await run_turns(session, ScriptedModel(fmt_name, style=i), fmt, rollout, max_turns)
        rollout.usage = traj.final_usage
        return rollout

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def rollout_tree(
    client: AsyncToolfleetClient, fmt_name: str, group: str, branches: int, max_turns: int
) -> list[Rollout]:
    """A rollout tree: the first turn runs once, then the session (the interpreter with its
    ``primes``) is forked into ``branches`` trajectories that continue on their own."""
    fmt = make_format(fmt_name)
    trunk = Rollout(f"{group}-trunk", prompt(fmt_name))
    async with client.session(trajectory_id=trunk.trajectory_id) as session:
        await run_turns(session, ScriptedModel(fmt_name), fmt, trunk, max_turns=1)

        async def branch(i: int) -> Rollout:
            rollout = Rollout(f"{group}-b{i}", trunk.context, turns=trunk.turns)
            async with await session.fork(trajectory_id=rollout.trajectory_id) as child:
                await run_turns(child, ScriptedModel(fmt_name, style=i), fmt, rollout, max_turns)
            rollout.usage = await client.trajectory(rollout.trajectory_id).release()
            return rollout

        results = list(await asyncio.gather(*(branch(i) for i in range(branches))))
    await client.trajectory(trunk.trajectory_id).release()
    return results


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=None, help="gateway URL (default $TOOLFLEET_URL)")
    parser.add_argument("--format", choices=sorted(OUTPUT), default="hermes")
    parser.add_argument("--rollouts", type=int, default=1, help="trajectories run at once")
    parser.add_argument("--branches", type=int, default=0, help="fork after turn 1 instead")
    parser.add_argument("--max-turns", type=int, default=8)
    parser.add_argument("--group", default="demo", help="trajectory id prefix")
    parser.add_argument("--quiet", action="store_true", help="no transcript")
    args = parser.parse_args(argv)

    async with AsyncToolfleetClient(args.url) as client:
        await client.wait_ready(timeout_s=30)
        if args.branches:
            rollouts = await rollout_tree(
                client, args.format, args.group, args.branches, args.max_turns
            )
        else:
            rollouts = await rollout_group(
                client, args.format, args.group, args.rollouts, args.max_turns
            )

    if not args.quiet:
        print(rollouts[0].context)
        print("-" * 72)
    for r in rollouts:
        total = r.usage.total if r.usage else None
        print(
            f"{r.trajectory_id}: answer={r.answer} reward={r.reward:.2f} turns={r.turns} "
            f"calls={r.calls} parse_errors={r.parse_errors} "
            f"tool_errors={total.errors if total else '?'} run_ms={total.run_ms:.0f}"
            if total
            else f"{r.trajectory_id}: answer={r.answer}"
        )
        for line in r.log:
            print(f"  {line}")
    return 0 if all(r.answer == EXPECTED for r in rollouts) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
