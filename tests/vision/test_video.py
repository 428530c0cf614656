"""video_info and video_frames through the gateway, on the real videos of
../shared/data/vision: every frame returned is checked against the same time decoded
independently (PyAV, every frame from the start), so seeking lands on the right frames."""

from __future__ import annotations

import asyncio
import gc
import time
from functools import cache

import av
import numpy as np
import pytest
import pytest_asyncio

from tests.helpers import new_session, text
from tests.helpers.vision import (
    VIDEOS,
    call,
    decode,
    image_of,
    images_of,
    need_data,
    ok,
    same_pixels,
    uploaded,
    vision_gateway,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

CAR, BOTTLE = 1, 2  # the session's videos
NAMES = {CAR: "car-detection.mp4", BOTTLE: "bottle-detection.mp4"}


@cache
def frame_times(name: str) -> list[float]:
    """Every frame's time (from the first frame), decoding the video in order from the start
    with default options: no seeking, no frame skipping."""
    with av.open(str(VIDEOS / name)) as container:
        stream = container.streams.video[0]
        times = [f.time for f in container.decode(stream)]
    return [t - times[0] for t in times]


def shown_at(name: str, t: float) -> int:
    """The number of the frame shown at time ``t``: the last one starting at or before it."""
    return max(0, int(np.searchsorted(frame_times(name), t + 1e-6, side="right")) - 1)


def pixels_of(name: str, numbers: set[int]) -> dict[int, np.ndarray]:
    """RGB pixels of the frames with these numbers, decoding in order from the start."""
    found = {}
    with av.open(str(VIDEOS / name)) as container:
        stream = container.streams.video[0]
        for n, frame in enumerate(container.decode(stream)):
            if n in numbers:
                found[n] = frame.to_ndarray(format="rgb24")
            if len(found) == len(numbers):
                break
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    need_data()
    async with vision_gateway() as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sid(client):
    session = await new_session(client)
    for number, name in NAMES.items():
        assert (await uploaded(client, session, VIDEOS / name))["index"] == number
    return session


def check_frames(obs: dict, video: int, requested: list[float]) -> None:
    """Each returned frame is the one shown at its requested time, pixel for pixel."""
    name = NAMES[video]
    frames = obs["data"]["frames"]
    parts = images_of(obs)
    assert len(frames) == len(parts) == len(requested)
    numbers = [shown_at(name, t) for t in requested]
    pixels = pixels_of(name, set(numbers))
    for want, n, frame, part in zip(requested, numbers, frames, parts, strict=True):
        assert frame["requested_s"] == pytest.approx(want, abs=1e-9)
        at = frame_times(name)[n]
        assert frame["time_s"] == pytest.approx(at, abs=1e-6)
        assert np.array_equal(np.asarray(decode(part)), pixels[n]), f"frame at {want} s differs"
        assert f"at {at:.2f} s" in text(obs)


async def test_video_info(client, sid):
    car = (await ok(client, "video_info", sid, video=CAR))["data"]
    assert car["frames"] == len(frame_times(NAMES[CAR])) == 377
    assert (car["width"], car["height"], car["fps"], car["codec"]) == (768, 432, 12.5, "h264")
    assert car["duration_s"] == pytest.approx(30.16)
    assert car["has_audio"] is True
    obs = await ok(client, "video_info", sid, video=BOTTLE)
    bottle = obs["data"]
    assert bottle["frames"] == len(frame_times(NAMES[BOTTLE])) == 1189
    assert bottle["fps"] == pytest.approx(29.83, abs=0.01)
    assert bottle["duration_s"] == pytest.approx(39.85, abs=0.01)
    assert bottle["has_audio"] is False
    assert "39.85 s" in text(obs)


@pytest.mark.parametrize("video", [CAR, BOTTLE])
async def test_evenly_spaced_frames_are_the_frames_at_their_times(client, sid, video):
    obs = await ok(client, "video_frames", sid, video=video, num_frames=8, format="png")
    duration = obs["data"]["video"]["duration_s"]
    check_frames(obs, video, [k * duration / 7 for k in range(8)])


async def test_exact_timestamps(client, sid):
    stamps = [0.0, 0.001, 1.234, 4.79, 4.8, 12.3456, 29.99, 30.16]
    obs = await ok(client, "video_frames", sid, video=CAR, timestamps=stamps, format="png")
    check_frames(obs, CAR, stamps)
    stamps = [33.6, 0.5, 8.4, 8.38]  # any order, B-frames and keyframe edges
    obs = await ok(client, "video_frames", sid, video=BOTTLE, timestamps=stamps, format="png")
    check_frames(obs, BOTTLE, stamps)


async def test_range_with_fps(client, sid):
    obs = await ok(
        client, "video_frames", sid, video=BOTTLE, start_time=5, end_time=7, fps=2, format="png"
    )
    check_frames(obs, BOTTLE, [5.0, 5.5, 6.0, 6.5, 7.0])
    obs = await ok(client, "video_frames", sid, video=CAR, start_time=10, end_time=20, num_frames=1)
    assert obs["data"]["frames"][0]["requested_s"] == 15.0


async def test_frames_are_jpeg_by_default_scaled_and_croppable(client, sid):
    obs = await ok(client, "video_frames", sid, video=CAR, num_frames=3, max_pixels=50_000)
    parts = images_of(obs)
    assert all(p["mime_type"] == "image/jpeg" for p in parts)
    assert all(p["width"] * p["height"] <= 50_000 for p in parts)
    assert (parts[0]["width"], parts[0]["height"]) == (298, 167)  # 768x432 * 0.388, aspect kept
    frame = obs["data"]["frames"][1]
    cropped = await ok(
        client, "image_crop", sid, image=frame["index"], bbox_2d=[0, 0, 100, 80], format="png"
    )
    assert same_pixels(image_of(cropped), decode(parts[1]).crop((0, 0, 100, 80)))
    assert cropped["data"]["source"]["id"] == frame["id"]


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"num_frames": 10_000}, "at most 64"),
        ({"fps": 30}, "at most 64"),  # 30 fps over 30 s: 905 frames
        ({"timestamps": [1.0] * 65}, "at most 64"),
        ({"timestamps": [31.0]}, "outside the video"),
        ({"start_time": 40}, "past the end"),
        ({"start_time": 10, "end_time": 5}, "empty"),
        ({"num_frames": 4, "fps": 1}, "not both"),
        ({"timestamps": [1.0], "num_frames": 2}, "not both"),
        ({"num_frames": 0}, "num_frames"),
    ],
)
async def test_bad_frame_requests_get_diagnostics(client, sid, arguments, words):
    obs = await call(client, "video_frames", sid, video=CAR, **arguments)
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "invalid_arguments"
    assert words in obs["error"]["message"]


