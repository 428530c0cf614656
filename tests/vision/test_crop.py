"""image_crop through the gateway, on the real images of ../shared/data/vision: each
coordinate convention against a direct Pillow crop, padding, clamping, the 28-pixel and
aspect-ratio rules, output encoding and size, and crops of crops."""

from __future__ import annotations

import base64
import io
import math

import pytest
import pytest_asyncio
from PIL import Image

from tests.helpers import new_session, text
from tests.helpers.vision import (
    IMAGES,
    call,
    decode,
    image_of,
    need_data,
    ok,
    opened,
    same_pixels,
    uploaded,
    vision_gateway,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

NAMES = [
    "astronaut.png",
    "camera.png",
    "chart_line_color.png",
    "chart_stacked_bar_weather.png",
    "chelsea.png",
    "coffee.png",
    "coins.png",
    "hubble_deep_field.jpg",
    "rocket.jpg",
]
NUMBER = {name: i for i, name in enumerate(NAMES, start=1)}  # position in the session's list


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def client():
    need_data()
    async with vision_gateway() as c:
        yield c


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sid(client):
    """A session holding every image, uploaded in NAMES order (images 1 to 9)."""
    session = await new_session(client)
    for name in NAMES:
        record = await uploaded(client, session, IMAGES / name)
        assert record["index"] == NUMBER[name]
    return session


async def crop(client, sid, name, box, **arguments):
    """Crop image ``name`` (as PNG unless told) and return (observation, pixels)."""
    arguments.setdefault("format", "png")
    obs = await ok(client, "image_crop", sid, image=NUMBER[name], bbox_2d=box, **arguments)
    return obs, image_of(obs)


# ------------------------------------------------------------------ conventions


@pytest.mark.parametrize("name", NAMES)
async def test_pixel_crop_matches_pillow_on_every_image(client, sid, name):
    source = opened(IMAGES / name)
    w, h = source.size
    box = [w * 0.21 + 0.4, h * 0.33 + 0.6, w * 0.77 + 0.2, h * 0.9 + 0.3]
    # every pixel the box touches
    expected = (math.floor(box[0]), math.floor(box[1]), math.ceil(box[2]), math.ceil(box[3]))
    obs, got = await crop(client, sid, name, box)
    assert obs["data"]["box"] == list(expected)
    assert same_pixels(got, source.crop(expected).convert(got.mode))
    assert got.mode == source.mode  # RGB, RGBA and L stay what they are


@pytest.mark.parametrize(
    ("coords", "box"),
    [
        ("normalized", [0.1, 0.2, 0.55, 0.8]),
        ("normalized_1000", [100, 200, 550, 800]),
    ],
)
async def test_normalized_crops(client, sid, coords, box):
    # chelsea is 451x300: x1 = 45.1 -> 45, y1 = 60, x2 = 248.05 -> 249, y2 = 240 (0.8 * 300
    # is 240.00000000000003 in floating point: still 240)
    obs, got = await crop(client, sid, "chelsea.png", box, coords=coords)
    assert obs["data"]["box"] == [45, 60, 249, 240]
    assert same_pixels(got, opened(IMAGES / "chelsea.png").crop((45, 60, 249, 240)))


async def test_resized_space_maps_through_smart_resize(client, sid):
    # chelsea 451x300 -> smart_resize (factor 28) -> 448x308; the box is in that image:
    # x * 451/448, y * 300/308: [56.375, 27.27, 225.5, 150] -> [56, 27, 226, 150]
    obs, got = await crop(client, sid, "chelsea.png", [56, 28, 224, 154], space="resized")
    assert obs["data"]["box"] == [56, 27, 226, 150]
    assert same_pixels(got, opened(IMAGES / "chelsea.png").crop((56, 27, 226, 150)))
    # normalised boxes mean the same in both spaces
    a, _ = await crop(client, sid, "chelsea.png", [0.1, 0.2, 0.5, 0.6], coords="normalized")
    b, _ = await crop(
        client, sid, "chelsea.png", [0.1, 0.2, 0.5, 0.6], coords="normalized", space="resized"
    )
    assert a["data"]["box"] == b["data"]["box"]


async def test_padding_in_the_box_units(client, sid):
    obs, _ = await crop(client, sid, "coffee.png", [100, 100, 200, 200], padding=10)
    assert obs["data"]["box"] == [90, 90, 210, 210]
    obs, _ = await crop(
        client, sid, "coffee.png", [0.2, 0.2, 0.4, 0.4], coords="normalized", padding=0.05
    )
    assert obs["data"]["box"] == [90, 60, 270, 180]  # coffee is 600x400


async def test_box_is_clamped_to_the_image(client, sid):
    obs, got = await crop(client, sid, "rocket.jpg", [-50, -20, 100, 80])
    assert obs["data"]["box"] == [0, 0, 100, 80]
    assert "clamped" in " ".join(obs["data"]["notes"])
    assert same_pixels(got, opened(IMAGES / "rocket.jpg").crop((0, 0, 100, 80)))


# ------------------------------------------------------------------ the 28-pixel rule


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ([300, 200, 310, 205], [291, 188, 319, 216]),  # 10x5, about its centre (305, 202.5)
        ([0, 0, 5, 5], [0, 0, 28, 28]),  # at the top-left corner: kept inside
        ([635, 420, 640, 427], [612, 399, 640, 427]),  # at the bottom-right corner
        ([100, 100, 300, 110], [100, 91, 300, 119]),  # only the short side grows
    ],
)
async def test_sides_under_28_px_are_enlarged_about_the_centre(client, sid, box, expected):
    obs, got = await crop(client, sid, "rocket.jpg", box)  # 640x427
    assert obs["data"]["box"] == expected
    assert min(got.size) >= 28
    assert same_pixels(got, opened(IMAGES / "rocket.jpg").crop(tuple(expected)))
    assert "enlarged" in text(obs)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    ("box", "coords", "words"),
    [
        ([200, 100, 100, 200], "pixels", "empty"),
        ([100, 100, 100, 200], "pixels", "empty"),
        ([0, 100, 600, 105], "pixels", "100 times"),  # 600x5: aspect 120
        ([10, 10, 11, 112], "pixels", "100 times"),  # 1x102
        ([700, 500, 800, 600], "pixels", "outside"),
        ([10, 10, 200, 200], "normalized", "0 to 1"),
        ([10, 10, 2000, 200], "normalized_1000", "0 to 1000"),
    ],
)
async def test_bad_boxes_get_diagnostics(client, sid, box, coords, words):
    obs = await call(
        client, "image_crop", sid, image=NUMBER["coffee.png"], bbox_2d=box, coords=coords
    )
    assert obs["ok"] is False
    assert obs["error"]["kind"] == "invalid_arguments"
    assert words in obs["error"]["message"]
    assert obs["error"]["hint"]


