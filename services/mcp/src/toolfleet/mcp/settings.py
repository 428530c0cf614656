"""The mcp service's settings: the ``[mcp]`` table of the config file, or ``TOOLFLEET_MCP_*``.

```toml
[mcp]
npm_prefix = "/opt/toolfleet/mcp/npm"          # shown read-only in the jail, bin/ on PATH

[[mcp.upstreams]]                              # a stdio server, run in the sandbox's jail
name = "memory"                                # its tools: memory.create_entities ...
command = "mcp-server-memory"
stateful = true                                # one server process per session
env = { MEMORY_FILE_PATH = "/tmp/memory.jsonl" }

[[mcp.upstreams]]                              # a Streamable HTTP server
name = "github"
url = "http://127.0.0.1:9000/mcp"

[[mcp.llm]]                                    # a model as a tool (OpenAI-compatible)
name = "planner"
url = "http://127.0.0.1:8001/v1"
model = "qwen3-8b"
price_input = 0.0000002                        # cost units per input token
price_output = 0.0000008
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict
from toolfleet.core.settings import ServiceSettings

#: A prefix is one segment of a tool name: ``<prefix>.<tool>``.
PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")


class UpstreamConfig(BaseModel):
    """One MCP server whose tools toolfleet serves under ``<name>.``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The prefix of its tools (memory → memory.create_entities).")
    command: str | None = Field(
        default=None, description="stdio: the program to start (looked up on the jail's PATH)."
    )
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    env: dict[str, str] = Field(default_factory=dict, description="stdio: its environment.")
    url: str | None = Field(default=None, description="Streamable HTTP: the server's URL.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Streamable HTTP: headers sent with every request."
    )
    stateful: bool = Field(
        default=False,
        description="True: one server process (or MCP session) per toolfleet session, ended "
        "with it; a fork gets a fresh one. False: calls share a pool.",
    )
    pool_size: int = Field(
        default=1, ge=1, le=64, description="Stateless: connections calls are spread over."
    )
    sandbox: bool = Field(
        default=True,
        description="stdio: run the server in the sandbox's jail (namespaces, no network, "
        "read-only system, an unprivileged uid). False: an ordinary child process.",
    )
    show: list[str] = Field(
        default_factory=list,
        description="stdio, sandboxed: host directories shown read-only at their own path "
        "(a virtualenv the server runs from, data it reads).",
    )
    loopback_ports: list[int] = Field(
        default_factory=list,
        description="stdio, sandboxed: ports of the host's 127.0.0.1 the server may connect "
        "to (its own 127.0.0.1:PORT is relayed there); nothing else of the network.",
    )
    memory_mb: int = Field(
        default=4096,
        ge=64,
        description="stdio, sandboxed: address space in MiB (Node's V8 reserves far more "
        "virtual memory than it uses: below ~2 GiB node servers die at start).",
    )
    tmp_mb: int = Field(default=64, ge=1, description="stdio, sandboxed: its writable /tmp.")
    start_timeout_s: float = Field(
        default=60.0, gt=0, description="How long starting and initialising may take."
    )
    cost: float = Field(default=0.0, ge=0, description="Cost units booked per call.")
    tools: list[str] | None = Field(
        default=None, description="Only these of its tools (None: all it lists)."
    )

    @model_validator(mode="after")
    def _one_transport(self) -> UpstreamConfig:
        if not PREFIX.match(self.name):
            raise ValueError(
                f"upstream name {self.name!r}: a letter, then letters, digits, _ or - "
                "(it prefixes tool names)"
            )
        if (self.command is None) == (self.url is None):
            raise ValueError(f"upstream {self.name!r}: give either command (stdio) or url")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        """How toolfleet reaches the server."""
        return "stdio" if self.command is not None else "http"


class LlmConfig(BaseModel):
    """A model behind an OpenAI-compatible endpoint, served as a tool."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The tool's name.")
    url: str = Field(description="The API base (…/v1); chat completions are POSTed below it.")
    model: str = Field(description="The model name sent with each request.")
    description: str | None = Field(default=None, description="What the model is good at.")
    price_input: float = Field(default=0.0, ge=0, description="Cost units per input token.")
    price_output: float = Field(default=0.0, ge=0, description="Cost units per output token.")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the bearer key (None: none)."
    )
    max_tokens: int = Field(default=1024, ge=1, description="Largest completion asked for.")
    system: str | None = Field(default=None, description="A system message put first.")

    @model_validator(mode="after")
    def _name(self) -> LlmConfig:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$", self.name):
            raise ValueError(f"llm tool name {self.name!r}: letters, digits, _ . -")
        return self


class McpSettings(ServiceSettings):
    """``TOOLFLEET_MCP_*`` variables, or the ``[mcp]`` table of the config file."""

    model_config = SettingsConfigDict(env_prefix="TOOLFLEET_MCP_", extra="forbid")
    section = "mcp"

    upstreams: list[UpstreamConfig] = Field(
        default_factory=list, description="MCP servers whose tools are served."
    )
    llm: list[LlmConfig] = Field(default_factory=list, description="Models served as tools.")
    npm_prefix: Path = Field(
        default=Path("/opt/toolfleet/mcp/npm"),
        description="Where deploy/mcp/install-servers.sh installs npm servers: shown "
        "read-only in the jail, its bin/ on the servers' PATH.",
    )
    python_prefix: Path = Field(
        default=Path("/opt/toolfleet/mcp/python"),
        description="Where the PyPI servers' virtualenv is: shown read-only, bin/ on PATH.",
    )
    separator: str = Field(
        default=".",
        pattern=r"^(\.|_|__|-)$",
        description="Between an upstream's name and its tools' (memory.create_entities); "
        "'__' for APIs whose function names refuse dots (OpenAI's).",
    )
    first_uid: int = Field(
        default=61000, ge=1000, description="Sandboxed servers run as uids from here on."
    )
    find_tools: bool = Field(default=True, description="Serve the find_tools tool.")
    dense: bool = Field(
        default=True,
        description="find_tools: add the search service's encoder to BM25 when installed.",
    )
    dense_min_tools: int = Field(
        default=100,
        ge=0,
        description="find_tools: load the encoder only for a catalogue this large (a small "
        "one is served well by BM25, and every process start would pay the model).",
    )
    catalogue_refresh_s: float = Field(
        default=5.0, gt=0, description="find_tools: how often the catalogue is checked."
    )

    @model_validator(mode="after")
    def _unique(self) -> McpSettings:
        names = [u.name for u in self.upstreams] + [m.name for m in self.llm]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"[mcp]: names used twice: {', '.join(doubled)}")
        return self
