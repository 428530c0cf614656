"""Trainer adapters: model turns → calls, observations → each trainer's text. No network."""

from __future__ import annotations

import json
import random

import pytest
from toolfleet.client.adapters import (
    SEARCH_R1_INVALID,
    FencedCodeParser,
    FirstOf,
    HermesParser,
    HermesRenderer,
    ParsedCall,
    ReToolRenderer,
    SearchR1Renderer,
    SkyRLRenderer,
    TagParser,
    ToRLRenderer,
    Truncation,
    VerlToolRenderer,
    assistant_message,
    final_answer,
    formats,
    observation_text,
    stop_at,
    tool_messages,
    truncation,
)
from toolfleet.core.protocol import (
    ErrorDiagnostic,
    ErrorKind,
    ImagePart,
    JsonPart,
    Observation,
    TablePart,
    TextPart,
    ToolCall,
)

from tests.helpers.tools import PNG_1x1


def text_obs(text: str, tool: str = "python") -> Observation:
    return Observation(ok=True, tool=tool, call_id="c1", content=[TextPart(text=text)])


def failed(
    kind: ErrorKind, message: str, text: str = "", hint: str | None = "Try again."
) -> Observation:
    content = [TextPart(text=text)] if text else []
    diagnostic = ErrorDiagnostic(kind=kind, message=message, hint=hint, detail="the detail")
    return Observation.failure("python", "c2", diagnostic, content=content)


def search_obs() -> Observation:
    hits = [
        {"id": "7", "title": "ABC", "text": "ABC was founded by Edward Noble.", "score": 3.2},
        {"id": "9", "title": "NBC", "text": "NBC is older.", "score": 1.1},
    ]
    return Observation(
        ok=True,
        tool="search",
        call_id="s1",
        content=[TextPart(text="Doc 1(Title: ABC) ...")],
        data={"results": [hits]},
    )


class WordTokenizer:
    """A stand-in tokenizer: one token per whitespace-separated word."""

    def __init__(self) -> None:
        self.vocab: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = []
        for word in text.split(" "):
            if word not in self.vocab:
                self.vocab.append(word)
            ids.append(self.vocab.index(word))
        return ids

    def decode(self, ids: list[int]) -> str:
        return " ".join(self.vocab[i] for i in ids)


# --------------------------------------------------------------------------- Hermes / Qwen

QWEN_TURN = """I'll compute the factorial, then list the files.
<tool_call>
{"name": "python", "arguments": {"code": "import math\\nprint(math.factorial(10))"}}
</tool_call>
<tool_call>
{"name": "bash", "arguments": "{\\"command\\": \\"ls -la\\"}"}
</tool_call>"""


def test_hermes_reads_object_and_string_arguments_in_order():
    result = HermesParser().parse(QWEN_TURN)
    assert not result.errors
    assert [(c.tool, c.arguments) for c in result.calls] == [
        ("python", {"code": "import math\nprint(math.factorial(10))"}),
        ("bash", {"command": "ls -la"}),
    ]
    assert [c.id for c in result.calls] == ["call_0", "call_1"]
    first = result.calls[0]
    assert QWEN_TURN[first.start : first.end] == first.raw
    assert first.raw.startswith("<tool_call>") and first.raw.endswith("</tool_call>")


def test_hermes_first_or_last_block_only():
    assert [c.tool for c in HermesParser(select="last").parse(QWEN_TURN).calls] == ["bash"]
    assert [c.tool for c in HermesParser(select="first").parse(QWEN_TURN).calls] == ["python"]


def test_hermes_accepts_a_last_block_whose_stop_string_was_stripped():
    turn = 'Let me run it.\n<tool_call>\n{"name": "python", "arguments": {"code": "1+1"}}\n'
    result = HermesParser().parse(turn)
    assert [(c.tool, c.arguments) for c in result.calls] == [("python", {"code": "1+1"})]
    # the end-of-turn token a decoder may leave is not part of the JSON
    result = HermesParser().parse(turn + "<|im_end|>")
    assert result.calls and not result.errors
    # strict: an unclosed block is an error, not a call
    strict = HermesParser(allow_unclosed=False).parse(turn)
    assert not strict.calls
    assert strict.errors[0].message == "<tool_call> is not closed by </tool_call>"