async def test_aspect_100_is_allowed(client, sid):
    obs, _ = await crop(client, sid, "coffee.png", [0, 100, 300, 103])  # 300x3: aspect 100
    assert obs["data"]["box"] == [0, 87, 300, 115]  # centre 101.5: 87.5 floored


async def test_malformed_arguments_and_missing_images(client, sid):
    obs = await call(client, "image_crop", sid, bbox_2d=[1, 2, 3])
    assert obs["error"]["kind"] == "invalid_arguments" and "bbox_2d" in obs["error"]["message"]
    obs = await call(client, "image_crop", sid, image=99, bbox_2d=[0, 0, 50, 50])
    assert obs["error"]["kind"] == "not_found"
    assert "numbered 1 to" in obs["error"]["message"]
    obs = await call(
        client, "image_crop", sid, image="img-000000000000000000000000", bbox_2d=[0, 0, 50, 50]
    )
    assert obs["error"]["kind"] == "not_found"
    obs = await call(client, "image_crop", None, bbox_2d=[0, 0, 50, 50])
    assert obs["error"]["kind"] == "invalid_arguments" and "session" in obs["error"]["message"]
    other = await new_session(client)
    obs = await call(client, "image_crop", other, bbox_2d=[0, 0, 50, 50])
    assert obs["error"]["kind"] == "not_found" and "no images" in obs["error"]["message"]


# ------------------------------------------------------------------ output


async def test_jpeg_sources_come_back_jpeg_with_their_size(client, sid):
    obs = await ok(client, "image_crop", sid, image=NUMBER["rocket.jpg"], bbox_2d=[0, 0, 320, 200])
    part = next(p for p in obs["content"] if p["type"] == "image")
    assert part["mime_type"] == "image/jpeg"
    assert (part["width"], part["height"]) == (320, 200)
    assert part["ref"] == obs["data"]["image"]["id"]
    got = decode(part)
    assert got.format == "JPEG"
    assert obs["data"]["image"]["bytes"] == len(base64.b64decode(part["data"]))
    # PNG sources come back PNG; quality changes the JPEG's size
    obs = await ok(client, "image_crop", sid, image=NUMBER["coffee.png"], bbox_2d=[0, 0, 300, 200])
    assert image_of(obs).format == "PNG"
    sizes = []
    for quality in (20, 95):
        obs = await ok(
            client,
            "image_crop",
            sid,
            image=NUMBER["coffee.png"],
            bbox_2d=[0, 0, 300, 200],
            format="jpeg",
            quality=quality,
        )
        sizes.append(obs["data"]["image"]["bytes"])
    assert sizes[0] < sizes[1]


async def test_max_pixels_scales_the_result_down(client, sid):
    obs, got = await crop(client, sid, "coffee.png", [0, 0, 600, 400], max_pixels=10_000)
    assert got.size == (122, 81)  # 600x400 * sqrt(10000 / 240000), floored
    assert "scaled down" in " ".join(obs["data"]["notes"])


async def test_results_join_the_image_list_and_can_be_cropped_again(client, sid):
    first, pixels = await crop(client, sid, "astronaut.png", [100, 50, 400, 350], label="face")
    assert "face" in text(first)
    ref = first["data"]["image"]
    assert ref["index"] > len(NAMES)
    for name in (-1, ref["index"], ref["id"]):  # -1 first: each crop appends a newer image
        again = await ok(
            client, "image_crop", sid, image=name, bbox_2d=[10, 20, 110, 120], format="png"
        )
        assert again["data"]["source"]["id"] == ref["id"]
        assert same_pixels(image_of(again), pixels.crop((10, 20, 110, 120)))
    listed = (await client.get(f"/v1/sessions/{sid}/media")).json()["images"]
    assert [i["index"] for i in listed] == list(range(1, len(listed) + 1))
    assert listed[ref["index"] - 1]["id"] == ref["id"]
    r = await client.get(f"/v1/sessions/{sid}/media/{ref['id']}")
    assert r.headers["content-type"] == "image/png"
    assert same_pixels(Image.open(io.BytesIO(r.content)).convert("RGB"), pixels)
