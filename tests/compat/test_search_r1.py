"""Search-R1 and FlashRAG against a live gateway, with Search-R1's own client code
(``_batch_search`` posts with no status check and reads ``['result']``; ``_passages2string``
formats the passages): every well-formed request its training loop sends is answered."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.helpers.compat import search_r1_batch, search_r1_batch_search, search_r1_passages

NOTICE = "X-Toolfleet-Notice"


def question_for(row: dict) -> str:
    """A query made of the passage's own words (its title and first words)."""
    title = row["contents"].split("\n")[0].strip('"')
    return f"{title} " + " ".join(row["contents"].split("\n")[1].split()[:12])


def test_passages_read_as_search_r1_server_gives_them(
    live_gateway: str, wiki_corpus: tuple[Path, list[dict]]
) -> None:
    rows = wiki_corpus[1]
    row = rows[0]
    url = f"{live_gateway}/retrieve"
    body = search_r1_batch_search(url, [question_for(row)], topk=3)
    top = body["result"][0][0]
    assert set(top) == {"document", "score"} and top["document"]["id"] == row["id"]
    assert top["document"]["contents"] == row["contents"]  # verbatim, quotes and all
    formatted = search_r1_passages(body["result"][0])
    title, text = row["contents"].split("\n", 1)
    assert formatted.startswith(f'Doc 1(Title: "{title.strip(chr(34))}") {text}\n')
    assert formatted.count("\nDoc ") == 2


def test_every_batch_shape_of_the_training_loop_is_answered(
    live_gateway: str, wiki_corpus: tuple[Path, list[dict]]
) -> None:
    url = f"{live_gateway}/retrieve"
    rows = wiki_corpus[1]
    # a turn where no trajectory searched
    assert search_r1_batch_search(url, [], topk=3) == {"result": []}
    # one empty <search></search> in a batch: its result is empty, the others are found
    queries = [question_for(rows[1]), "", "   ", question_for(rows[2])]
    r = requests.post(url, json={"queries": queries, "topk": 3, "return_scores": True})
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert [len(x) for x in result] == [3, 0, 0, 3]
    assert result[0][0]["document"]["id"] == rows[1]["id"]
    assert "empty queries 1, 2" in r.headers[NOTICE]
    # a query over the tool's 2,000 characters is searched by its start, and says so
    long_query = question_for(rows[3]) + " filler" * 500
    r = requests.post(url, json={"queries": [long_query], "topk": 3})
    assert r.status_code == 200, r.text
    assert r.json()["result"][0][0]["id"] == rows[3]["id"]
    assert "longer than 2000 characters" in r.headers[NOTICE]
    # train_ppo.sh's batch (512) and GRPO's (x5): searched in chunks, in order
    many = [question_for(rows[i % 40]) for i in range(2560)]
    passages = search_r1_batch(url, many, topk=3)
    assert len(passages) == 2560 and all(p.count("Doc ") == 3 for p in passages)
    assert passages[0] == passages[40] == passages[2520]
    assert f'(Title: "{rows[7]["contents"].split(chr(10))[0].strip(chr(34))}")' in passages[7]


def test_topk_up_to_the_cap_and_zero_means_default(live_gateway: str) -> None:
    url = f"{live_gateway}/retrieve"
    words = "american world war city state year first government people new"
    sixty = search_r1_batch_search(url, [words], topk=60)["result"][0]
    assert len(sixty) == 60
    scores = [d["score"] for d in sixty]
    assert scores == sorted(scores, reverse=True)
    assert len(search_r1_batch_search(url, ["oil crisis"], topk=0)["result"][0]) == 3
    plain = requests.post(url, json={"queries": ["oil crisis"]}).json()["result"][0]
    assert len(plain) == 3 and set(plain[0]) == {"id", "contents"}
    over = requests.post(url, json={"queries": ["oil"], "topk": 5000})
    assert over.status_code == 400 and "5000" in over.json()["error"]["message"]


def test_skyrl_posts_one_query(live_gateway: str) -> None:
    body = {"query": "oil crisis embargo", "topk": 3, "return_scores": True}
    result = requests.post(f"{live_gateway}/retrieve", json=body).json()["result"]
    assert len(result) == 1 and len(result[0]) == 3


def test_flashrag_routes_default_to_ten_and_answer_empty_queries(live_gateway: str) -> None:
    docs = requests.post(f"{live_gateway}/search", json={"query": "oil crisis"}).json()
    assert len(docs) == 10 and set(docs[0]) == {"id", "contents"}
    docs, scores = requests.post(
        f"{live_gateway}/search", json={"query": "oil crisis", "top_n": 2, "return_score": True}
    ).json()
    assert len(docs) == len(scores) == 2
    batch = requests.post(
        f"{live_gateway}/batch_search", json={"query": ["oil crisis", "", "Super Bowl"]}
    ).json()
    assert [len(b) for b in batch] == [10, 0, 10]
    assert requests.post(f"{live_gateway}/search", json={"query": ""}).json() == []