def test_hermes_block_left_open_before_another_is_an_error_and_the_next_still_counts():
    turn = (
        '<tool_call>{"name": "python", "arguments": {"code": "1"}}\n'
        '<tool_call>{"name": "python", "arguments": {"code": "2"}}</tool_call>'
    )
    result = HermesParser().parse(turn)
    assert [c.arguments["code"] for c in result.calls] == ["2"]
    assert len(result.errors) == 1 and "not closed" in result.errors[0].message


def test_hermes_malformed_json_is_a_clear_error_never_an_exception():
    turn = (
        "<tool_call>\n"
        '{"name": "python", "arguments": {"code": "print(1)"}\n'  # a brace short
        "</tool_call>\n"
        '<tool_call>{"name": "python", "arguments": {"code": "print(2)"}}</tool_call>'
    )
    result = HermesParser().parse(turn)
    assert [c.arguments["code"] for c in result.calls] == ["print(2)"]
    (error,) = result.errors
    assert error.message.startswith("<tool_call> block is not valid JSON: Expecting")
    assert "line 1" in error.message
    assert error.raw.startswith("<tool_call>") and turn[error.start : error.end] == error.raw
    obs = error.observation()
    assert not obs.ok and obs.error.kind == ErrorKind.invalid_arguments
    assert "<tool_call>" in obs.error.hint


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "<tool_call> block is empty"),
        ('{"arguments": {"code": "1"}}', 'has no "name"'),
        ('{"name": "", "arguments": {}}', 'has no "name"'),
        ('{"name": "python", "arguments": [1, 2]}', "must be a JSON object, not list"),
        ('{"name": "python", "arguments": "{not json"}', "a string that is not valid JSON"),
        ('"python"', "must hold a JSON object, not str"),
        ("just words", "not valid JSON"),
    ],
)
def test_hermes_reports_what_is_wrong(body, message):
    result = HermesParser().parse(f"<tool_call>{body}</tool_call>")
    assert not result.calls
    assert message in result.errors[0].message


def test_hermes_lenient_forms_models_write():
    # a raw newline inside a JSON string (code written across lines)
    raw_newline = (
        '<tool_call>{"name": "python", "arguments": {"code": "x = 1\nprint(x)"}}</tool_call>'
    )
    assert HermesParser().parse(raw_newline).calls[0].arguments == {"code": "x = 1\nprint(x)"}
    assert HermesParser(lenient=False).parse(raw_newline).errors
    # Python-literal dicts, "parameters" for "arguments", a fenced JSON body
    single = "<tool_call>{'name': 'bash', 'parameters': {'command': 'pwd'}}</tool_call>"
    assert HermesParser().parse(single).calls[0].arguments == {"command": "pwd"}
    fenced = (
        '<tool_call>\n```json\n{"name": "bash", "arguments": {"command": "pwd"}}\n```\n</tool_call>'
    )
    assert HermesParser().parse(fenced).calls[0].tool == "bash"
    # no arguments at all, or an empty string of them
    assert HermesParser().parse('<tool_call>{"name": "noop"}</tool_call>').calls[0].arguments == {}
    empty = '<tool_call>{"name": "noop", "arguments": ""}</tool_call>'
    assert HermesParser().parse(empty).calls[0].arguments == {}


def test_hermes_openai_shape_lists_and_ids():
    turn = (
        "<tool_call>["
        '{"id": "call_abc", "type": "function", "function": {"name": "python", '
        '"arguments": "{\\"code\\": \\"1\\"}"}},'
        '{"name": "bash", "arguments": {"command": "ls"}}'
        "]</tool_call>"
    )
    result = HermesParser().parse(turn)
    assert [(c.id, c.tool) for c in result.calls] == [("call_abc", "python"), ("call_1", "bash")]
    assert result.calls[0].arguments == {"code": "1"}