async def test_missing_video(client, sid):
    obs = await call(client, "video_frames", sid, video=3)
    assert obs["error"]["kind"] == "not_found" and "numbered 1 to 2" in obs["error"]["message"]
    other = await new_session(client)
    obs = await call(client, "video_info", other)
    assert obs["error"]["kind"] == "not_found" and "no videos" in obs["error"]["message"]


async def test_decode_past_the_timeout_is_a_diagnostic_and_the_service_stays_up():
    async with vision_gateway(workers=1, frame_jobs=1) as c:
        session = await new_session(c)
        await uploaded(c, session, VIDEOS / "bottle-detection.mp4")
        obs = await call(c, "video_frames", session, timeout_s=0.05, num_frames=64, format="png")
        assert obs["ok"] is False
        assert obs["error"]["kind"] == "timeout"
        # the thread notices the deadline and frees itself; then the service answers again
        for _ in range(100):
            status = (await c.get("/readyz")).json()["services"]["vision"]
            if status["threads_busy"] == 0:
                break
            await asyncio.sleep(0.05)
        assert status["threads_busy"] == 0
        obs = await ok(c, "video_frames", session, num_frames=2)
        assert len(images_of(obs)) == 2


async def test_limits_on_frames_and_decoding():
    async with vision_gateway(max_frames=4, max_decode_frames=100) as c:
        session = await new_session(c)
        await uploaded(c, session, VIDEOS / "bottle-detection.mp4")
        obs = await call(c, "video_frames", session, num_frames=5)
        assert "at most 4" in obs["error"]["message"]
        obs = await call(c, "video_frames", session, num_frames=4)  # GOPs of 250 frames
        assert obs["error"]["kind"] == "output_limit"
        assert "decoded" in obs["error"]["message"]
        obs = await ok(c, "video_frames", session, timestamps=[0.0, 1.0])  # 30 frames: fine
        assert len(images_of(obs)) == 2


async def test_decoding_does_not_block_the_event_loop(client, sid):
    gc.collect()  # the suite's garbage: a collection of it here would stall this process's
    gc.disable()  # loop (~0.5 s once, at the end of a CI run), which is not what is measured
    try:
        decoding = asyncio.create_task(
            call(client, "video_frames", sid, video=BOTTLE, num_frames=48, format="png")
        )
        await asyncio.sleep(0.02)
        worst, probes = 0.0, 0
        while not decoding.done():
            started = time.perf_counter()
            assert (await client.get("/healthz")).status_code == 200
            worst = max(worst, time.perf_counter() - started)
            probes += 1
            await asyncio.sleep(0.01)
        assert (await decoding)["ok"]
    finally:
        gc.enable()
    assert probes >= 3
    # the loop kept answering while threads decoded and encoded
    assert worst < 0.25, f"{probes} probes, the slowest {worst:.3f} s"
