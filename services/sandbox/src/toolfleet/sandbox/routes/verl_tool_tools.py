"""verl-tool's tool types, as ``/get_observation`` serves them with toolfleet's tools.

Each class is one of verl-tool's tool types (``verl_tool/servers/tools/<tool_type>.py``):
``parse`` recognises an action as that tool does (None: not this tool's), ``run`` answers
``(observation, done, valid)`` in that tool's words and framing, with the work done by a
toolfleet tool in the trajectory's session (so state persists across a trajectory's turns
and ``finish`` frees it).

- ``python_code``: ``<python>`` blocks, else fenced ```` ```python ````, else ```` ```py ````
  (all blocks of the action, joined); stdin from ``extra_fields[i].stdin`` or a fenced
  ``input`` block; its output framed as verl-tool frames it since 2025-08 (``<result>``,
  ```` ```result ````, ``<tool_response>``) or, with ``framing=output``, as before (``<output>``);
- ``ipython_code``: the same blocks and ``<tool_call>{"name": "python", "arguments": {"code"}}``;
  output as a notebook shows it (the trailing expression's value included), framed with
  ``<output>`` and, after ``</tool_call>``, unframed; an ``{"obs", "metrics", "timeout"}`` dict;
- ``search_retrieval``: the last ``<search>…</search>`` → Search-R1's ``<information>``; an
  action with ``</answer>`` and no search ends the trajectory (done, not valid);
- ``google_search``: ``<search>``, a fenced ``search`` block, ``search:`` or ``google:`` →
  toolfleet's ``web_search``, in verl-tool's ``**Page i**`` layout inside ``<result>``;
- ``sql``: the last ``<sql>…</sql>`` → the ``sql`` tool on ``extra_fields[i].db_id`` with
  SkyRL / verl-tool's result text, in ``<observation>`` with the turns-left reminder;
- ``bash_terminal``: ``<bash>`` blocks, else fenced ``bash``/``sh``/``shell``, else
  ``terminal``; each line run in the trajectory's shell and shown after a prompt, framed by
  how the action ended (``<o>``, ```` ```output ````);
- ``pixel_reasoner``: ``<tool_call>`` JSON of ``zoom_in`` / ``crop_image`` /
  ``crop_image_normalized`` / ``select_frames`` on the trajectory's images
  (``extra_fields[i].images``, uploaded into its session at its first call) → the vision
  service's ``image_crop``; an ``{"obs", "image"}`` dict with a JPEG data URL;
- ``mcp_interface``: any other ``<tool_call>`` JSON (or a ReAct JSON action) → the MCP
  upstream tool it names (the mcp service), framed in ``<mcp_response>``; one naming no
  upstream tool answers as verl-tool does without a server for it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from toolfleet.core.protocol import CallRequest, ImagePart, Observation, TextPart
from toolfleet.core.runtime import Runtime
from toolfleet.protocol.diagnostics import without_diagnostic_text

ObsValue = str | dict[str, Any]
Result = tuple[ObsValue, bool, bool]

#: The modules verl-tool's python tools star-import (and import) before the code when their
#: ``pre_import_lib`` is on, and the recursion limit they set.
PRE_IMPORT_MODULES = (
    "string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins",
    "typing",
)  # fmt: skip
PRE_IMPORT = (
    "".join(f"from {m} import *\n" for m in PRE_IMPORT_MODULES)
    + "".join(f"import {m}\n" for m in PRE_IMPORT_MODULES if m not in ("builtins", "typing"))
    + "sys.setrecursionlimit(6*10**5)\n\n"
)


@dataclass(frozen=True)
class Options:
    """What a ``/get_observation`` URL's query asks for (verl-tool's server flags)."""

    framing: Literal["result", "output"] = "result"
    """python_code's framing: ``result`` (verl-tool since 2025-08) or ``output`` (before)."""
    pre_import_lib: bool = False
    """Run verl-tool's imports (``from math import *`` …) before python code."""
    topk: int | None = None
    """Passages per ``<search>`` (None: the search tool's default, 3 as verl-tool's)."""
    done_if_invalid: bool = False
    """verl-tool's ``--done_if_invalid``: an action no tool recognises ends the trajectory."""


