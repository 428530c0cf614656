"""The other image tools through the gateway (rotate, flip, resize, draw boxes), the tool
list, and the resize rule behind space='resized'."""

from __future__ import annotations

import pytest
import pytest_asyncio
from PIL import Image
from toolfleet.vision.geometry import smart_resize

from tests.helpers import new_session, text
from tests.helpers.vision import (
    IMAGES,
    call,
    image_of,
    need_data,
    ok,
    opened,
    same_pixels,
    uploaded,
    vision_gateway,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROCKET, CAMERA, CHART = 1, 2, 3  # the session's images


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    need_data()
    async with vision_gateway() as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sid(client):
    session = await new_session(client)
    for name in ("rocket.jpg", "camera.png", "chart_line_color.png"):
        await uploaded(client, session, IMAGES / name)
    return session


async def test_smart_resize_rule():
    factor, lo, hi = 28, 56 * 56, 28 * 28 * 1280
    assert smart_resize(300, 451, factor, lo, hi) == (308, 448)  # nearest multiples of 28
    assert smart_resize(1080, 1920, factor, lo, hi) == (728, 1316)  # over max_pixels
    assert smart_resize(20, 30, factor, lo, hi) == (56, 84)  # under min_pixels
    h, w = smart_resize(1080, 1920, factor, lo, hi)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= hi


async def test_tools_listed_media_hidden(client):
    tools = {t["name"]: t for t in (await client.get("/v1/tools")).json()["tools"]}
    assert set(tools) == {
        "image_crop",
        "image_rotate",
        "image_resize",
        "image_flip",
        "image_draw_boxes",
        "video_info",
        "video_frames",
    }
    assert tools["image_rotate"]["input_schema"]["required"] == ["degrees", "direction"]
    assert all(t["service"] == "vision" and t["stateful"] for t in tools.values())
    assert "box" in tools["image_crop"]["output_schema"]["properties"]
    openai = (await client.get("/v1/tools?format=openai")).json()
    assert {f["function"]["name"] for f in openai} == set(tools)


# ------------------------------------------------------------------ rotate


async def test_rotate_clockwise_90_moves_the_top_left_to_the_top_right(client, sid):
    source = opened(IMAGES / "rocket.jpg")  # 640x427
    obs = await ok(
        client, "image_rotate", sid, image=ROCKET, degrees=90, direction="clockwise", format="png"
    )
    got = image_of(obs)
    assert got.size == (427, 640)
    assert "clockwise" in text(obs)
    w, h = source.size
    for x, y in ((0, 0), (10, 3), (w - 1, 0), (5, h - 1)):
        # clockwise: (x, y) goes to (h - 1 - y, x)
        assert got.getpixel((h - 1 - y, x)) == source.getpixel((x, y))
    assert same_pixels(got, source.transpose(Image.Transpose.ROTATE_270))


async def test_rotate_counterclockwise_and_half_turn(client, sid):
    source = opened(IMAGES / "camera.png")
    obs = await ok(
        client, "image_rotate", sid, image=CAMERA, degrees=90, direction="counterclockwise"
    )
    got = image_of(obs)
    w, _ = source.size
    # counterclockwise: (x, y) goes to (y, w - 1 - x)
    assert got.getpixel((7, w - 1 - 3)) == source.getpixel((3, 7))
    obs = await ok(client, "image_rotate", sid, image=CAMERA, degrees=180, direction="clockwise")
    assert same_pixels(image_of(obs), source.transpose(Image.Transpose.ROTATE_180))


async def test_rotate_by_an_angle_expands_or_keeps_the_canvas(client, sid):
    obs = await ok(client, "image_rotate", sid, image=CAMERA, degrees=45, direction="clockwise")
    expected = opened(IMAGES / "camera.png").rotate(
        -45, resample=Image.Resampling.BICUBIC, expand=True
    )
    assert same_pixels(image_of(obs), expected)  # clockwise = Pillow's negative angle
    assert expected.size == (726, 726)  # 512 * sqrt(2) = 724.1, grown to whole pixels
    obs = await ok(
        client,
        "image_rotate",
        sid,
        image=CAMERA,
        degrees=30,
        direction="clockwise",
        expand=False,
        fill="white",
    )
    got = image_of(obs)
    assert got.size == (512, 512)
    assert got.getpixel((0, 0)) == 255  # uncovered corner filled white


async def test_rotate_needs_a_direction(client, sid):
    obs = await call(client, "image_rotate", sid, image=ROCKET, degrees=90)
    assert obs["error"]["kind"] == "invalid_arguments"
    assert "direction" in obs["error"]["message"]
    obs = await call(client, "image_rotate", sid, degrees=10, direction="clockwise", fill="nope")
    assert "colour" in obs["error"]["message"]


# ------------------------------------------------------------------ flip, resize, boxes


async def test_flip(client, sid):
    source = opened(IMAGES / "rocket.jpg")
    obs = await ok(client, "image_flip", sid, image=ROCKET, direction="horizontal", format="png")
    assert same_pixels(image_of(obs), source.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    obs = await ok(client, "image_flip", sid, image=ROCKET, direction="vertical", format="png")
    assert same_pixels(image_of(obs), source.transpose(Image.Transpose.FLIP_TOP_BOTTOM))


async def test_resize(client, sid):
    obs = await ok(client, "image_resize", sid, image=ROCKET, width=320)
    assert image_of(obs).size == (320, 214)  # 427 / 2 = 213.5, rounded
    obs = await ok(client, "image_resize", sid, image=CAMERA, scale=0.25)
    assert image_of(obs).size == (128, 128)
    obs = await ok(client, "image_resize", sid, image=CAMERA, width=100, height=50)
    assert image_of(obs).size == (100, 50)
    obs = await ok(client, "image_resize", sid, image=CAMERA, scale=16)  # 8192x8192: too big
    got = image_of(obs)
    assert got.width * got.height <= 2048 * 2048
    assert "pixels" in text(obs)
    obs = await call(client, "image_resize", sid, image=CAMERA)
    assert obs["error"]["kind"] == "invalid_arguments"
    obs = await call(client, "image_resize", sid, image=CAMERA, scale=2, width=10)
    assert obs["error"]["kind"] == "invalid_arguments"


async def test_draw_boxes(client, sid):
    boxes = [
        {"bbox_2d": [100, 100, 200, 150], "label": "left", "color": "#00ff00"},
        {"bbox_2d": [250, 200, 400, 300]},  # the palette's second colour
    ]
    obs = await ok(client, "image_draw_boxes", sid, image=CHART, boxes=boxes, line_width=3)
    got = image_of(obs).convert("RGB")
    assert got.getpixel((150, 149)) == (0, 255, 0)  # bottom edge of the first box
    assert got.getpixel((399, 250)) == (0, 192, 0)  # right edge of the second (palette green)
    assert "2 boxes" in text(obs)
    obs = await call(
        client, "image_draw_boxes", sid, image=CHART, boxes=[{"bbox_2d": [900, 900, 950, 950]}]
    )
    assert "outside" in obs["error"]["message"]