def test_hermes_known_tools():
    result = HermesParser(known_tools={"python", "bash"}).parse(
        '<tool_call>{"name": "pyhton", "arguments": {"code": "1"}}</tool_call>'
    )
    (error,) = result.errors
    assert error.message == "there is no tool named 'pyhton'"
    assert error.hint == "Call one of: bash, python."
    assert error.observation().tool == "pyhton"


def test_no_call_is_an_empty_result():
    result = HermesParser().parse("The answer is 42.")
    assert result.empty and result.tool_calls() == []


def test_parsed_calls_become_batch_calls():
    result = HermesParser().parse(QWEN_TURN)
    calls = result.tool_calls(trajectory_id="t-1", timeout_s=5)
    assert all(isinstance(c, ToolCall) for c in calls)
    assert calls[1].model_dump(exclude_none=True) == {
        "tool": "bash",
        "arguments": {"command": "ls -la"},
        "trajectory_id": "t-1",
        "timeout_s": 5.0,
    }


# --------------------------------------------------------------------------- tags and fences

SEARCH_R1_TURN = (
    "<think>I need the founder of ABC. Let me search.</think>\n"
    "<search> founder of the American Broadcasting Company </search>"
)


def test_search_tag_first_or_last():
    first = TagParser("search", "search", "query").parse(
        SEARCH_R1_TURN + "\n<search>second</search>"
    )
    assert [c.arguments for c in first.calls] == [
        {"query": "founder of the American Broadcasting Company"}
    ]
    last = TagParser("search", "search", "query", select="last").parse(
        SEARCH_R1_TURN + "\n<search>second</search>"
    )
    assert [c.arguments for c in last.calls] == [{"query": "second"}]
    both = TagParser("search", "search", "query", select="all").parse(
        SEARCH_R1_TURN + "\n<search>second</search>"
    )
    assert len(both.calls) == 2


def test_tags_empty_unclosed_and_missing():
    parser = TagParser("search", "search", "query")
    assert parser.parse("<search>   </search>").errors[0].message == "<search> block is empty"
    # the stop string </search> stripped by the engine: accepted at the end of the turn
    assert parser.parse("<think>hm</think><search>who is X").calls[0].arguments == {
        "query": "who is X"
    }
    assert parser.parse("<search>a <search>b</search>").errors[0].message == (
        "<search> is not closed by </search>"
    )
    assert parser.parse("I know it: <answer>Paris</answer>").empty


def test_sql_tag_with_extra_arguments():
    turn = "<think>Count the singers.</think>\n<sql>SELECT count(*) FROM singer</sql>"
    parsed = formats.skyrl_sql("concert_singer").parse(turn)
    assert parsed.calls[0].tool == "sql"
    assert parsed.calls[0].arguments == {
        "db_id": "concert_singer",
        "format": "skyrl",
        "query": "SELECT count(*) FROM singer",
    }


def test_python_tags_joined_into_one_program():
    turn = "<python>x = 2</python> then <python>print(x * 21)</python>"
    (call,) = formats.verl_tool_python().parse(turn).calls
    assert call.arguments == {"code": "x = 2\nprint(x * 21)"}
    assert call.raw == turn[turn.index("<python>") :]


FENCED_TURN = """Let me check with code.
```python
def f(n):
    return n * 2
```
Not this one:
```output
4
```
and now
```py
print(f(21))
```"""


def test_fenced_python_blocks():
    last = FencedCodeParser().parse(FENCED_TURN)
    assert [c.arguments["code"] for c in last.calls] == ["print(f(21))"]
    every = FencedCodeParser(select="all").parse(FENCED_TURN)
    assert [c.arguments["code"] for c in every.calls] == [
        "def f(n):\n    return n * 2",
        "print(f(21))",
    ]
    joined = FencedCodeParser(select="all", join="\n").parse(FENCED_TURN)
    assert joined.calls[0].arguments["code"] == "def f(n):\n    return n * 2\nprint(f(21))"
    # a block still open at the end (generation stopped) is taken
    assert FencedCodeParser().parse("```python\nprint(1)\n").calls[0].arguments == {
        "code": "print(1)"
    }
    assert FencedCodeParser().parse("```python\n\n```").errors[0].message.endswith("is empty")
    assert FencedCodeParser().parse("```json\n{}\n```").empty


