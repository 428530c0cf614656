"""Every GeoQuery gold query (618 question / SQL pairs on geography.sqlite) through the sql
tool returns exactly the rows a direct sqlite3 execution returns: same values and types,
same order, duplicates kept."""

from __future__ import annotations

import json

from tests.helpers.sql import GEOGRAPHY, GEOQUERY, direct, sql_gateway

BATCH = 64


async def test_every_geoquery_gold_query_returns_what_sqlite3_returns():
    pairs = [json.loads(line) for line in GEOQUERY.read_text().splitlines() if line.strip()]
    assert len(pairs) == 618
    async with sql_gateway(max_rows=5000, count_limit=5000) as client:
        observations = []
        for start in range(0, len(pairs), BATCH):
            calls = [
                {"tool": "sql", "arguments": {"db_id": "geography", "query": p["sql"]}}
                for p in pairs[start : start + BATCH]
            ]
            r = await client.post("/v1/calls", json={"calls": calls})
            assert r.status_code == 200, r.text
            observations += r.json()["observations"]
    mismatches = []
    for pair, obs in zip(pairs, observations, strict=True):
        expected = direct(GEOGRAPHY, pair["sql"])
        if not obs["ok"]:
            mismatches.append((pair["id"], obs["error"]["message"]))
            continue
        table = next(p for p in obs["content"] if p["type"] == "table")
        if table["rows"] != expected or table["row_count"] != len(expected):
            mismatches.append((pair["id"], "rows differ"))
        elif len(expected) != pair["result_rows"] or obs["truncated"]:
            mismatches.append((pair["id"], "row count differs from the dataset's"))
    assert mismatches == []
