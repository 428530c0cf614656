"""The ``toolfleet`` command: serve, tools, call, version."""

from __future__ import annotations

import argparse
import json
import sys

import httpx
from toolfleet.client import __version__
from toolfleet.client.http import DEFAULT_URL, GatewayError, ToolfleetClient

# The light client (httpx, pydantic) runs `tools`, `call` and `version`; the other commands
# need the services' packages, which a trainer's environment usually lacks.
_NEEDS = "toolfleet {command} needs {package} (the services' side), which is not installed"


def _missing(command: str, package: str) -> int:
    print(_NEEDS.format(command=command, package=package), file=sys.stderr)
    return 2


def _serve(args: argparse.Namespace) -> int:
    try:
        from toolfleet.core.settings import Settings
        from toolfleet.gateway.listen import bind
    except ImportError:  # depends on what is installed
        return _missing("serve", "toolfleet-gateway")
    from pydantic import ValidationError

    overrides = {
        k: v
        for k, v in {"host": args.host, "port": args.port, "config_file": args.config}.items()
        if v is not None
    }
    try:
        settings = Settings(**overrides)
    except (OSError, ValueError, ValidationError) as exc:  # a missing or malformed file
        print(f"toolfleet serve: bad settings: {exc}", file=sys.stderr)
        return 2
    try:  # bound first: a port in use is said before the app is imported or warmed up
        sock = bind(settings.host, settings.port)
    except OSError as exc:
        print(f"toolfleet serve: {exc}", file=sys.stderr)
        return 1
    from toolfleet.gateway.server import serve

    serve(settings, sock=sock)
    return 0


def _worker(args: argparse.Namespace) -> int:
    try:
        from toolfleet.core.worker import main as worker_main
    except ImportError:  # depends on what is installed
        return _missing("worker", "toolfleet-core")
    return worker_main(args.rest)


def _search(args: argparse.Namespace) -> int:
    try:
        from toolfleet.search.cli import main as search_main
    except ImportError:  # depends on what is installed
        return _missing("search", "toolfleet-search")
    result: int = search_main(args.rest)
    return result


def _calls(args: argparse.Namespace) -> int:
    try:
        from toolfleet.core.calllog_cli import main as calls_main
    except ImportError:  # depends on what is installed
        return _missing("calls", "toolfleet-core")
    return calls_main(args.rest)


def _tools(args: argparse.Namespace) -> int:
    with ToolfleetClient(args.url) as client:
        if args.format == "openai":
            print(json.dumps(client.openai_tools(), indent=2))
            return 0
        for spec in client.tools():
            first_line = spec.description.strip().splitlines()[0] if spec.description else ""
            print(f"{spec.name:<20} {spec.service:<10} {first_line}")
    return 0


def _call(args: argparse.Namespace) -> int:
    try:
        arguments = json.loads(args.json)
    except json.JSONDecodeError as exc:
        print(f"--json is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(arguments, dict):
        print("--json must be a JSON object of the tool's arguments", file=sys.stderr)
        return 2
    with ToolfleetClient(args.url) as client:
        obs = client.call(
            args.tool,
            arguments,
            session_id=args.session,
            trajectory_id=args.trajectory,
            timeout_s=args.timeout,
        )
    print(obs.model_dump_json(indent=2))
    return 0 if obs.ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser."""
    parser = argparse.ArgumentParser(prog="toolfleet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway with every installed tool (embedded)")
    serve.add_argument("--host", help="listen address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default 8000)")
    serve.add_argument("--config", help="TOML settings file (or TOOLFLEET_CONFIG)")
    serve.set_defaults(func=_serve)

    worker = sub.add_parser(
        "worker",
        help="serve services' tools to gateways over Redis (distributed mode)",
        add_help=False,
    )
    worker.add_argument("rest", nargs=argparse.REMAINDER, help="SERVICE… [--tools-from M:F]")
    worker.set_defaults(func=_worker)
    search = sub.add_parser(
        "search", help="build search indexes (toolfleet search build --help)", add_help=False
    )
    search.add_argument("rest", nargs=argparse.REMAINDER, help="build CORPUS --out DIR")
    search.set_defaults(func=_search)
    calls = sub.add_parser("calls", help="export, replay and prune the call log", add_help=False)
    calls.add_argument("rest", nargs=argparse.REMAINDER, help="export|replay|prune ...")
    calls.set_defaults(func=_calls)

    for name, func, help_ in (
        ("tools", _tools, "list the tools of a running gateway"),
        ("call", _call, "call a tool on a running gateway and print the observation"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--url", help=f"gateway URL (TOOLFLEET_URL, default {DEFAULT_URL})")
        p.set_defaults(func=func)
        if name == "tools":
            p.add_argument("--format", choices=["toolfleet", "openai"], default="toolfleet")
        else:
            p.add_argument("tool", help="tool name")
            p.add_argument("--json", default="{}", help="the arguments as a JSON object")
            p.add_argument("--session", help="session id")
            p.add_argument("--trajectory", help="trajectory id")
            p.add_argument("--timeout", type=float, help="timeout in seconds")

    version = sub.add_parser("version", help="print the version")
    version.set_defaults(func=lambda _: print(__version__) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``toolfleet`` command."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:  # its own parser: options may come before the services
        args = argparse.Namespace(func=_worker, rest=argv[1:])
    elif argv[:1] == ["search"]:
        args = argparse.Namespace(func=_search, rest=argv[1:])
    elif argv[:1] == ["calls"]:
        args = argparse.Namespace(func=_calls, rest=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except GatewayError as exc:
        print(f"toolfleet: {exc}", file=sys.stderr)
        return 1
    except httpx.TransportError as exc:  # connection refused and the like
        try:
            url = str(exc.request.url)
        except RuntimeError:  # no request attached
            url = getattr(args, "url", None) or DEFAULT_URL
        print(
            f"toolfleet: cannot reach the gateway at {url}: {exc} (start one with "
            "`make run`, or name it with --url or TOOLFLEET_URL)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