def test_retool_code_tag_unwraps_its_fence():
    turn = "Compute it.\n<code>\n```python\nprint(sum(range(10)))\n```\n</code>"
    (call,) = formats.retool().parse(turn).calls
    assert (call.tool, call.arguments) == ("python", {"code": "print(sum(range(10)))"})
    # a bare fence when the model forgot <code>
    assert formats.retool().parse("```python\nprint(1)\n```").calls[0].arguments == {
        "code": "print(1)"
    }


def test_first_of_takes_the_first_parser_that_finds_something():
    parser = FirstOf(HermesParser(), TagParser("python", "python", "code"))
    assert parser.parse("<python>1</python>").calls[0].arguments == {"code": "1"}
    assert parser.parse('<tool_call>{"name": "bash"}</tool_call><python>1</python>').calls[
        0
    ].tool == ("bash")
    assert parser.parse("nothing here").empty


def test_final_answer_and_stop_at():
    assert final_answer("<think>x</think><answer> Edward Noble </answer>") == "Edward Noble"
    assert final_answer("<answer>a</answer><answer>b</answer>") == "b"
    assert final_answer("<answer>a</answer><answer>b</answer>", select="first") == "a"
    assert final_answer("<answer>unfinished") is None
    assert final_answer("<solution>SELECT 1</solution>", tag="solution") == "SELECT 1"
    generated = "<search>q</search> and then <answer>x</answer> more"
    assert stop_at(generated, ["</search>", "</answer>"]) == "<search>q</search>"
    assert stop_at("no stops", ["</search>"]) == "no stops"


def test_parsers_never_raise_on_garbage():
    rng = random.Random(8)
    pieces = [
        "<tool_call>", "</tool_call>", "{", "}", "[", "]", '"name"', ":", '"python"', ",",
        '"arguments"', '"{\\"code\\": 1}"', "<search>", "</search>", "<python>", "</python>",
        "```python\n", "```", "\n", "<code>", "</code>", "'", "\\", "null", "<|im_end|>", "x",
    ]  # fmt: skip
    parsers = [
        HermesParser(),
        HermesParser(select="last", allow_unclosed=False),
        TagParser("search", "search", "query", select="all"),
        FencedCodeParser(select="all", join="\n"),
        formats.retool().parser,
        formats.verl_tool_python().parser,
    ]
    for _ in range(500):
        turn = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        for parser in parsers:
            result = parser.parse(turn)
            for call in result.calls:
                assert isinstance(call.arguments, dict) and call.tool
            for error in result.errors:
                assert error.message and error.observation().error is not None


# --------------------------------------------------------------------------- rendering


def test_observation_text_of_each_part_and_of_failures():
    table = TablePart(columns=["name", "age"], rows=[["Ann", 31], [None, 4]], row_count=5)
    picture = ImagePart(mime_type="image/png", data=PNG_1x1, width=1, height=1)
    obs = Observation(
        ok=True, tool="t", call_id="1", content=[table, JsonPart(data={"k": [1, 2]}), picture]
    )
    assert observation_text(obs) == (
        "| name | age |\n|---|---|\n| Ann | 31 |\n| NULL | 4 |\n(2 of 5 rows shown)\n"
        '{"k": [1, 2]}\n[image 1x1]'
    )
    assert observation_text(obs, image="").endswith("]}")
    # a tool that writes text (the sql tool's rendering of its table): the text only
    rendered = obs.model_copy(update={"content": [table, TextPart(text="  0  1\nAnn 31\n")]})
    assert observation_text(rendered) == "  0  1\nAnn 31"
    # the interpreter printed the error itself: only the hint is added
    traceback = "Traceback ...\nZeroDivisionError: division by zero"
    own = failed(ErrorKind.runtime_error, "ZeroDivisionError: division by zero", traceback)
    assert observation_text(own) == traceback + "\nHint: Try again."
    assert observation_text(own, hints=False) == traceback
    # no content: the diagnostic with its detail
    bare = failed(ErrorKind.invalid_arguments, "code: Field required")
    assert observation_text(bare) == (
        "Error (invalid_arguments): code: Field required\nthe detail\nHint: Try again."
    )
    # content that does not say it
    other = failed(ErrorKind.timeout, "timed out after 5 s", "partial output")
    assert observation_text(other) == (
        "partial output\nError (timeout): timed out after 5 s\nHint: Try again."
    )
    assert observation_text(other, errors=False) == "partial output"
    # a tool's text that says the message and the hint: neither said again
    hinted = failed(ErrorKind.timeout, "ran out of time", "ran out of time\nTry again.")
    assert observation_text(hinted) == "ran out of time\nTry again."


