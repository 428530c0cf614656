"""``toolfleet calls``: export the call log, replay a recorded trajectory, apply retention.

    toolfleet calls export [--trajectory ID] [--tenant T] [--tool NAME]
                           [--since TIME] [--until TIME] [--limit N] [--out FILE]
    toolfleet calls replay TRAJECTORY [--tenant T] [--from FILE] [--url GATEWAY]
                           [--api-key KEY] [--as NEW_ID] [--keep]
    toolfleet calls prune [--max-age-s S] [--max-rows N]

Each reads the database the settings name (``TOOLFLEET_CALL_LOG_URL`` or
``TOOLFLEET_CALL_LOG_PATH``, or ``--config FILE``), or ``--db`` (a SQLAlchemy URL or a SQLite
file). TIME is ISO 8601 (``2026-11-26T10:00:00Z``; no zone: UTC) or an age before now
(``30m``, ``2h``, ``7d``).

``replay`` sends the trajectory's calls again, in their recorded order, through the gateway's
REST API (``--url``, else ``TOOLFLEET_URL``, else http://127.0.0.1:8000; ``--api-key`` or
``TOOLFLEET_API_KEY``), as a new trajectory with a new session for each recorded one, and
compares each observation with the recorded one by digest (what the model sees: content,
data, error, ok, truncated). A difference is shown as a unified diff when the log holds full
observations (``call_log_observations``), else as the two digests and the new observation.
Exit status: 0 when every call answered the same, 1 otherwise, 2 for a usage error.
Sessions forked from another are replayed as fresh sessions (forks are not calls).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from toolfleet.core.calllog import CallStore, database_url, observation_digest, observation_view
from toolfleet.core.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8000"
_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DIFF_LINES = 60


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive: UTC) or an age such as ``30m`` (that long before now)."""
    found = _AGE.match(text.strip())
    if found:
        now = now or datetime.now(UTC)
        return now - timedelta(seconds=float(found[1]) * _UNIT_S[found[2]])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (ISO 8601, or an age like 30m, 2h, 7d)"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def open_store(args: argparse.Namespace) -> CallStore:
    """The call log ``--db`` names, else the one the settings name."""
    if args.db:
        url = args.db if "://" in args.db else f"sqlite:///{Path(args.db).resolve()}"
    else:
        settings = Settings(**({"config_file": args.config} if args.config else {}))
        url = database_url(settings)
    return CallStore(url)


# --------------------------------------------------------------------------- export


