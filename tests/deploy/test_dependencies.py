"""What a package declares is what it uses: a workspace package that imports the MCP SDK
declares the range whose names it imports, so a resolver next to a package that pins the
older SDK (langchain-mcp-adapters pins mcp<2) says so instead of the service failing at import.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from packaging.requirements import Requirement

from tests.helpers import ROOT

#: Names only the 2.x SDK has, which the code imports (1.x: ``mcp.types``,
#: ``streamablehttp_client``).
MCP2_ONLY = re.compile(
    r"^\s*(import mcp_types|from mcp\S* import .*\bstreamable_http_client\b)", re.M
)
LAST_MCP1 = "1.99"


def packages() -> list[tuple[str, list[Requirement], str]]:
    """Each workspace package: its name, its declared requirements, its source text."""
    found = []
    for pyproject in sorted(
        [*ROOT.glob("services/*/pyproject.toml"), *ROOT.glob("clients/*/pyproject.toml")]
    ):
        project = tomllib.loads(pyproject.read_text())["project"]
        requirements = [Requirement(r) for r in project.get("dependencies", [])]
        source = "\n".join(p.read_text() for p in (pyproject.parent / "src").rglob("*.py"))
        found.append((project["name"], requirements, source))
    return found


def test_packages_importing_mcp_2_names_declare_mcp_2() -> None:
    installed = importlib.metadata.version("mcp")
    users = [(name, reqs) for name, reqs, source in packages() if MCP2_ONLY.search(source)]
    assert {"toolfleet-gateway", "toolfleet-mcp"} <= {name for name, _ in users}
    wrong = []
    for name, reqs in users:
        [mcp] = [r for r in reqs if r.name == "mcp"] or [Requirement("mcp")]
        if mcp.specifier.contains(LAST_MCP1) or not mcp.specifier.contains(installed):
            wrong.append(f"{name}: {mcp}")
    assert wrong == []
