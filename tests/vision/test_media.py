"""Media uploads through the REST API (/v1/sessions/{id}/media): raw bytes, base64, paths
under the media root, URLs on allowed hosts; content addressing; release with the session,
forks, limits; and every hostile upload gets its diagnostic while the service stays up."""

from __future__ import annotations

import base64
import http.server
import io
import struct
import threading
import zlib
from collections.abc import Iterator

import av
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from toolfleet.core.registry import ToolRegistry
from toolfleet.vision import tools_for
from toolfleet.vision.settings import VisionSettings

from tests.helpers import gateway, new_session
from tests.helpers.vision import (
    DATA,
    IMAGES,
    VIDEOS,
    call,
    image_of,
    need_data,
    ok,
    opened,
    same_pixels,
    upload,
    uploaded,
    vision_gateway,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROCKET = IMAGES / "rocket.jpg"
CAR = VIDEOS / "car-detection.mp4"
ROCKET_PATH = "/vision/images/rocket.jpg"  # under the test web server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    need_data()
    async with vision_gateway() as c:
        yield c


async def status(client) -> dict:
    return (await client.get("/readyz")).json()["services"]["vision"]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int) -> bytes:
    """A small PNG file declaring a ``side`` x ``side`` grayscale image of zeros."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (side + 1) * min(side, 64), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def audio_only_mp4() -> bytes:
    """An MP4 holding one second of AAC silence and no video."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=8000)
        stream.layout = "mono"
        samples = np.zeros((1, 8000), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


# ------------------------------------------------------------------ uploads


async def test_upload_is_content_addressed_and_listed(client):
    sid = await new_session(client)
    before = await status(client)
    first = await uploaded(client, sid, ROCKET)
    assert first["id"].startswith("img-") and first["index"] == 1
    assert (first["width"], first["height"], first["format"]) == (640, 427, "JPEG")
    assert first["bytes"] == ROCKET.stat().st_size
    again = await uploaded(client, sid, ROCKET)
    assert again["id"] == first["id"] and again["index"] == 2  # listed twice, stored once
    after = await status(client)
    assert after["media_bytes"] - before["media_bytes"] == ROCKET.stat().st_size
    video = await uploaded(client, sid, CAR)
    assert video["kind"] == "video" and video["index"] == 1 and video["id"].startswith("vid-")
    listed = (await client.get(f"/v1/sessions/{sid}/media")).json()
    assert [i["id"] for i in listed["images"]] == [first["id"]] * 2
    assert [v["frames"] for v in listed["videos"]] == [377]
    # download by number, by id, and the video
    for ref in ("2", first["id"]):
        r = await client.get(f"/v1/sessions/{sid}/media/{ref}")
        assert r.status_code == 200 and r.content == ROCKET.read_bytes()
        assert r.headers["content-type"] == "image/jpeg"
    r = await client.get(f"/v1/sessions/{sid}/media/1?kind=video")
    assert r.content == CAR.read_bytes() and r.headers["content-type"] == "video/mp4"
    r = await client.get(f"/v1/sessions/{sid}/media/7")
    assert r.status_code == 404


async def test_post_base64_and_one_source_only(client):
    sid = await new_session(client)
    data = base64.b64encode((IMAGES / "coins.png").read_bytes()).decode()
    r = await client.post(f"/v1/sessions/{sid}/media", json={"data": data})
    assert r.status_code == 201 and r.json()["mode"] == "L"
    r = await client.post(f"/v1/sessions/{sid}/media", json={"data": "not base64!"})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
    r = await client.post(f"/v1/sessions/{sid}/media", json={"data": data, "path": "x.png"})
    assert r.status_code == 400 and "exactly one" in r.json()["error"]["message"]
    r = await client.post(f"/v1/sessions/{sid}/media", json={"nope": 1})
    assert r.status_code == 422


async def test_unknown_session_and_no_vision_service(client):
    r = await upload(client, "s-nope", ROCKET)
    assert r.status_code == 404
    async with gateway() as plain:  # the test tools only
        sid = await new_session(plain)
        r = await upload(plain, sid, ROCKET)
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_media"


async def test_calls_of_a_trajectory_use_its_session_media(client):
    r = await client.post("/v1/sessions", json={"trajectory_id": "traj-vision-1"})
    sid = r.json()["session_id"]
    await uploaded(client, sid, ROCKET)
    r = await client.post(
        "/v1/tools/image_crop/call",
        json={
            "arguments": {"bbox_2d": [0, 0, 64, 64]},
            "session_id": sid,
            "trajectory_id": "traj-vision-1",
        },
    )
    assert r.json()["ok"] and r.json()["session_id"] == sid
    usage = (await client.get("/v1/trajectories/traj-vision-1/usage")).json()
    assert usage["tools"]["image_crop"]["calls"] == 1
    # the upload is booked to the session's trajectory under the hidden tool, at no cost
    assert usage["tools"]["media"] == usage["tools"]["media"] | {"calls": 1, "cost": 0.0}


# ------------------------------------------------------------------ hostile uploads


@pytest.mark.parametrize(
    ("make", "status_code", "kind", "words"),
    [
        (lambda: b"", 400, "invalid_arguments", "empty"),
        (lambda: b"just some text, not a picture\n" * 20, 400, "invalid_arguments", "not an image"),
        (lambda: b"%PDF-1.7\n" + b"0" * 500, 400, "invalid_arguments", "not an image"),
        (lambda: b"#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n", 400, "invalid_arguments", "not an"),
        (
            lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n",
            400,
            "invalid_arguments",
            "not an",
        ),
        (lambda: ROCKET.read_bytes()[:40_000], 400, "invalid_arguments", "truncated"),
        (
            lambda: (IMAGES / "coffee.png").read_bytes()[:100_000],
            400,
            "invalid_arguments",
            "truncated",
        ),
        (lambda: CAR.read_bytes()[:1_400_000], 400, "invalid_arguments", "truncated"),
        (lambda: CAR.read_bytes()[:3000], 400, "invalid_arguments", "truncated"),
        (
            lambda: (VIDEOS / "bottle-detection.mp4").read_bytes()[:250_000],
            400,
            "invalid_arguments",
            "truncated",
        ),
        (lambda: audio_only_mp4(), 400, "invalid_arguments", "no video stream"),
        (lambda: png_bomb(8000), 413, "memory_limit", "decompression bomb"),  # 64 Mpx
        (lambda: png_bomb(100_000), 413, "memory_limit", "decode"),  # 10 Gpx
    ],
)
async def test_hostile_uploads_get_diagnostics(client, make, status_code, kind, words):
    sid = await new_session(client)
    r = await upload(client, sid, make())
    assert r.status_code == status_code, r.text
    error = r.json()["error"]
    assert error["code"] == kind
    assert words in error["message"]
    # nothing was kept, and the service still works
    assert (await client.get(f"/v1/sessions/{sid}/media")).json()["images"] == []
    await uploaded(client, sid, ROCKET)
    await ok(client, "image_crop", sid, bbox_2d=[0, 0, 100, 100])


async def test_size_pixel_and_frame_limits():
    async with vision_gateway(
        max_image_bytes=100_000, max_video_pixels=300_000, max_video_frames=300
    ) as c:
        sid = await new_session(c)
        r = await upload(c, sid, ROCKET)  # 112525 bytes
        assert r.status_code == 413 and "over the limit" in r.json()["error"]["message"]
        r = await upload(c, sid, CAR)  # 768x432 frames
        assert r.status_code == 413 and "768x432" in r.json()["error"]["message"]
    async with vision_gateway(max_video_frames=300) as c:
        sid = await new_session(c)
        r = await upload(c, sid, CAR)  # 377 frames
        assert r.status_code == 413 and "more than 300 frames" in r.json()["error"]["message"]


# ------------------------------------------------------------------ sources


async def test_paths_under_the_media_root(tmp_path):
    (tmp_path / "outside.png").write_bytes((IMAGES / "coins.png").read_bytes())
    root = tmp_path / "root"
    root.mkdir()
    (root / "escape.png").symlink_to(tmp_path / "outside.png")
    async with vision_gateway(media_root=DATA) as c:
        sid = await new_session(c)
        r = await c.post(f"/v1/sessions/{sid}/media", json={"path": "images/rocket.jpg"})
        assert r.status_code == 201
        assert r.json()["bytes"] == ROCKET.stat().st_size
        r = await c.post(f"/v1/sessions/{sid}/media", json={"path": "videos/car-detection.mp4"})
        assert r.status_code == 201 and r.json()["kind"] == "video"
        for path, code in (
            ("../SOURCES.md", 403),
            ("/etc/passwd", 403),
            ("images/../../../../etc/hostname", 403),
            ("images/missing.png", 404),
            ("images", 404),
        ):
            r = await c.post(f"/v1/sessions/{sid}/media", json={"path": path})
            assert r.status_code == code, (path, r.text)
    async with vision_gateway(media_root=root) as c:
        sid = await new_session(c)
        r = await c.post(f"/v1/sessions/{sid}/media", json={"path": "escape.png"})
        assert r.status_code == 403  # a symlink out of the root
    async with vision_gateway() as c:  # no media root
        sid = await new_session(c)
        r = await c.post(f"/v1/sessions/{sid}/media", json={"path": "images/rocket.jpg"})
        assert r.status_code == 403 and "no media root" in r.json()["error"]["message"]


@pytest.fixture
def web() -> Iterator[str]:
    """A local HTTP server over ../shared/data (and a redirect to another host)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(DATA.parent), **kwargs)

        def do_GET(self):
            if self.path == "/away":
                self.send_response(302)
                self.send_header("Location", f"http://localhost:{self.server.server_port}/x")
                self.end_headers()
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


async def test_urls_only_when_enabled_and_only_allowed_hosts(web):
    async with vision_gateway() as c:
        sid = await new_session(c)
        r = await c.post(f"/v1/sessions/{sid}/media", json={"url": f"{web}{ROCKET_PATH}"})
        assert r.status_code == 403 and "off" in r.json()["error"]["message"]
    async with vision_gateway(url_fetch=True, allowed_hosts=["127.0.0.1"]) as c:
        sid = await new_session(c)
        r = await c.post(f"/v1/sessions/{sid}/media", json={"url": f"{web}{ROCKET_PATH}"})
        assert r.status_code == 201 and r.json()["bytes"] == ROCKET.stat().st_size
        port = web.rsplit(":", 1)[1]
        for url, code in (
            (f"http://localhost:{port}{ROCKET_PATH}", 403),  # host not allowed
            (f"{web}/away", 403),  # redirect to a host not allowed
            (f"{web}/vision/images/missing.jpg", 404),
            ("file:///etc/passwd", 400),
            (f"{web}/SOURCES.md", 400),  # fetched, but not media
        ):
            r = await c.post(f"/v1/sessions/{sid}/media", json={"url": url})
            assert r.status_code == code, (url, r.text)


# ------------------------------------------------------------------ lifetime


async def test_media_released_when_sessions_end_and_forks_share_it():
    async with vision_gateway() as c:
        a = await new_session(c)
        await uploaded(c, a, ROCKET)
        await uploaded(c, a, CAR)
        size = ROCKET.stat().st_size + CAR.stat().st_size
        assert (await status(c))["media_bytes"] == size
        b = (await c.post(f"/v1/sessions/{a}/fork")).json()["session_id"]
        assert (await status(c))["media_bytes"] == size  # a fork copies no bytes
        crop = await ok(c, "image_crop", b, bbox_2d=[0, 0, 200, 100], format="png")
        assert crop["data"]["image"]["index"] == 2
        assert len((await c.get(f"/v1/sessions/{a}/media")).json()["images"]) == 1
        assert (await c.delete(f"/v1/sessions/{a}")).status_code == 200
        # the fork keeps what it holds after its parent ends
        again = await ok(c, "image_crop", b, image=1, bbox_2d=[0, 0, 200, 100], format="png")
        assert same_pixels(image_of(again), opened(ROCKET).crop((0, 0, 200, 100)))
        await ok(c, "video_frames", b, num_frames=1)
        assert (await c.delete(f"/v1/sessions/{b}")).status_code == 200
        final = await status(c)
        assert final["media_bytes"] == 0 and final["media"] == 0 and final["decoded_cached"] == 0


async def test_session_limits():
    async with vision_gateway(max_session_media=2) as c:
        sid = await new_session(c)
        await uploaded(c, sid, ROCKET)
        await uploaded(c, sid, IMAGES / "coins.png")
        r = await upload(c, sid, IMAGES / "camera.png")
        assert r.status_code == 413 and "limit of 2" in r.json()["error"]["message"]
        obs = await call(c, "image_crop", sid, bbox_2d=[0, 0, 50, 50])
        assert obs["error"]["kind"] == "output_limit" and obs["error"]["hint"]
    async with vision_gateway(max_session_bytes=200_000) as c:
        sid = await new_session(c)
        await uploaded(c, sid, ROCKET)  # 112525 bytes
        await uploaded(c, sid, ROCKET)  # the same file again costs nothing
        r = await upload(c, sid, IMAGES / "chelsea.png")  # 240512 bytes
        assert r.status_code == 413


async def test_other_tenants_cannot_reach_the_media():
    keys = {"key-a": "team-a", "key-b": "team-b"}
    async with gateway(ToolRegistry(tools_for(VisionSettings())), api_keys=keys) as c:
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        sid = (await c.post("/v1/sessions", headers=a)).json()["session_id"]
        r = await c.put(f"/v1/sessions/{sid}/media", content=ROCKET.read_bytes(), headers=a)
        assert r.status_code == 201
        for request in (
            c.put(f"/v1/sessions/{sid}/media", content=ROCKET.read_bytes(), headers=b),
            c.get(f"/v1/sessions/{sid}/media", headers=b),
            c.get(f"/v1/sessions/{sid}/media/1", headers=b),
        ):
            assert (await request).status_code == 404
        assert (await c.get(f"/v1/sessions/{sid}/media")).status_code == 401


async def test_modes_are_normalized_and_kinds_kept_apart(client):
    sid = await new_session(client)
    palette = Image.new("P", (40, 30))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.info["transparency"] = 0
    sixteen = Image.new("I;16", (40, 30), 40_000)
    for image, mode in ((palette, "RGBA"), (sixteen, "L")):
        out = io.BytesIO()
        image.save(out, "PNG", **({"transparency": 0} if image.mode == "P" else {}))
        assert (await uploaded(client, sid, out.getvalue()))["mode"] == mode
    # JPEG output of a transparent image: alpha flattened onto white
    obs = await ok(client, "image_crop", sid, image=1, bbox_2d=[0, 0, 40, 30], format="jpeg")
    assert image_of(obs).convert("RGB").getpixel((20, 15)) >= (250, 250, 250)
    video = await uploaded(client, sid, CAR)
    obs = await call(client, "image_crop", sid, image=video["id"], bbox_2d=[0, 0, 40, 30])
    assert obs["error"]["kind"] == "not_found"


async def test_batch_upload_through_the_hidden_tool(client):
    sid = await new_session(client)
    calls = [
        {
            "tool": "media",
            "session_id": sid,
            "arguments": {"action": "add", "data": base64.b64encode(path.read_bytes()).decode()},
        }
        for path in (ROCKET, IMAGES / "coins.png")
    ]
    r = await client.post("/v1/calls", json={"calls": calls})
    observations = r.json()["observations"]
    assert all(o["ok"] for o in observations)
    assert sorted(o["data"]["index"] for o in observations) == [1, 2]
    names = {t["name"] for t in (await client.get("/v1/tools")).json()["tools"]}
    assert "media" not in names
