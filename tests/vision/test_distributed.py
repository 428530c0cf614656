"""The vision service in worker processes (distributed mode over the Redis on this machine):
uploads travel as calls of the hidden media tool to the worker that holds the session, so
the tools find them there, in forks too."""

from __future__ import annotations

import pytest

from tests.helpers import call
from tests.helpers.cluster import Cluster
from tests.helpers.vision import IMAGES, VIDEOS, need_data


@pytest.fixture
def cluster(make_cluster) -> Cluster:
    need_data()
    return make_cluster()


async def test_vision_workers_hold_session_media(cluster: Cluster) -> None:
    for _ in range(2):  # two workers: a session's calls must all reach the one holding it
        cluster.start_worker("vision")
    cluster.wait_workers(2, timeout_s=120)
    async with cluster.gateway() as client:
        sids = [(await client.post("/v1/sessions")).json()["session_id"] for _ in range(4)]
        for sid in sids:
            r = await client.put(
                f"/v1/sessions/{sid}/media", content=(IMAGES / "rocket.jpg").read_bytes()
            )
            assert r.status_code == 201, r.text
            r = await client.put(
                f"/v1/sessions/{sid}/media", content=(VIDEOS / "car-detection.mp4").read_bytes()
            )
            assert r.status_code == 201, r.text
            obs = await call(client, "image_crop", {"bbox_2d": [0, 0, 100, 50]}, session_id=sid)
            assert obs["ok"], obs["error"]
            assert (obs["data"]["image"]["width"], obs["data"]["image"]["height"]) == (100, 50)
        fork = (await client.post(f"/v1/sessions/{sids[0]}/fork")).json()["session_id"]
        obs = await call(
            client, "image_crop", {"image": 2, "bbox_2d": [0, 0, 40, 40]}, session_id=fork
        )
        assert obs["ok"] and obs["data"]["source"]["width"] == 100
        obs = await call(client, "video_frames", {"num_frames": 2}, session_id=fork)
        assert obs["ok"] and [f["time_s"] for f in obs["data"]["frames"]] == [0.0, 30.08]
        listed = (await client.get(f"/v1/sessions/{fork}/media")).json()
        assert len(listed["images"]) == 5 and len(listed["videos"]) == 1
        for sid in [*sids, fork]:
            assert (await client.delete(f"/v1/sessions/{sid}")).status_code == 200
