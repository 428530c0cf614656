"""The first hour: POST bodies are JSON whatever the Content-Type says, a retrieval route
without an index says how to serve one, ``/docs`` works offline, the OpenAPI document has
examples and the real error bodies, a port in use is said at once, and the CLI says which URL
it could not reach."""

from __future__ import annotations

import socket
import subprocess
import time

from toolfleet.gateway.listen import bind

from tests.helpers import PYTHON, ROOT, gateway


async def test_json_bodies_whatever_the_content_type() -> None:
    async with gateway() as http:
        for declared in ("application/x-www-form-urlencoded", "text/plain", None):
            headers = {"content-type": declared} if declared else {}
            r = await http.post("/v1/sessions", content=b'{"ttl_s": 60}', headers=headers)
            assert r.status_code == 201, (declared, r.text)
            assert r.json()["ttl_s"] == 60


async def test_retrieval_without_an_index_says_how_to_serve_one() -> None:
    async with gateway() as http:  # the test tools only: no search index
        for route, body in (("/retrieve", {"queries": ["x"]}), ("/search", {"query": "x"})):
            r = await http.post(route, json=body)
            assert r.status_code == 404, r.text
            error = r.json()["error"]
            assert error["code"] == "no_search"
            assert "TOOLFLEET_SEARCH_INDEXES" in error["message"], error


async def test_docs_are_served_from_local_assets() -> None:
    async with gateway() as http:
        page = (await http.get("/docs")).text
        assert "cdn.jsdelivr.net" not in page and "unpkg" not in page
        assert "/docs-assets/swagger-ui-bundle.js" in page
        js = await http.get("/docs-assets/swagger-ui-bundle.js")
        assert js.status_code == 200 and "isOAS31" in js.text  # Swagger UI 5: reads OAS 3.1
        assert (await http.get("/docs-assets/swagger-ui.css")).status_code == 200


async def test_openapi_has_examples_and_real_error_bodies() -> None:
    from toolfleet.core.settings import Settings
    from toolfleet.gateway.app import create_app

    schema = create_app(Settings()).openapi()  # every installed service's routes
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    missing = []
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            body = op.get("requestBody", {}).get("content", {})
            if body and not all("example" in c for c in body.values()):
                missing.append(f"{method} {path} request")
            ok = next(op["responses"][s] for s in ("200", "201") if s in op["responses"])
            if not any("example" in c for c in ok.get("content", {}).values()):
                missing.append(f"{method} {path} response")
            for status, response in op["responses"].items():
                if status[0] in "45":
                    content = response["content"]["application/json"]
                    assert content["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert missing == []
    invalid = schema["paths"]["/v1/sessions"]["post"]["responses"]["422"]
    example = invalid["content"]["application/json"]["example"]["error"]
    assert example["code"] == "invalid_request" and example["fields"][0]["path"]
    upload = schema["paths"]["/v1/sessions/{session_id}/files/{path}"]["put"]["requestBody"]
    assert upload["content"]["application/octet-stream"]["schema"]["format"] == "binary"
    observe = schema["paths"]["/get_observation"]["post"]["requestBody"]["content"]
    assert observe["application/json"]["schema"]["$ref"].endswith("/ActionRequest")


def test_a_port_in_use_is_said_at_once() -> None:
    taken = bind("127.0.0.1", 0)
    port = taken.getsockname()[1]
    try:
        started = time.monotonic()
        done = subprocess.run(
            [PYTHON, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
    finally:
        taken.close()
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert took < 60  # the import of the CLI only: no service warmed up (loaded machine)


def test_a_missing_config_file_is_one_line() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "toolfleet.client.cli", "serve", "--config", "no-such.toml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no-such.toml" in done.stderr and "Traceback" not in done.stderr


def test_cli_names_the_url_it_could_not_reach() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    done = subprocess.run(
        [PYTHON, "-m", "toolfleet.client.cli", "tools", "--url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert f"cannot reach the gateway at http://127.0.0.1:{port}" in done.stderr