@dataclass
class Turn:
    """One action of one trajectory, and how to call toolfleet's tools for it."""

    rt: Runtime
    tenant: str
    trajectory_id: str
    action: str
    extra: dict[str, Any]
    options: Options

    async def call(self, tool: str, arguments: dict[str, Any]) -> Observation:
        """``tool`` in the trajectory's session."""
        request = CallRequest(arguments=arguments, trajectory_id=self.trajectory_id)
        return await self.rt.call(self.tenant, tool, request)


def text_of(obs: Observation) -> str:
    """The text parts of an observation, joined (a failure's diagnostic is said by
    :func:`failure`, in verl-tool's words, not by the runtime's text part)."""
    return "\n".join(p.text for p in without_diagnostic_text(obs) if isinstance(p, TextPart))


def failure(obs: Observation) -> str:
    """A failed call's diagnostic, as one line the model can read."""
    if obs.error is None:
        return "the call failed"
    return obs.error.message + (f" ({obs.error.hint})" if obs.error.hint else "")


def tool_call_json(action: str) -> dict[str, Any] | None:
    """The JSON object of the action's first ``<tool_call>…</tool_call>``, else None."""
    match = re.search(r"<tool_call>(.*?)</tool_call>", action, re.DOTALL)
    if not match:
        return None
    try:
        value = json.loads(match.group(1).strip() or "{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class VerlTool:
    """One verl-tool tool type."""

    tool_type: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    """The toolfleet tools it runs on (it is served only when they all are)."""
    usage: ClassVar[str] = ""
    """Its ``get_usage_inst`` line, listed when no tool recognises an action."""

    def parse(self, action: str) -> Any:
        """What the action asks of this tool, or None when it is not this tool's."""
        raise NotImplementedError

    async def run(self, turn: Turn, parsed: Any) -> Result:
        """``(observation, done, valid)``."""
        raise NotImplementedError


# --------------------------------------------------------------------------- python


def python_blocks(action: str, fences: Sequence[str] = ("python", "py")) -> list[str]:
    """verl-tool's python code of an action: every ``<python>`` block, else every fenced
    block of the first of ``fences`` that has any."""
    blocks = re.findall(r"<python>(.*?)</python>", action, re.DOTALL)
    for language in fences:
        if blocks:
            break
        blocks = re.findall(rf"```\n?{language}(.*?)```", action, re.DOTALL)
    return blocks


def stdin_of(turn: Turn) -> str | None:
    """``extra_fields[i].stdin``, or the action's fenced ``input`` block."""
    given = re.findall(r"```input\n(.*?)\n```", turn.action, re.DOTALL)
    if given:
        return given[0].strip()
    stdin = turn.extra.get("stdin")
    return stdin if isinstance(stdin, str) and stdin else None


async def run_python(turn: Turn, code: str, show_result: bool) -> tuple[str, bool]:
    """Run ``code`` in the trajectory's interpreter: its output as verl-tool shows it (stdout,
    then stderr and the error), and whether it failed."""
    if turn.options.pre_import_lib:
        code = PRE_IMPORT + code
    arguments: dict[str, Any] = {"code": code}
    stdin = stdin_of(turn)
    if stdin is not None:
        arguments["stdin"] = stdin
    obs = await turn.call("python", arguments)
    data = obs.data or {}
    parts = [str(data.get("stdout") or "")]
    if show_result and data.get("result") is not None:
        parts[0] += f"{data['result']}\n"
    parts.append(str(data.get("stderr") or ""))
    if obs.error is not None:
        parts.append(obs.error.detail or obs.error.message)
    if not data and obs.error is None:
        parts.append(text_of(obs))
    return "\n".join(parts).strip(" \n"), not obs.ok or bool(data.get("stderr"))


def frame_result(action: str, body: str, tag: str = "result") -> str:
    """python_code's framing since 2025-08, by what the action holds."""
    if "```output" in action or "```python" in action:
        if action.count("```") % 2 == 0:
            return f"\n```{tag}\n{body}\n```\n"
        return f"\n{body}\n```\n"
    if "</tool_call>" in action:
        return f"\n<tool_response>\n```{tag}\n{body}\n```\n</tool_response>\n"
    if action.strip(" \n").endswith(f"<{tag}>"):
        return f"\n{body}\n</{tag}>\n"
    return f"\n<{tag}>\n{body}\n</{tag}>\n"


def frame_by_ending(
    action: str, body: str, tag: str, fence_langs: Sequence[str], tool_call: str
) -> str:
    """The older framing (python_code before 2025-08, ipython_code, bash_terminal): by how
    the action ends. ``tool_call`` is the shape after ``</tool_call>`` (``{body}``)."""
    stripped = action.strip(" \n")
    if action.endswith("```output"):
        return f"\n{body}\n```\n"
    if action.endswith("</tool_call>"):
        return tool_call.format(body=body)
    if action.endswith(f"<{tag}>"):
        return f"\n{body}\n</{tag}>\n"
    code_tag = {"output": "python", "o": "bash"}.get(tag, "python")
    if f"</{code_tag}>" in action:
        return f"\n<{tag}>\n{body}\n</{tag}>\n"
    if "<|calling system for feedback|>" in action:
        if any(f"```{lang}" in action for lang in fence_langs):
            return f"\n```output\n{body}\n```\n"
        if f"<{code_tag}>" in action:
            return f"\n<{tag}>\n{body}\n</{tag}>\n"
        return f"\n{body}\n"
    if stripped.endswith("```") or any(f"```{lang}" in action for lang in fence_langs):
        if action.count("```") % 2 == 0:
            return f"\n```output\n{body}\n```\n"
        return f"output\n{body}\n```\n"
    return f"\n{body}\n"


class PythonCode(VerlTool):
    """verl-tool's ``python_code``."""

    tool_type = "python_code"
    needs = ("python",)
    usage = "You are able to write and execute Python code securely inside a Firejail sandbox."

    def parse(self, action: str) -> str | None:
        blocks = python_blocks(action)
        return "\n".join(b.strip() for b in blocks) if blocks else None

    async def run(self, turn: Turn, parsed: str) -> Result:
        body, _ = await run_python(turn, parsed, show_result=False)
        if turn.options.framing == "output":
            old = "\n```output\n{body}\n```\n"
            return frame_by_ending(turn.action, body, "output", ("python",), old), False, True
        return frame_result(turn.action, body), False, True


class IPythonCode(VerlTool):
    """verl-tool's ``ipython_code`` (ToRL / math_tir recipes)."""

    tool_type = "ipython_code"
    needs = ("python",)
    usage = "You are able to write and execute Python code in a Jupyter notebook."

    def parse(self, action: str) -> str | None:
        blocks = python_blocks(action, fences=("python",))
        if not blocks:
            call = tool_call_json(action)
            args = call.get("arguments") if call else None
            if call and str(call.get("name", "")).strip() == "python" and isinstance(args, dict):
                code = str(args.get("code", "")).strip()
                blocks = [code] if code else []
        return "\n".join(b.strip() for b in blocks) if blocks else None

    async def run(self, turn: Turn, parsed: str) -> Result:
        body, failed = await run_python(turn, parsed, show_result=True)
        framed = frame_by_ending(turn.action, body, "output", ("python",), "{body}")
        obs = {
            "obs": framed,
            "metrics": {"code_success": not failed, "code_lines": parsed.count("\n") + 1},
            "timeout": "execution time out" in body.lower() or "ran out of time" in body,
        }
        return obs, False, True


# --------------------------------------------------------------------------- search


def search_r1_information(hits: list[dict[str, Any]]) -> str:
    """Search-R1's ``_passages2string`` of one query's hits, in ``<information>``."""
    lines = []
    for i, hit in enumerate(hits, 1):
        title, text = hit.get("title", ""), hit.get("text", "")
        contents = f"{title}\n{text}" if text or not title else title
        first, _, rest = contents.partition("\n")
        lines.append(f"Doc {i}(Title: {first}) {rest}\n")
    return f"\n\n<information>{''.join(lines).strip()}</information>\n\n"


class SearchRetrieval(VerlTool):
    """verl-tool's ``search_retrieval`` (Search-R1 recipe)."""

    tool_type = "search_retrieval"
    needs = ("search",)
    usage = (
        "You can search for information by putting your query between <search> and </search> tags."
    )

    def parse(self, action: str) -> tuple[str, str] | None:
        if "</search>" in action:
            queries = re.findall(r"<search>(.*?)</search>", action, re.DOTALL)
            if queries:
                return "search", queries[-1].strip()
        if "</answer>" in action and re.findall(r"<answer>(.*?)</answer>", action, re.DOTALL):
            return "answer", ""
        return None

    async def run(self, turn: Turn, parsed: tuple[str, str]) -> Result:
        kind, query = parsed
        if kind == "answer":
            return "", True, False  # the final answer ends the trajectory
        if not query:
            return search_r1_information([]), False, True
        arguments: dict[str, Any] = {"query": query}
        if turn.options.topk:
            arguments["top_k"] = turn.options.topk
        obs = await turn.call("search", arguments)
        if not obs.ok:
            return f"\n\n<information>{failure(obs)}</information>\n\n", False, False
        hits = ((obs.data or {}).get("results") or [[]])[0]
        return search_r1_information(hits), False, True


class GoogleSearch(VerlTool):
    """verl-tool's ``google_search`` (deepsearch recipe), on toolfleet's ``web_search``."""

    tool_type = "google_search"
    needs = ("web_search",)
    usage = "You can search the web with <search>your query</search>."
    patterns = (
        r"<search>(.*?)</search>",
        r"```\s*search\s*\n(.*?)\n```",
        r"search:\s*(.*?)(?:\n|$)",
        r"google:\s*(.*?)(?:\n|$)",
    )
    max_results = 10
    result_length = 1000

    def parse(self, action: str) -> str | None:
        for pattern in self.patterns:
            found = re.findall(pattern, action, re.DOTALL | re.IGNORECASE)
            if found:
                query = found[0].strip()
                if query and len(query) <= 500:
                    return query
        return None

    async def run(self, turn: Turn, parsed: str) -> Result:
        obs = await turn.call("web_search", {"query": parsed, "top_k": self.max_results})
        if not obs.ok:
            return f"<result>Search execution failed: {failure(obs)}</result>", False, False
        pages, seen = [], set()
        for i, hit in enumerate(((obs.data or {}).get("results") or [[]])[0], 1):
            snippet = str(hit.get("snippet") or "").strip()
            if not snippet or snippet in seen:
                continue
            seen.add(snippet)
            if len(snippet) > self.result_length:
                snippet = snippet[: self.result_length] + "..."
            title = str(hit.get("title") or "No title").strip()
            link = str(hit.get("url") or "").strip()
            pages.append(
                f"**Page {i}**\n**Title:** {title}\n**Link:** {link}\n**Snippet:** {snippet}\n"
            )
        found = "\n".join(pages) if pages else "No search results found."
        return f"<result>Search results for '{parsed}':\n\n{found}</result>", False, True


# --------------------------------------------------------------------------- sql


class Sql(VerlTool):
    """verl-tool's ``sql`` (SkyRL-SQL recipe)."""

    tool_type = "sql"
    needs = ("sql",)
    usage = (
        "You can execute SQL queries using <sql>...</sql> tags for intermediate verification "
        "or <solution>...</solution> tags for final answers."
    )

    def parse(self, action: str) -> str | None:
        start = action.rfind("<sql>")
        if start < 0:
            return None
        end = action.find("</sql>", start + len("<sql>"))
        return action[start + len("<sql>") : end].strip() if end >= 0 else None

    async def run(self, turn: Turn, parsed: str) -> Result:
        db_id = turn.extra.get("db_id")
        path = turn.extra.get("db_path")
        if not db_id and isinstance(path, str) and path:
            # verl-tool opens db_path; toolfleet serves databases by name: the file's stem
            db_id = path.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0]
        valid = True
        if not isinstance(db_id, str) or not db_id:
            text, valid = "Execution Error:\nno db_id (or db_path) in extra_fields", False
        elif not parsed:
            text = (
                "Your previous action is invalid. Follow the format of outputting thinking "
                "process and sql tool, and try again."
            )
        else:
            obs = await turn.call("sql", {"db_id": db_id, "query": parsed, "format": "skyrl"})
            text = text_of(obs) or failure(obs)
            if not obs.ok and obs.error is not None and obs.error.kind.value == "not_found":
                text, valid = f"Execution Error:\n{failure(obs)}", False
        left = turn.extra.get("turns_left", 0)
        reminder = f"<reminder>You have {left} turns left to complete the task.</reminder>"
        framed = f"\n\n<observation>{text}\n{reminder}</observation>\n\n"
        return {"obs": framed, "parsed_sql": parsed}, False, valid


