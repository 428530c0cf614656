"""A generated MCP server for the tests: a catalogue of N enterprise-API tools, plus a few
tools that misbehave on purpose (crash, fail, sleep) or keep state (a counter), and tools
that change the tool list (with ``--changing``: ``add_tool``, ``remove_tool``; the process's
list changes, and the server sends ``notifications/tools/list_changed`` unless ``notify`` is
false).

    python synthetic.py [--tools N] [--changing] [--http PORT]     (stdio without --http)

The catalogue is what TheMCPCompany-style deployments look like: 10 systems, 20 kinds of
record each, 5 operations on each kind (create, get, list, update, delete) = 1,000 tools,
named ``<system>_<operation>_<record>``. Standard library and the ``mcp`` SDK only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import sys
from typing import Any

import mcp_types as types
from mcp.server.lowlevel import Server

SYSTEMS: dict[str, tuple[str, list[str]]] = {
    "crm": ("the CRM", ["contact", "lead", "opportunity", "account", "campaign", "deal stage",
            "sales quota", "customer note", "meeting log", "call recording", "territory",
            "partner", "price book", "quote", "forecast", "competitor", "referral",
            "loyalty tier", "survey response", "segment"]),
    "hr": ("the HR system", ["employee", "leave request", "payslip", "job opening",
           "candidate", "interview", "performance review", "training course", "benefit plan",
           "timesheet", "org unit", "onboarding checklist", "expense claim", "contract",
           "shift", "skill", "certification", "exit interview", "salary band", "holiday"]),
    "billing": ("the billing platform", ["invoice", "payment", "refund", "subscription",
                "credit note", "tax rate", "coupon", "billing address", "payment method",
                "dunning notice", "usage record", "price plan", "discount", "chargeback",
                "ledger entry", "currency rate", "statement", "late fee", "receipt",
                "payout"]),
    "inventory": ("the warehouse inventory", ["product", "stock level", "warehouse",
                  "purchase order", "supplier", "bin location", "batch", "serial number",
                  "stock transfer", "reorder rule", "cycle count", "shipment receipt",
                  "pallet", "barcode", "kit", "return authorization", "damage report",
                  "safety stock", "unit of measure", "vendor catalog"]),
    "tickets": ("the help desk", ["ticket", "comment", "escalation", "sla policy", "macro",
                "agent", "queue", "satisfaction rating", "knowledge article", "tag",
                "attachment", "canned response", "incident", "problem record",
                "change request", "on-call rotation", "status page update", "customer",
                "priority rule", "ticket form"]),
    "calendar": ("the calendar service", ["event", "room booking", "attendee", "reminder",
                 "recurring series", "availability slot", "time zone preference",
                 "video link", "agenda", "calendar", "invitation", "working hours",
                 "out of office", "resource", "holiday calendar", "focus block",
                 "meeting note", "booking page", "travel time", "event color"]),
    "storage": ("the file storage", ["file", "folder", "share link", "file version",
                "permission", "trash item", "upload session", "thumbnail", "quota",
                "file lock", "comment thread", "retention policy", "legal hold",
                "shared drive", "sync token", "file label", "access log", "backup",
                "archive", "checksum"]),
    "analytics": ("the analytics warehouse", ["dashboard", "report", "metric", "query",
                  "dataset", "chart", "alert rule", "funnel", "cohort", "experiment",
                  "event schema", "data source", "scheduled export", "annotation",
                  "kpi target", "segment definition", "retention curve", "heatmap",
                  "attribution model", "anomaly"]),
    "email": ("the email service", ["message", "draft", "mailbox", "mail filter", "label",
              "signature", "auto reply", "contact group", "mailing list", "template",
              "bounce", "spam report", "forwarding rule", "delegate", "thread",
              "newsletter", "unsubscribe", "attachment scan", "dkim key", "alias"]),
    "shipping": ("the shipping provider", ["shipment", "parcel", "label", "pickup",
                 "tracking event", "carrier", "rate quote", "customs form", "delivery zone",
                 "return label", "manifest", "address check", "insurance claim",
                 "package dimensions", "delivery window", "signature proof", "hub",
                 "route", "freight booking", "lost package report"]),
}  # fmt: skip

OPERATIONS = {
    "create": "Creates a new {obj} in {system} from the given fields and returns its id.",
    "get": "Fetches one {obj} from {system} by its id, with all its fields.",
    "list": "Lists the {obj} records of {system}, optionally filtered by a text query, "
    "a page at a time.",
    "update": "Changes fields of an existing {obj} in {system}; fields not given are kept.",
    "delete": "Deletes a {obj} from {system} for good; give a reason for the audit trail.",
}


def slug(text: str) -> str:
    return text.replace(" ", "_").replace("-", "_")


def catalogue(count: int) -> list[types.Tool]:
    """The first ``count`` generated tools (system by system, record by record)."""
    tools = []
    for system, (label, records) in SYSTEMS.items():
        for record in records:
            for op, template in OPERATIONS.items():
                tools.append(generated_tool(system, label, record, op, template))
    return tools[:count]


def generated_tool(system: str, label: str, record: str, op: str, template: str) -> types.Tool:
    key = f"{slug(record)}_id"
    props: dict[str, Any]
    if op == "create":
        props = {
            "name": {"type": "string", "description": f"The {record}'s name or title."},
            "fields": {"type": "object", "description": f"Other fields of the {record}."},
        }
        required = ["name"]
    elif op == "list":
        props = {
            "query": {"type": "string", "description": "Text to filter by."},
            "limit": {"type": "integer", "minimum": 1, "maximum": 100},
            "cursor": {"type": "string", "description": "From the previous page."},
        }
        required = []
    elif op == "update":
        props = {
            key: {"type": "string", "description": f"Which {record}."},
            "changes": {"type": "object", "description": "Fields to change."},
        }
        required = [key, "changes"]
    else:
        props = {key: {"type": "string", "description": f"Which {record}."}}
        required = [key]
        if op == "delete":
            props["reason"] = {"type": "string", "description": "Why it is deleted."}
    return types.Tool(
        name=f"{system}_{op}_{slug(record)}",
        description=template.format(obj=record, system=label),
        input_schema={"type": "object", "properties": props, "required": required},
    )


PNG_1X1 = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000002000000030806000000b9eaa1e3"
        "0000000d49444154789c63f8ffff3f0300050001ff5a1c2d0000000049454e44ae426082"
    )
).decode()

SPECIAL = [
    types.Tool(
        name="echo",
        description="Says the text back.",
        input_schema={
            "type": "object",
            "properties": {"text": {"type": "string"}},
            "required": ["text"],
        },
    ),
    types.Tool(
        name="add",
        description="Adds two integers; structured result.",
        input_schema={
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    ),
    types.Tool(
        name="counter",
        description="Counts the calls this server process has answered.",
        input_schema={"type": "object", "properties": {}},
    ),
    types.Tool(
        name="crash",
        description="Kills the server process (after answering, after_s later, when given).",
        input_schema={"type": "object", "properties": {"after_s": {"type": "number"}}},
    ),
    types.Tool(
        name="fail",
        description="Answers with an error result.",
        input_schema={"type": "object", "properties": {"why": {"type": "string"}}},
    ),
    types.Tool(
        name="sleep",
        description="Waits.",
        input_schema={
            "type": "object",
            "properties": {"seconds": {"type": "number", "maximum": 60}},
            "required": ["seconds"],
        },
    ),
    types.Tool(
        name="image",
        description="A 2x3 PNG.",
        input_schema={"type": "object", "properties": {}},
    ),
    types.Tool(
        name="env",
        description="What the process sees: uid, pid, network, files.",
        input_schema={"type": "object", "properties": {}},
    ),
]


CHANGING = [
    types.Tool(
        name="add_tool",
        description="Adds (or replaces) a tool that says its name and arguments back.",
        input_schema={
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "properties": {"type": "object", "description": "Its arguments' schemas."},
                "notify": {"type": "boolean", "description": "Send list_changed (default)."},
            },
            "required": ["name"],
        },
    ),
    types.Tool(
        name="remove_tool",
        description="Removes a tool from the list.",
        input_schema={
            "type": "object",
            "properties": {"name": {"type": "string"}, "notify": {"type": "boolean"}},
            "required": ["name"],
        },
    ),
]


def build(count: int, changing: bool = False) -> Server[Any]:
    tools = {t.name: t for t in SPECIAL + (CHANGING if changing else []) + catalogue(count)}
    state = {"calls": 0}

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=list(tools.values()))

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        name, args = params.name, dict(params.arguments or {})
        state["calls"] += 1

        def text(value: str, **kw: Any) -> types.CallToolResult:
            return types.CallToolResult(content=[types.TextContent(text=value)], **kw)

        if name not in tools:  # what many servers do: an error result
            return text(f"unknown tool {name}", is_error=True)
        if name == "echo":
            return text(str(args.get("text")))
        if name == "add":
            total = int(args["a"]) + int(args["b"])
            return types.CallToolResult(
                content=[types.TextContent(text=str(total))], structured_content={"sum": total}
            )
        if name == "counter":
            return text(str(state["calls"]), structured_content={"calls": state["calls"]})
        if name == "crash":
            if "after_s" not in args:
                os._exit(3)
            asyncio.get_running_loop().call_later(float(args["after_s"]), os._exit, 3)
            return text("crashing soon")
        if name == "fail":
            return text(f"it went wrong: {args.get('why', 'no reason')}", is_error=True)
        if name == "sleep":
            await asyncio.sleep(float(args["seconds"]))
            return text("slept")
        if name == "image":
            return types.CallToolResult(
                content=[types.ImageContent(data=PNG_1X1, mime_type="image/png")]
            )
        if name == "env":
            return text(json.dumps(environment()))
        if name in ("add_tool", "remove_tool"):
            target = str(args["name"])
            if name == "add_tool":
                tools[target] = types.Tool(
                    name=target,
                    description=str(args.get("description") or f"The added tool {target}."),
                    input_schema={"type": "object", "properties": args.get("properties") or {}},
                )
            elif tools.pop(target, None) is None:
                return text(f"no tool {target}", is_error=True)
            if args.get("notify", True):
                await ctx.session.send_tool_list_changed()
            return text(f"{len(tools)} tools")
        return text(json.dumps({"tool": name, "arguments": args, "ok": True}))

    return Server("synthetic", on_list_tools=list_tools, on_call_tool=call_tool)


def environment() -> dict[str, Any]:
    import socket

    try:
        with socket.create_connection(("1.1.1.1", 53), timeout=1):
            network = True
    except OSError:
        network = False
    try:  # creating one (not connecting) is what the sandbox's seccomp filter refuses
        socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
        inet = True
    except OSError:
        inet = False
    writable = {}
    for path in ("/tmp", "/usr", "/"):
        try:
            with open(os.path.join(path, ".probe"), "w"):
                pass
            writable[path] = True
        except OSError:
            writable[path] = False
    return {
        "uid": os.getuid(),
        "pid": os.getpid(),
        "network": network,
        "inet_sockets": inet,
        "writable": writable,
        "root": sorted(os.listdir("/")),
        "home": os.environ.get("HOME"),
    }


async def serve_stdio(server: Server[Any]) -> None:
    from mcp.server.stdio import stdio_server

    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def serve_http(server: Server[Any], port: int) -> None:
    import contextlib

    import uvicorn
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from starlette.applications import Starlette
    from starlette.routing import Mount

    manager = StreamableHTTPSessionManager(server, stateless=False, json_response=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        async with manager.run():
            yield

    async def handle(scope: Any, receive: Any, send: Any) -> None:
        await manager.handle_request(scope, receive, send)

    app = Starlette(routes=[Mount("/mcp", app=handle)], lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=0, help="generated tools (up to 1000)")
    parser.add_argument("--http", type=int, help="serve Streamable HTTP on this port")
    parser.add_argument("--changing", action="store_true", help="add_tool and remove_tool")
    args = parser.parse_args()
    server = build(args.tools, args.changing)
    if args.http:
        serve_http(server, args.http)
    else:
        asyncio.run(serve_stdio(server))
    return 0


if __name__ == "__main__":
    sys.exit(main())
