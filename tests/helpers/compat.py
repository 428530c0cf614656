"""Helpers of the compat tests: a corpus in Search-R1's shape, a stand-in of Serper, and the
client code of the trainer stacks that are not packages (Search-R1's retrieval calls and
passage formatting, verl-tool's agent-loop requests), written from their sources."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CORPUS_SIZE = 2000


def search_r1_corpus(squad: Path, out: Path, size: int = CORPUS_SIZE) -> list[dict]:
    """The first ``size`` SQuAD passages written as wiki-18 lines (``{"id", "contents":
    '"Title"\\ntext'}``, the title in quotes as in Search-R1's corpus); the lines written."""
    written = []
    with squad.open() as f, out.open("w") as w:
        for line in f:
            p = json.loads(line)
            row = {"id": p["id"], "contents": f'"{p["title"]}"\n{p["text"]}'}
            w.write(json.dumps(row) + "\n")
            written.append(row)
            if len(written) == size:
                break
    return written


class SerperStandIn:
    """Serper's search API on a local port: ``num`` results for query ``q``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.app = FastAPI()

        @self.app.post("/search")
        async def search(request: Request) -> JSONResponse:
            body = await request.json()
            organic = [
                {
                    "title": f"{body['q']} page {i}",
                    "link": f"https://example.org/{i}",
                    "snippet": f"snippet {i % 3}",  # repeats: verl-tool skips duplicates
                }
                for i in range(body["num"])
            ]
            return JSONResponse({"organic": organic})


# --------------------------------------------------------------- Search-R1 (generation.py)


def search_r1_batch_search(url: str, queries: list[str], topk: int) -> dict[str, Any]:
    """``LLMGenerationManager._batch_search``: no status check, the body read as JSON."""
    payload = {"queries": queries, "topk": topk, "return_scores": True}
    return requests.post(url, json=payload, timeout=120).json()


def search_r1_passages(retrieval_result: list[dict[str, Any]]) -> str:
    """``LLMGenerationManager._passages2string``."""
    reference = ""
    for idx, doc_item in enumerate(retrieval_result):
        content = doc_item["document"]["contents"]
        title = content.split("\n")[0]
        text = "\n".join(content.split("\n")[1:])
        reference += f"Doc {idx + 1}(Title: {title}) {text}\n"
    return reference


def search_r1_batch(url: str, queries: list[str], topk: int) -> list[str]:
    """``LLMGenerationManager.batch_search``: one passage string per query."""
    results = search_r1_batch_search(url, queries, topk)["result"]
    return [search_r1_passages(result) for result in results]


# --------------------------------------------------------------- verl-tool (agent loop)


def verl_tool_turn(
    url: str,
    traj_id: str,
    action: str,
    extra_fields: dict[str, Any] | None = None,
    do_action: bool = True,
    is_last_step: bool = False,
) -> dict[str, Any]:
    """``VerlToolAgentLoop.interact_with_tool_server``: the request it posts (raising for a
    non-2xx status as its aiohttp session does) and what it reads of the answer."""
    batch: dict[str, Any] = {
        "trajectory_ids": [traj_id],
        "actions": [action],
        "finish": [not do_action],
        "is_last_step": [is_last_step],
    }
    if extra_fields is not None:
        batch["extra_fields"] = [extra_fields]
    response = requests.post(url, json=batch, timeout=120)
    response.raise_for_status()
    body = response.json()
    obs = body["observations"][0]
    info: dict[str, Any]
    if isinstance(obs, str):
        info = {"obs": obs, "reward": None}
    else:
        assert "obs" in obs, f"Observation dict must contain 'obs' key, but got {obs.keys()}"
        assert isinstance(obs["obs"], str)
        info = dict(obs)
    info["done"] = int(body["dones"][0])
    info["valid_action"] = int(body["valids"][0])
    return info


def verl_tool_close(url: str, traj_id: str) -> dict[str, Any]:
    """``VerlToolAgentLoop.close_traj_tool_threads``: finish the trajectory."""
    batch = {
        "trajectory_ids": [traj_id],
        "actions": [""],
        "finish": [True],
        "is_last_step": [True],
    }
    response = requests.post(url, json=batch, timeout=60)
    response.raise_for_status()
    return response.json()


def cut_at_stop(generated: str, stop_tokens: list[str]) -> str:
    """How verl-tool's agent loop cuts a generation into the action it sends: up to and
    including the first action stop token."""
    for token in stop_tokens:
        if token in generated:
            return generated.split(token)[0] + token
    return generated