def test_search_r1_information_block():
    text = SearchR1Renderer().render(search_obs())
    assert text == (
        "\n\n<information>Doc 1(Title: ABC) ABC was founded by Edward Noble.\n"
        "Doc 2(Title: NBC) NBC is older.</information>\n\n"
    )
    # several queries in one call
    two = search_obs().model_copy(
        update={"data": {"results": [search_obs().data["results"][0][:1]] * 2}}
    )
    assert "</information>" in SearchR1Renderer().render(two)
    assert "ABC was founded by Edward Noble.\n---\nDoc 1(Title: ABC)" in (
        SearchR1Renderer().render(two)
    )
    # a failed search reads as its diagnostic
    down = Observation.failure(
        "search",
        "x",
        ErrorDiagnostic(kind=ErrorKind.unavailable, message="index not loaded", retryable=True),
    )
    assert SearchR1Renderer().render(down) == (
        "\n\n<information>Error (unavailable): index not loaded</information>\n\n"
    )
    assert SearchR1Renderer().invalid() == SEARCH_R1_INVALID
    assert "<search> and </search>" in SEARCH_R1_INVALID


def test_search_r1_truncates_the_whole_observation_in_tokens():
    tokenizer = WordTokenizer()
    cap = truncation.search_r1(tokenizer, max_obs_length=6)
    text = SearchR1Renderer(truncation=cap).render(search_obs())
    assert text == "\n\n<information>Doc 1(Title: ABC) ABC was founded"
    assert len(tokenizer.encode(text)) == 6


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ("<python>print(6*7)</python>", "\n<result>\n42\n</result>\n"),
        ("I run it: ```python\nprint(6*7)\n```", "\n```result\n42\n```\n"),
        ("```python\nprint(6*7)\n```\n```output", "\n42\n```\n"),
        (
            '<tool_call>{"name": "python", "arguments": {"code": "print(6*7)"}}</tool_call>',
            "\n<tool_response>\n```result\n42\n```\n</tool_response>\n",
        ),
        ("<python>print(6*7)</python>\n<result>", "\n42\n</result>\n"),
    ],
)
def test_verl_tool_result_follows_the_turn(turn, expected):
    assert VerlToolRenderer().render(text_obs("42\n"), turn) == expected


def test_verl_tool_output_tag_and_left_truncation():
    assert VerlToolRenderer(tag="output").render(text_obs("1"), "<python>1</python>") == (
        "\n<output>\n1\n</output>\n"
    )
    cap = truncation.verl_tool(WordTokenizer(), max_obs_length=3)  # side left: keep the end
    rendered = VerlToolRenderer(truncation=cap).render(text_obs("a b c d e"), "<python>")
    assert rendered == "c d e\n</result>\n...(truncated)"  # the last 3 "words", as verl-tool


def test_skyrl_observation_and_reminder():
    assert SkyRLRenderer().render(text_obs("1")) == "\n\n<observation>1</observation>\n\n"
    renderer = SkyRLRenderer(turns_left=4)
    assert renderer.render(text_obs(" 0\n 3")) == (
        "\n\n<observation> 0\n 3\n<reminder>You have 4 turns left to complete the task."
        "</reminder></observation>\n\n"
    )
    message = renderer.message(text_obs("x"), turns_left=1)
    assert message["role"] == "user" and "You have 1 turns left" in message["content"]


