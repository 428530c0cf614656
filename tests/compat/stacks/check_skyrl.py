"""skyrl-gym 0.4.0 against the gateway: its search environment on ``/retrieve`` (it posts
``{"query": …}``), and SkyRL-SQL's observation from toolfleet's sql tool compared byte for
byte with what SkyRL's own SQL tool group writes on the same database file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas
import pytest
from skyrl_gym.envs.search.env import SearchEnv, SearchEnvConfig
from skyrl_gym.tools.sql import SQLCodeExecutorToolGroup
from toolfleet.client import ToolfleetClient
from toolfleet.client.adapters import SkyRLRenderer

URL = os.environ["TOOLFLEET_URL"]
SQL_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "sql"


def test_search_env_step() -> None:
    env = SearchEnv(
        SearchEnvConfig(search_url=f"{URL}/retrieve", topk=3, log_requests=False),
        extras={"reward_spec": {"ground_truth": {"target": ["1973"]}}, "max_turns": 3},
    )
    env.init("Question?")
    out = env.step("I search. <search>oil crisis embargo</search>")
    content = out["observations"][0]["content"]
    assert content.startswith("\n<information>") and content.endswith("</information>\n")
    # SkyRL's own rendering: a JSON object around "Doc i: <contents>" lines
    passages = json.loads(content[len("\n<information>") : -len("</information>\n")])["result"]
    assert passages.startswith('Doc 1: "1973 oil crisis"\nThe 1973 oil crisis')
    assert passages.count("\nDoc ") == 2
    assert env.step("<answer>1973</answer>")["done"] is True


def toolfleet_observation(client: ToolfleetClient, db_id: str, query: str, left: int) -> str:
    """docs/trainers/skyrl.md's ToolfleetSQLEnv._execute_tool."""
    render = SkyRLRenderer(turns_left=left, hints=False)
    args = {"db_id": db_id, "query": query, "format": "skyrl"}
    return render.render(client.call("sql", args, timeout_s=5))


def both(tmp_path: Path, query: str) -> tuple[str, str]:
    """(toolfleet's observation, SkyRL's own) for ``query`` on Chinook, 4 turns left."""
    (tmp_path / "chinook").mkdir(exist_ok=True)
    link = tmp_path / "chinook" / "chinook.sqlite"
    if not link.exists():
        link.symlink_to(SQL_DATA / "chinook.sqlite")
    theirs = SQLCodeExecutorToolGroup(db_file_path=str(tmp_path)).sql("chinook", query, 4)
    with ToolfleetClient(URL) as client:
        ours = toolfleet_observation(client, "chinook", query, 4)
    return ours, theirs


@pytest.mark.parametrize(
    "query",
    [
        "SELECT Name, ArtistId FROM Artist WHERE ArtistId < 5",
        "SELECT Name FROM Artist WHERE ArtistId < 0",
        "SELECT t.Name, t.Milliseconds / 1000.0 FROM Track t WHERE TrackId < 20",
        "SELECT DISTINCT Name FROM Genre",
    ],
)
def test_sql_observation_same_lines(tmp_path: Path, query: str) -> None:
    """The same text but for the order of the rows: SkyRL renders a frozenset of the rows,
    whose order follows Python's per-process string hashing (its own runs differ);
    toolfleet keeps the database's order."""
    ours, theirs = both(tmp_path, query)
    assert sorted(ours.split("\n")) == sorted(theirs.split("\n"))
    assert ours.split("\n")[:3] == theirs.split("\n")[:3]  # up to the header line


def test_sql_differences_that_are_listed(tmp_path: Path) -> None:
    """docs/trainers/skyrl.md lists these."""
    # NULL: toolfleet prints None, as pandas 2 does; pandas >= 3 infers a string column and
    # prints NaN (what SkyRL shows depends on the trainer's pandas)
    ours, theirs = both(tmp_path, "SELECT Composer FROM Track WHERE TrackId IN (63, 64)")
    assert "None" in ours
    if int(pandas.__version__.split(".")[0]) >= 3:
        theirs = theirs.replace(" NaN", "None")
    assert sorted(ours.split("\n")) == sorted(theirs.split("\n"))
    # an error names the database file: SkyRL its path on the trainer's disk, toolfleet
    # db_id/db_id.sqlite
    ours, theirs = both(tmp_path, "SELECT nope FROM Artist")
    assert "Error executing SQL: no such column: nope, db file: " in ours
    path = str(tmp_path / "chinook" / "chinook.sqlite")
    assert theirs.replace(path, "chinook/chinook.sqlite") == ours
    # over 9,000 characters: the first 50 rows, which depend on the row order above
    ours, theirs = both(tmp_path, "SELECT * FROM Track")
    assert ours.split("\n")[2].startswith("<observation>Truncated to 50 lines since returned")
    assert theirs.split("\n")[2].startswith("<observation>Truncated to 50 lines since returned")
    assert len(ours.split("\n")) == len(theirs.split("\n"))
    # a write: SkyRL runs it in a transaction it rolls back; toolfleet refuses it
    ours, theirs = both(tmp_path, "DELETE FROM Artist WHERE ArtistId = 1")
    assert "Empty DataFrame" in theirs
    assert "Error executing SQL" in ours