# --------------------------------------------------------------------------- bash


class BashTerminal(VerlTool):
    """verl-tool's ``bash_terminal``: each line in the trajectory's shell, shown after a
    prompt as a terminal shows it."""

    tool_type = "bash_terminal"
    needs = ("bash",)
    usage = (
        "You are able to execute bash commands in a persistent shell session with file "
        "operations restricted to temporary directories."
    )

    def parse(self, action: str) -> str | None:
        blocks = re.findall(r"<bash>(.*?)</bash>", action, re.DOTALL)
        if not blocks:
            blocks = re.findall(r"```\s*(?:bash|sh|shell)(.*?)```", action, re.DOTALL)
        if not blocks:
            blocks = re.findall(r"```\s*terminal(.*?)```", action, re.DOTALL)
        return "\n".join(b.strip() for b in blocks) if blocks else None

    async def run(self, turn: Turn, parsed: str) -> Result:
        where = await turn.call("bash", {"command": 'printf "%s\\n%s" "$HOME" "$PWD"'})
        home, _, cwd = str((where.data or {}).get("stdout") or "").partition("\n")
        shown = ""
        for line in parsed.splitlines():
            shown += f"{prompt(home, cwd)}{line}\n"
            obs = await turn.call("bash", {"command": line})
            data = obs.data or {}
            if isinstance(data.get("cwd"), str):
                cwd = data["cwd"]
            out = [s for s in (data.get("stdout"), data.get("stderr")) if s]
            code = data.get("exit_code")
            if code and not data.get("stderr"):
                out.append(f"Command exited with code {code}")
            if not data and not obs.ok:
                out.append(failure(obs))
            if out:
                shown += "\n".join(str(s) for s in out) + "\n"
        body = shown.strip(" \n")
        framed = frame_by_ending(
            turn.action, body, "o", ("bash", "sh"), "\n```output\n{body}\n```\n"
        )
        return framed, False, True


