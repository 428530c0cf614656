"""The gateway as ``toolfleet serve`` runs it, serving the test-only tools (``noop`` ...) plus a
bare FastAPI route ``GET /bare`` returning a constant, the baseline the overhead is measured
against. Usage: python bench/noop_server.py PORT"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from toolfleet.core import Settings
from toolfleet.gateway.server import serve

from tests.helpers.tools import make_app


def main() -> None:
    app = make_app()

    @app.get("/bare", include_in_schema=False)
    async def bare() -> dict[str, bool]:
        return {"ok": True}

    serve(Settings(port=int(sys.argv[1]), log_level="warning"), app=app)


if __name__ == "__main__":
    main()