def test_skyrl_sql_observations_as_skyrl_shows_them():
    """The sql tool's observations with format="skyrl" (as the gateway answers them)."""
    ok = Observation.model_validate(
        {
            "ok": True,
            "tool": "sql",
            "call_id": "1",
            "content": [
                {
                    "type": "table",
                    "columns": ["name", "age"],
                    "rows": [["Ann", 31]],
                    "row_count": 1,
                },
                {"type": "text", "text": "  0  1\nAnn 31"},
            ],
        }
    )
    wrong = Observation.model_validate(
        {
            "ok": False,
            "tool": "sql",
            "call_id": "2",
            "content": [
                {
                    "type": "text",
                    "text": "Error executing SQL: no such column: nme, db file: demo/demo.sqlite",
                }
            ],
            "error": {
                "kind": "not_found",
                "message": "no such column: nme",
                "hint": "Did you mean singer.name?",
            },
        }
    )
    faithful = formats.skyrl_sql("demo", turns_left=3, hints=False)
    assert faithful.render(ok) == (
        "\n\n<observation>  0  1\nAnn 31\n<reminder>You have 3 turns left to complete the task."
        "</reminder></observation>\n\n"
    )
    assert faithful.render(wrong, turns_left=2) == (
        "\n\n<observation>Error executing SQL: no such column: nme, db file: demo/demo.sqlite\n"
        "<reminder>You have 2 turns left to complete the task.</reminder></observation>\n\n"
    )
    hinted = formats.skyrl_sql("demo", turns_left=2).render(wrong)
    assert "demo.sqlite\nHint: Did you mean singer.name?\n<reminder>" in hinted


def test_skyrl_sql_truncation_keeps_the_first_rows():
    rows = "\n".join(f"{i:>6}" for i in range(2000))
    text, cut = truncation.SKYRL_SQL.apply("     0\n" + rows)
    assert cut
    assert text.startswith("Truncated to 50 lines since returned response too long:      0\n")
    assert text.count("\n") == 50
    assert truncation.SKYRL_SQL.apply("short") == ("short", False)