def prompt(home: str, cwd: str) -> str:
    """verl-tool's shell prompt for ``cwd`` (``~`` for the session's home)."""
    if not cwd or not home or cwd == home:
        return "user@bash-session:~$ "
    if cwd.startswith(home + "/"):
        return f"user@bash-session:~{cwd[len(home) :]}$ "
    return f"user@bash-session:{cwd}$ "


# --------------------------------------------------------------------------- images


class PixelReasoner(VerlTool):
    """verl-tool's ``pixel_reasoner``: zoom into the trajectory's images, or show frames."""

    tool_type = "pixel_reasoner"
    needs = ("image_crop", "media")
    names = ("zoom_in", "crop_image_normalized", "select_frames", "crop_image")

    def parse(self, action: str) -> dict[str, Any] | None:
        try:
            call = json.loads(action.split("<tool_call>")[1].split("</tool_call>")[0])
        except (IndexError, ValueError):
            return None
        if not isinstance(call, dict) or call.get("name", "") not in self.names:
            return None
        return call

    async def run(self, turn: Turn, parsed: dict[str, Any]) -> Result:
        images = await self._images(turn)
        if isinstance(images, str):
            return images, False, False
        args = parsed.get("arguments")
        if "arguments" not in parsed:
            return "Missing 'arguments' in the tool call.", False, False
        if not isinstance(args, dict):
            kind = type(args)
            return (
                f"'arguments' should be a dictionary of parameters key-value pairs, got {kind}.",
                False,
                False,
            )
        if parsed["name"] == "select_frames":
            obs, valid = await self._frames(turn, args, images)
        else:
            obs, valid = await self._zoom(turn, args, images)
        return obs, False, valid

    async def _images(self, turn: Turn) -> list[dict[str, Any]] | str:
        """The session's images, the task's (``extra_fields.images``) uploaded first."""
        listed = await turn.call("media", {"action": "list"})
        if not listed.ok:
            return f"Error processing image: {failure(listed)}"
        images = list((listed.data or {}).get("images") or [])
        if images:
            return images
        for source in turn.extra.get("images") or []:
            if not isinstance(source, str):
                return "Error processing image: extra_fields images must be strings"
            if source.startswith("data:"):
                payload = source.split(",", 1)[-1]
                added = await turn.call("media", {"action": "add", "data": payload})
            else:
                added = await turn.call("media", {"action": "add", "path": source})
            if not added.ok:
                return f"Error processing image: {failure(added)}"
            images.append(added.data or {})
        return images

    async def _crop(
        self, turn: Turn, index: int, box: list[float]
    ) -> tuple[str, tuple[int, int]] | str:
        obs = await turn.call(
            "image_crop",
            {"image": index, "bbox_2d": box, "coords": "normalized", "format": "jpeg"},
        )
        picture = next((p for p in obs.content if isinstance(p, ImagePart)), None)
        if not obs.ok or picture is None:
            return failure(obs)
        size = image_size(base64.b64decode(picture.data))
        return f"data:image/jpeg;base64,{picture.data}", size

    async def _zoom(
        self, turn: Turn, args: dict[str, Any], images: list[dict[str, Any]]
    ) -> tuple[ObsValue, bool]:
        missing = [k for k in ("bbox_2d", "target_image") if k not in args]
        target = args.get("target_image")
        with contextlib.suppress(TypeError, ValueError):
            target = int(target)  # type: ignore[arg-type]
        box = args.get("bbox_2d")
        if missing:
            return f"Missing parameters: {', '.join(missing)}", False
        if not isinstance(box, list) or len(box) != 4:
            return "Invalid bbox_2d format. It should be a list of four numbers.", False
        if not isinstance(target, int) or not 1 <= target <= len(images):
            return (
                "Invalid target_image index. It should be an integer between 1 and the number "
                f"of previous images ({len(images)}).",
                False,
            )
        info = images[target - 1]
        try:
            normalized = pixel_reasoner_box([float(v) for v in box], info["width"], info["height"])
        except (TypeError, ValueError, KeyError, ZeroDivisionError) as exc:
            return f"Error processing image: {exc}", False
        cropped = await self._crop(turn, target, normalized)
        if isinstance(cropped, str):
            return f"Error processing image: {cropped}", False
        url, (width, height) = cropped
        text = f"Here is the cropped image. (Image Size: {width}x{height})\n<image>"
        return {"obs": text, "image": url}, True

    async def _frames(
        self, turn: Turn, args: dict[str, Any], images: list[dict[str, Any]]
    ) -> tuple[ObsValue, bool]:
        frames = args.get("target_frames")
        if "target_frames" not in args:
            return "Missing parameters: target_frames", False
        if not isinstance(frames, list):
            return "Invalid target_frames format. It should be a list of integers.", False
        if not all(isinstance(f, int) and 1 <= f <= len(images) for f in frames) or not frames:
            return (
                "Invalid target_frames indices. Each index should be an integer between 1 and "
                f"the number of previous images ({len(images)}).",
                False,
            )
        urls, size = [], (0, 0)
        for frame in frames:
            cropped = await self._crop(turn, frame, [0.0, 0.0, 1.0, 1.0])
            if isinstance(cropped, str):
                return f"Error processing frames: {cropped}", False
            urls.append(cropped[0])
            size = size if urls[1:] else cropped[1]
        text = (
            f"Here are the selected frames. (Frame Size: {size[0]}x{size[1]}, Numbered 1 to "
            f"{len(urls)}):" + "<image>" * len(urls)
        )
        return {"obs": text, "image": urls}, True


