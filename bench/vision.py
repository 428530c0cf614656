"""Vision figures through the gateway's REST API.

Starts ``toolfleet serve`` with the vision service only (real settings), uploads a real
1920x1080 JPEG (made from ../shared/data/vision/images/hubble_deep_field.jpg: its centre 16:9
band, scaled up) and the real videos of ../shared/data/vision/videos, then prints:
- image_crop of the 1920x1080 JPEG (a 960x540 region) returned as JPEG: p50/p99 at
  concurrency 1, and calls/s at concurrency 8 (wrk);
- video_frames, 8 evenly spaced frames (JPEG) of each video: p50/p99 at concurrency 1 (wrk);
- the same crop on a server without the decoded-image cache (each call decodes the JPEG).
Every response body is checked for ``"ok":true`` (column "failed"). Asserts nothing.

Usage: .venv/bin/python bench/vision.py [--duration 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway_overhead import free_port, parse_wrk  # noqa: E402

DATA = HERE.parent.parent / "shared/data/vision"
VIDEOS = ("car-detection.mp4", "bottle-detection.mp4")

CHECKED_LUA = """
local bodies = { %s }
local n = 0
local threads = {}
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function setup(thread) table.insert(threads, thread) end
function init(args) failed = 0 end
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n %% #bodies) + 1])
end
response = function(status, headers, body)
  if not string.find(body, '"ok":true', 1, true) then failed = failed + 1 end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("failed") end
  io.write(string.format("FAILED %%d\\n", total))
end
"""


def full_hd_jpeg() -> bytes:
    """A real photograph as a 1920x1080 JPEG (quality 90)."""
    with Image.open(DATA / "images/hubble_deep_field.jpg") as source:
        w, h = source.size
        band = round(w * 9 / 16)
        top = (h - band) // 2
        image = source.convert("RGB").crop((0, top, w, top + band))
    out = io.BytesIO()
    image.resize((1920, 1080), Image.Resampling.LANCZOS).save(out, "JPEG", quality=90)
    return out.getvalue()


def wrk(url: str, bodies: list[dict], connections: int, duration: int) -> dict[str, float]:
    """wrk POSTing ``bodies`` in turn; latency figures, calls/s and failed observations."""
    items = ",\n".join("[[" + json.dumps(b) + "]]" for b in bodies)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(CHECKED_LUA % items)
    try:
        cmd = [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=duration + 60, check=True
        ).stdout
    finally:
        os.unlink(script.name)
    figures = parse_wrk(out)
    failed = re.search(r"FAILED (\d+)", out)
    figures["failed"] = int(failed.group(1)) if failed else -1
    return figures


@contextmanager
def serving(**extra_env: str) -> Iterator[httpx.Client]:
    """``toolfleet serve`` with the vision service only; a client of it."""
    port = free_port()
    env = {
        **os.environ,
        "TOOLFLEET_SERVICES": '["vision"]',
        "TOOLFLEET_MAX_BODY_BYTES": str(64 << 20),
        # every call appends its result to the session's image list: room for a whole run
        "TOOLFLEET_VISION_MAX_SESSION_MEDIA": "1000000",
        **extra_env,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "toolfleet.client.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if http.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("server did not start")
            time.sleep(0.2)
        yield http
    finally:
        http.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def sessions_with_media(http: httpx.Client, jpeg: bytes, count: int) -> list[str]:
    """``count`` sessions, each holding the JPEG (image 1) and the videos (videos 1, 2)."""
    sessions = [http.post("/v1/sessions").json()["session_id"] for _ in range(count)]
    for sid in sessions:
        r = http.put(f"/v1/sessions/{sid}/media", content=jpeg)
        assert r.status_code == 201 and r.json()["width"] == 1920, r.text
        for name in VIDEOS:
            r = http.put(f"/v1/sessions/{sid}/media", content=(DATA / "videos" / name).read_bytes())
            assert r.status_code == 201, r.text
    return sessions


def row(label: str, conc: int, r: dict[str, float]) -> None:
    """One line of the table."""
    print(
        f"{label:<52}{conc:>5}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
        f"{r['rps']:>10.1f}{r['failed'] + r['non_2xx']:>8}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk row")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    jpeg = full_hd_jpeg()
    crop = {"image": 1, "bbox_2d": [480, 270, 1440, 810], "format": "jpeg"}

    with serving() as http:
        base = str(http.base_url).rstrip("/")
        sessions = sessions_with_media(http, jpeg, 8)
        call = f"{base}/v1/tools/image_crop/call"
        first = http.post(call, json={"arguments": crop, "session_id": sessions[0]}).json()
        assert first["ok"], first
        size = first["data"]["image"]
        print(
            f"vision through the gateway; wrk -t1, {args.duration} s per row; 1920x1080 JPEG "
            f"({len(jpeg)} bytes) cropped to {size['width']}x{size['height']} JPEG "
            f"({size['bytes']} bytes, quality 90)"
        )
        print(f"{'what':<52}{'conc':>5}{'p50 ms':>9}{'p99 ms':>9}{'calls/s':>10}{'failed':>8}")
        one = [{"arguments": crop, "session_id": sessions[0]}]
        eight = [{"arguments": crop, "session_id": sid} for sid in sessions]
        wrk(call, eight, 8, 2)  # warm-up
        row("image_crop 1920x1080 JPEG -> JPEG", 1, wrk(call, one, 1, args.duration))
        row("image_crop 1920x1080 JPEG -> JPEG, 8 sessions", 8, wrk(call, eight, 8, args.duration))
        frames_url = f"{base}/v1/tools/video_frames/call"
        for number, name in enumerate(VIDEOS, start=1):
            body = {"arguments": {"video": number, "num_frames": 8}, "session_id": sessions[1]}
            obs = http.post(frames_url, json=body).json()
            assert obs["ok"] and len(obs["data"]["frames"]) == 8, obs
            info = obs["data"]["video"]
            label = f"video_frames 8 of {name} ({info['width']}x{info['height']})"
            row(label, 1, wrk(frames_url, [body], 1, args.duration))

    # the same crop with no decoded-image cache: every call decodes the 1920x1080 JPEG
    with serving(TOOLFLEET_VISION_DECODED_CACHE_MB="0") as http:
        base = str(http.base_url).rstrip("/")
        sessions = sessions_with_media(http, jpeg, 1)
        call = f"{base}/v1/tools/image_crop/call"
        one = [{"arguments": crop, "session_id": sessions[0]}]
        wrk(call, one, 1, 2)  # warm-up
        row("image_crop, no decoded cache (decode every call)", 1, wrk(call, one, 1, args.duration))
    print("(2-core VM shared with other work: figures are noisy; compare within one run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