def export(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write records as JSON lines; returns how many."""
    n = 0
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        n += 1
    return n


def _export(args: argparse.Namespace) -> int:
    store = open_store(args)
    try:
        records = store.query(
            trajectory_id=args.trajectory,
            tenant=args.tenant,
            tool=args.tool,
            since=args.since,
            until=args.until,
            limit=args.limit,
        )
        if args.out and args.out != "-":
            with open(args.out, "w", encoding="utf-8") as out:
                n = export(records, out)
        else:
            n = export(records, sys.stdout)
    finally:
        store.close()
    print(f"exported {n} calls", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- replay


def read_jsonl(path: str) -> Iterator[dict[str, Any]]:
    """Records of an export file (``-``: standard input)."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    try:
        for line in stream:
            if line.strip():
                yield json.loads(line)
    finally:
        if stream is not sys.stdin:
            stream.close()


def _pretty(view: dict[str, Any]) -> list[str]:
    return json.dumps(view, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def describe_difference(record: dict[str, Any], observed: dict[str, Any]) -> list[str]:
    """Lines showing how a replayed observation differs from the recorded call."""
    new = _pretty(observation_view(observed))
    if record.get("observation") is not None:
        old = _pretty(observation_view(record["observation"]))
        lines = list(difflib.unified_diff(old, new, "recorded", "replayed", lineterm=""))
    else:
        lines = [
            f"recorded digest {record['observation_sha256']} (full observation not kept)",
            f"replayed digest {observation_digest(observed)}:",
            *new,
        ]
    if len(lines) > DIFF_LINES:
        lines = [*lines[:DIFF_LINES], f"... ({len(lines) - DIFF_LINES} more lines)"]
    return lines


class Replay:
    """Sends recorded calls to a gateway and compares what comes back."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        trajectory_id: str,
        out: TextIO,
        client: Any = None,
    ) -> None:
        import httpx  # the toolfleet command (toolfleet-client) brings it

        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = client or httpx.Client(base_url=url, headers=headers, timeout=None)
        self.trajectory_id = trajectory_id
        self.out = out
        self.sessions: dict[str, str] = {}  # recorded session id -> replay's
        self.same = self.different = self.failed = 0

    def session_for(self, recorded: str) -> str:
        """The replay's session standing for a recorded one (opened on first use)."""
        if recorded not in self.sessions:
            r = self.http.post("/v1/sessions", json={"trajectory_id": self.trajectory_id})
            r.raise_for_status()
            self.sessions[recorded] = r.json()["session_id"]
        return self.sessions[recorded]

    def call(self, n: int, record: dict[str, Any]) -> None:
        """Replay one recorded call and report it."""
        body: dict[str, Any] = {
            "arguments": record["arguments"],
            "trajectory_id": self.trajectory_id,
            "timeout_s": record["timeout_s"],
        }
        tool = record["tool"]
        try:
            if record.get("session_id"):
                body["session_id"] = self.session_for(record["session_id"])
            r = self.http.post(
                f"/v1/tools/{tool}/call",
                json=body,
                headers={"x-request-id": f"replay-{record['call_id']}"},
            )
        except Exception as exc:  # the gateway is unreachable, a session could not open
            self.failed += 1
            self.out.write(f"{n:>4} {tool:<16} FAILED  {type(exc).__name__}: {exc}\n")
            return
        if r.status_code != 200:
            self.failed += 1
            self.out.write(f"{n:>4} {tool:<16} FAILED  HTTP {r.status_code}: {r.text[:300]}\n")
            return
        observed = r.json()
        if observation_digest(observed) == record["observation_sha256"]:
            self.same += 1
            self.out.write(f"{n:>4} {tool:<16} same\n")
            return
        self.different += 1
        self.out.write(f"{n:>4} {tool:<16} DIFFERENT\n")
        for line in describe_difference(record, observed):
            self.out.write(f"       {line}\n")

    def run(self, records: list[dict[str, Any]], keep: bool = False) -> int:
        """Replay every record; the exit status (0: all the same)."""
        try:
            for n, record in enumerate(records, 1):
                self.call(n, record)
        finally:
            if not keep:  # end the replay's sessions
                try:
                    self.http.delete(f"/v1/trajectories/{self.trajectory_id}")
                except Exception as exc:
                    self.out.write(f"could not release {self.trajectory_id}: {exc}\n")
        self.out.write(
            f"{len(records)} calls: {self.same} same, {self.different} different, "
            f"{self.failed} failed\n"
        )
        return 0 if self.same == len(records) else 1


def _replay(args: argparse.Namespace) -> int:
    if args.from_file:
        records = [
            r
            for r in read_jsonl(args.from_file)
            if r.get("trajectory_id") == args.trajectory
            and (args.tenant is None or r.get("tenant") == args.tenant)
        ]
    else:
        store = open_store(args)
        try:
            records = list(store.query(trajectory_id=args.trajectory, tenant=args.tenant))
        finally:
            store.close()
    if not records:
        print(f"no recorded calls of trajectory {args.trajectory!r}", file=sys.stderr)
        return 2
    tenants = sorted({r["tenant"] for r in records})
    if len(tenants) > 1:
        print(
            f"trajectory {args.trajectory!r} belongs to several tenants ({', '.join(tenants)}): "
            "choose one with --tenant",
            file=sys.stderr,
        )
        return 2
    url = args.url or os.environ.get("TOOLFLEET_URL", DEFAULT_URL)
    new_id = args.as_id or f"{args.trajectory}-replay-{uuid.uuid4().hex[:8]}"
    print(
        f"replaying {len(records)} calls of trajectory {args.trajectory} as {new_id} on {url}",
        flush=True,
    )
    api_key = args.api_key or os.environ.get("TOOLFLEET_API_KEY")
    replay = Replay(url, api_key, new_id, sys.stdout)
    try:
        return replay.run(records, keep=args.keep)
    finally:
        replay.http.close()


# --------------------------------------------------------------------------- prune


def _prune(args: argparse.Namespace) -> int:
    settings = Settings(**({"config_file": args.config} if args.config else {}))
    max_age = args.max_age_s if args.max_age_s is not None else settings.call_log_max_age_s
    max_rows = args.max_rows if args.max_rows is not None else settings.call_log_max_rows
    store = open_store(args)
    try:
        store.create()
        deleted = store.apply_retention(max_age, max_rows)
        left = store.count()
    finally:
        store.close()
    print(f"deleted {deleted} calls, {left} left")
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``toolfleet calls``."""
    parser = argparse.ArgumentParser(
        prog="toolfleet calls",
        description="Export, replay and prune the call log (TOOLFLEET_CALL_LOG).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", help="SQLAlchemy URL or SQLite file (default: from settings)")
        p.add_argument("--config", help="TOML settings file (or TOOLFLEET_CONFIG)")

    ex = sub.add_parser("export", help="write recorded calls as JSON lines")
    common(ex)
    ex.add_argument("--trajectory", help="only this trajectory's calls")
    ex.add_argument("--tenant", help="only this tenant's calls")
    ex.add_argument("--tool", help="only this tool's calls")
    ex.add_argument("--since", type=parse_time, help="calls from this time (ISO 8601 or 2h)")
    ex.add_argument("--until", type=parse_time, help="calls before this time")
    ex.add_argument("--limit", type=int, help="at most this many calls")
    ex.add_argument("--out", help="file to write (default: standard output)")
    ex.set_defaults(func=_export)

    rp = sub.add_parser(
        "replay", help="send a recorded trajectory's calls to a gateway and diff observations"
    )
    common(rp)
    rp.add_argument("trajectory", help="the recorded trajectory id")
    rp.add_argument("--tenant", help="the trajectory's tenant (when several have that id)")
    rp.add_argument(
        "--from", dest="from_file", help="read the calls from an export file, not the database"
    )
    rp.add_argument("--url", help=f"gateway URL (TOOLFLEET_URL, default {DEFAULT_URL})")
    rp.add_argument("--api-key", help="bearer token (TOOLFLEET_API_KEY)")
    rp.add_argument(
        "--as", dest="as_id", help="trajectory id of the replay (default: ID-replay-RANDOM)"
    )
    rp.add_argument("--keep", action="store_true", help="keep the replay's sessions open")
    rp.set_defaults(func=_replay)

    pr = sub.add_parser("prune", help="apply retention now (default: the settings' limits)")
    common(pr)
    pr.add_argument("--max-age-s", type=float, help="delete calls older than this")
    pr.add_argument("--max-rows", type=int, help="keep only the newest this many calls")
    pr.set_defaults(func=_prune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``toolfleet calls``."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