def pixel_reasoner_box(box: list[float], width: int, height: int) -> list[float]:
    """Pixel-Reasoner's crop box, as fractions of the image: the box (fractions when every
    value is under 1, else pixels) grown by 10 % of the image per side (at most 600 pixels),
    clamped to the image."""
    pad_x, pad_y = min(0.1, 600.0 / width), min(0.1, 600.0 / height)
    if all(v < 1 for v in box):
        x1, y1, x2, y2 = box
    else:
        x1, y1, x2, y2 = box[0] / width, box[1] / height, box[2] / width, box[3] / height
    grown = (x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y)
    return [min(max(0.0, v), 1.0) for v in grown]


def image_size(data: bytes) -> tuple[int, int]:
    """Width and height of a JPEG (its SOF marker) or PNG (its IHDR), without decoding it
    (the gateway holds no imaging library)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            return int.from_bytes(data[i + 7 : i + 9], "big"), height
        i += 2 + length
    return 0, 0


# --------------------------------------------------------------------------- MCP


class McpInterface(VerlTool):
    """verl-tool's ``mcp_interface``: a ``<tool_call>`` JSON (or a ReAct JSON action) naming
    a tool of an MCP upstream toolfleet fronts (the mcp service: ``memory.create_entities``),
    by its full name or by ``server`` and ``name``; it runs in the trajectory's session. A
    call naming no upstream tool answers as verl-tool does when no server has it."""

    tool_type = "mcp_interface"
    usage = (
        'You can call remote MCP tools using <tool_call>{"name":..., "arguments":{...}}'
        "</tool_call>."
    )

    def parse(self, action: str) -> dict[str, Any] | None:
        if re.search(r"<tool_call>(.*?)</tool_call>", action, re.DOTALL):
            data = tool_call_json(action)
        else:
            try:
                plain = json.loads(action)
            except ValueError:
                return None
            data = None
            if isinstance(plain, dict) and isinstance(plain.get("action"), dict):
                a = plain["action"]
                data = {
                    "server": a.get("server"),
                    "name": a.get("tool"),
                    "arguments": a.get("arguments") or a.get("args") or {},
                }
            elif isinstance(plain, dict) and "tool" in plain and "arguments" in plain:
                data = {
                    "server": plain.get("server"),
                    "name": plain.get("tool"),
                    "arguments": plain.get("arguments"),
                }
        if not isinstance(data, dict) or "name" not in data:
            return None
        return data

    async def run(self, turn: Turn, parsed: dict[str, Any]) -> Result:
        name = parsed.get("name")
        server = parsed.get("server") or parsed.get("server_name") or parsed.get("server_label")
        tool = upstream_tool(turn.rt, None if server is None else str(server), str(name))
        if tool is None:
            if server is None:
                obs = {"obs": "", "error": "No MCP servers configured for this task.", "tool": name}
                return obs, True, False
            return (
                mcp_framed(
                    {
                        "error": f"no MCP server named {server!s} is configured",
                        "error_type": "MCPClientError",
                        "server": str(server),
                        "tool": name,
                    }
                ),
                False,
                True,
            )
        arguments = parsed.get("arguments")
        if isinstance(arguments, str):  # some models send the arguments as a JSON string
            with contextlib.suppress(ValueError):
                arguments = json.loads(arguments)
        if not isinstance(arguments, dict):
            arguments = {}
        obs = await turn.call(tool, arguments)
        where = {"server": tool.split(".")[0] if server is None else str(server), "tool": name}
        if not obs.ok:
            payload = {"error": failure(obs), "error_type": "MCPToolError", **where}
        else:
            payload = {**where, "result": text_of(obs)}
            if obs.data is not None:
                payload["structured_content"] = obs.data
        return mcp_framed(payload), False, True


#: Between an upstream's name and its tools' names (the mcp service's ``separator``).
UPSTREAM_SEPARATORS = (".", "__", "_", "-")


def upstream_tool(rt: Runtime, server: str | None, name: str) -> str | None:
    """The served upstream tool a call names: ``server`` + separator + ``name``, or ``name``
    itself when it is an upstream tool's full name, or the one upstream tool called ``name``."""
    mcp_tools = [s.name for s in rt.specs() if s.service == "mcp"]
    if server is not None:
        for sep in UPSTREAM_SEPARATORS:
            if f"{server}{sep}{name}" in mcp_tools:
                return f"{server}{sep}{name}"
        return None
    if name in mcp_tools:
        return name
    found = [t for t in mcp_tools if t.endswith((f".{name}", f"__{name}"))]
    return found[0] if len(found) == 1 else None