def test_torl_retool_hermes_wrappers():
    assert ToRLRenderer().render(text_obs("3628800\n")) == "\n```output\n3628800\n```\n"
    assert ReToolRenderer().render(text_obs("45")) == "\n\n<interpreter>\n45\n</interpreter>\n\n"
    two = [text_obs("a"), failed(ErrorKind.syntax_error, "SyntaxError: bad", "SyntaxError: bad")]
    assert HermesRenderer().render(two) == (
        "<tool_response>\na\n</tool_response>\n"
        "<tool_response>\nSyntaxError: bad\nHint: Try again.\n</tool_response>"
    )
    chatml = HermesRenderer(chatml=True).render(text_obs("a"))
    assert chatml == (
        "<|im_end|>\n<|im_start|>user\n<tool_response>\na\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_truncation_options():
    assert Truncation(max_chars=4).apply("abcdefgh") == ("abcd", True)
    assert Truncation(max_chars=4, keep="tail", marker="…").apply("abcdefgh") == ("…efgh", True)
    assert Truncation(max_chars=5, keep="both", marker="[cut]").apply("0123456789") == (
        "01[cut]89",
        True,
    )
    # verl's tool agent loop: max_tool_response_length characters, by truncate side (0.8 on:
    # left keeps the end; before, the start)
    text = "x" * 3 + "y" * 10 + "z" * 3
    assert truncation.verl(6, "left").apply(text) == ("(truncated)...yyyzzz", True)
    assert truncation.verl(6, "right").apply(text) == ("xxxyyy...(truncated)", True)
    old = truncation.verl(6, "left", since_0_8=False)
    assert old.apply(text) == ("xxxyyy...(truncated)", True)
    assert truncation.verl(6).apply(text) == ("xxx...(truncated)...zzz", True)
    assert truncation.verl(16).apply(text) == (text, False)
    assert Truncation(max_chars=4, prefix="(cut) ").apply("abcdefgh") == ("(cut) abcd", True)
    assert Truncation(max_chars=10).apply("short") == ("short", False)
    with pytest.raises(ValueError, match="tokenizer"):
        Truncation(max_tokens=5)
    with pytest.raises(ValueError, match="max_chars or max_tokens"):
        Truncation()
    # body scope keeps the wrapper's tags intact
    body = ReToolRenderer(truncation=Truncation(max_chars=3, marker="…")).render(text_obs("abcdef"))
    assert body == "\n\n<interpreter>\nabc…\n</interpreter>\n\n"
    whole = ToRLRenderer(truncation=Truncation(max_chars=8, scope="whole")).render(text_obs("abc"))
    assert whole == "\n```outp"


def test_openai_and_hermes_tool_messages():
    calls = HermesParser().parse(QWEN_TURN).calls
    observations = [
        text_obs("3628800"),
        Observation(
            ok=True,
            tool="bash",
            call_id="2",
            content=[
                TextPart(text="a.png"),
                ImagePart(mime_type="image/png", data=PNG_1x1, width=1, height=1),
            ],
        ),
    ]
    openai = tool_messages(calls, observations)
    assert openai == [
        {"role": "tool", "content": "3628800", "tool_call_id": "call_0"},
        {"role": "tool", "content": "a.png\n[image 1x1]", "tool_call_id": "call_1"},
    ]
    hermes = tool_messages(calls, observations, style="hermes", images="parts")
    assert hermes[0] == {"role": "tool", "content": "3628800", "name": "python"}
    assert hermes[1]["content"] == [
        {"type": "text", "text": "a.png"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1x1}"}},
    ]
    # a parse error's observation has no call
    error = HermesParser().parse("<tool_call>{oops</tool_call>").errors[0]
    (message,) = tool_messages([None], [error.observation()])
    assert message["tool_call_id"] == "invalid_0"
    assert message["content"].startswith("Error (invalid_arguments): <tool_call> block is not")
    with pytest.raises(ValueError):
        tool_messages(calls, observations[:1])
    # the assistant message that made the calls
    assistant = assistant_message("I'll compute.", calls)
    assert assistant["tool_calls"][1] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "bash", "arguments": json.dumps({"command": "ls -la"})},
    }


def test_formats_round_trip():
    fmt = formats.search_r1(top_k=3)
    parsed = fmt.parse(SEARCH_R1_TURN)
    assert parsed.calls[0].arguments == {
        "top_k": 3,
        "query": "founder of the American Broadcasting Company",
    }
    assert fmt.render([search_obs()], SEARCH_R1_TURN).startswith("\n\n<information>Doc 1")
    assert fmt.answer("<answer>Edward Noble</answer>") == "Edward Noble"
    assert "</search>" in fmt.stop
    torl = formats.torl()
    assert torl.parse(FENCED_TURN).calls[0].arguments == {"code": "print(f(21))"}
    assert torl.answer("anything") is None and torl.stop == ("```output",)
    sql = formats.skyrl_sql("db", turns_left=2)
    assert "2 turns left" in sql.render(text_obs("x"))
    assert "1 turns left" in sql.render(text_obs("x"), turns_left=1)
    assert sql.answer("<solution>SELECT 1</solution>") == "SELECT 1"
    hermes = formats.hermes()
    assert len(hermes.parse(QWEN_TURN).calls) == 2
    assert hermes.render(text_obs("ok")) == "<tool_response>\nok\n</tool_response>"
    assert formats.verl_tool_search().parse("<search>a</search><search>b</search>").calls[
        0
    ].arguments == {"query": "b"}


def test_parsed_call_is_a_batch_call():
    call = ParsedCall("python", {"code": "1"}, "call_0")
    assert call.to_tool_call(session_id="s-1").session_id == "s-1"