def mcp_framed(payload: dict[str, Any]) -> str:
    """An MCP answer as verl-tool's mcp_interface frames it."""
    return f"\n<mcp_response>\n```result\n{json.dumps(payload)}\n```\n</mcp_response>\n"


# --------------------------------------------------------------------------- the set

ALL: tuple[type[VerlTool], ...] = (
    PythonCode,
    IPythonCode,
    SearchRetrieval,
    GoogleSearch,
    Sql,
    BashTerminal,
    PixelReasoner,
    McpInterface,
)
BY_TYPE = {t.tool_type: t for t in ALL}
#: Served when the URL names no tool_type: each one whose toolfleet tools are served, in this
#: order (the first that recognises an action takes it; mcp_interface always comes last).
DEFAULT_TYPES = (
    "python_code",
    "ipython_code",
    "search_retrieval",
    "sql",
    "bash_terminal",
    "pixel_reasoner",
    "mcp_interface",
)


@dataclass
class ToolSet:
    """The tool types one request is served by, in verl-tool's order of recognition."""

    tools: list[VerlTool] = field(default_factory=list)

    def identify(self, action: str) -> tuple[VerlTool, Any] | None:
        """The first tool that recognises the action (mcp_interface last), and its parse."""
        ordered = [t for t in self.tools if t.tool_type != "mcp_interface"]
        ordered += [t for t in self.tools if t.tool_type == "mcp_interface"]
        for tool in ordered:
            parsed = tool.parse(action)
            if parsed is not None:
                return tool, parsed
        return None

    def usage(self) -> str:
        """verl-tool's ``available_tools`` text."""
        lines = [f"• {t.tool_type}: {t.usage}" for t in self.tools if t.usage]
        return (
            "\n".join(["Available tools:", *lines])
            if lines
            else ("No tools available for usage instructions.")
        )
