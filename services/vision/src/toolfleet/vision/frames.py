"""Video frames at chosen times, by seeking: each requested time is reached from the keyframe
before it, never by decoding the video from its start.

Time 0 is the video's first frame. The frame "at" time t is the one shown at t: the last
frame whose presentation time is at or before t. Every frame's time and every keyframe is
known from the index built at upload, so the frames to decode are known before decoding:
after a seek to the keyframe before a wanted frame the decoder skips the non-reference frames
it does not need (``skip_frame=NONREF``; no other frame depends on them, so the wanted frames
decode bit for bit as in a full decode), and it keeps decoding forward instead of seeking
when the next wanted frame is in the same group of pictures. Runs in worker threads.
"""

from __future__ import annotations

import bisect
import io
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import av
from PIL import Image
from toolfleet.core.protocol import ErrorKind
from toolfleet.core.tool import ToolError
from toolfleet.vision.geometry import fit_pixels
from toolfleet.vision.store import VideoIndex

EPS = 1e-6
DEADLINE_EVERY = 16  # packets between deadline checks


def frame_time(index: VideoIndex, pts: int) -> float:
    """Seconds from the first frame to the frame with ``pts``."""
    return (pts - index.first_pts) * index.time_base


def last_time(index: VideoIndex) -> float:
    """Time of the last frame."""
    return frame_time(index, index.pts[-1])


def pts_at(index: VideoIndex, t: float) -> int:
    """The pts of the frame shown at time ``t`` (the first frame for t <= 0)."""
    stamp = index.first_pts + t / index.time_base
    i = bisect.bisect_right(index.pts, stamp + EPS / index.time_base) - 1
    return index.pts[max(0, i)]


def plan_times(
    duration: float,
    *,
    start: float | None,
    end: float | None,
    num_frames: int | None,
    fps: float | None,
    timestamps: list[float] | None,
    max_frames: int,
    default_frames: int,
) -> list[float]:
    """The times to take frames at, or a ToolError saying why the request is refused.

    ``timestamps`` are taken as given. Otherwise the range is ``[start, end]`` (default: the
    whole video): ``fps`` gives ``start, start + 1/fps, ...`` up to ``end``; ``num_frames``
    (default ``default_frames``) gives that many times evenly spaced from ``start`` to
    ``end`` inclusive (one frame: the middle of the range)."""
    if timestamps is not None:
        if start is not None or end is not None or num_frames is not None or fps is not None:
            raise _invalid(
                "give either timestamps, or a range (start_time, end_time) with "
                "num_frames or fps, not both"
            )
        if len(timestamps) > max_frames:
            raise _too_many(len(timestamps), max_frames)
        for t in timestamps:
            if t < 0 or t > duration + EPS:
                raise _invalid(
                    f"the time {t:g} s is outside the video (0 to {duration:.3f} s)",
                    hint=f"Use times from 0 to {duration:.3f} s.",
                )
        return list(timestamps)
    if num_frames is not None and fps is not None:
        raise _invalid("give num_frames or fps, not both")
    lo = 0.0 if start is None else start
    hi = duration if end is None else min(end, duration)
    if lo >= duration:
        raise _invalid(
            f"start_time {lo:g} s is at or past the end of the video ({duration:.3f} s)",
            hint=f"Use a start_time under {duration:.3f} s.",
        )
    if hi <= lo:
        raise _invalid(
            f"the range {lo:g} s to {hi:g} s is empty", hint="end_time must be after start_time."
        )
    if fps is not None:
        count = math.floor((hi - lo) * fps + EPS) + 1
        if count > max_frames:
            raise _too_many(count, max_frames, f" ({fps:g} fps over {hi - lo:.3f} s)")
        return [lo + k / fps for k in range(count)]
    count = default_frames if num_frames is None else num_frames
    if count > max_frames:
        raise _too_many(count, max_frames)
    if count == 1:
        return [(lo + hi) / 2]
    step = (hi - lo) / (count - 1)
    return [lo + k * step for k in range(count)]


def _invalid(message: str, hint: str | None = None) -> ToolError:
    return ToolError(ErrorKind.invalid_arguments, message, hint=hint)


def _too_many(count: int, limit: int, why: str = "") -> ToolError:
    return ToolError(
        ErrorKind.invalid_arguments,
        f"{count} frames asked for{why}; at most {limit} are returned per call",
        hint=f"Ask for at most {limit} frames: fewer frames, a lower fps or a shorter range.",
    )


def decode_cost(index: VideoIndex, wanted: list[int]) -> int:
    """Frames the decoder goes through to reach ``wanted`` (ascending pts)."""
    cost, position = 0, None
    for p in wanted:
        key = _key_before(index, p)
        begin = key if position is None or key > position else position
        cost += bisect.bisect_right(index.pts, p) - bisect.bisect_left(index.pts, begin)
        position = p
    return cost


def split(index: VideoIndex, wanted: list[int], parts: int) -> list[list[int]]:
    """``wanted`` (ascending pts) cut into at most ``parts`` groups of about equal decoding
    work, each decodable on its own (cuts fall only where a seek would happen anyway)."""
    runs: list[list[int]] = []
    for p in wanted:
        if runs and _key_before(index, p) <= runs[-1][-1]:
            runs[-1].append(p)
        else:
            runs.append([p])
    if parts <= 1 or len(runs) <= 1:
        return [list(wanted)]
    costs = [decode_cost(index, run) for run in runs]
    share = sum(costs) / min(parts, len(runs))
    groups: list[list[int]] = [[]]
    done = 0.0
    for run, cost in zip(runs, costs, strict=True):
        if groups[-1] and done + cost / 2 > share * len(groups) and len(groups) < parts:
            groups.append([])
        groups[-1].extend(run)
        done += cost
    return groups


def _key_before(index: VideoIndex, pts: int) -> int:
    i = bisect.bisect_right(index.keyframes, pts) - 1
    return index.keyframes[max(0, i)]


@dataclass
class _Decoder:
    """One open container, decoding forward from its last seek."""

    container: av.container.InputContainer
    stream: av.VideoStream
    wanted: set[int]
    deadline: float

    def frames_from(self, key: int) -> Iterator[av.VideoFrame]:
        """Frames in display order, from the keyframe at or before ``key``."""
        self.container.seek(key, stream=self.stream, backward=True, any_frame=False)
        context = self.stream.codec_context
        context.flush_buffers()
        started = False
        for n, packet in enumerate(self.container.demux(self.stream)):
            if n % DEADLINE_EVERY == 0 and time.monotonic() > self.deadline:
                raise ToolError(
                    ErrorKind.timeout,
                    "decoding the video did not finish within the call's timeout",
                    hint="Ask for fewer frames, a shorter range, or send a larger timeout_s.",
                )
            needed = packet.pts is None or packet.pts in self.wanted or packet.is_keyframe
            context.skip_frame = "DEFAULT" if needed else "NONREF"
            for frame in packet.decode():
                if frame.pts is None:
                    continue
                if not started:  # frames before the first keyframe decoded may be broken
                    if not frame.key_frame:
                        continue
                    started = True
                yield frame


def check_cost(index: VideoIndex, wanted: list[int], limit: int) -> None:
    """Refuse, before decoding, a request that would decode more than ``limit`` frames."""
    cost = decode_cost(index, sorted(set(wanted)))
    if cost > limit:
        raise ToolError(
            ErrorKind.output_limit,
            f"these frames need {cost} frames decoded (from the keyframes before them), over "
            f"the limit of {limit}",
            hint="Ask for fewer frames or a shorter range.",
        )


def extract(
    data: bytes, index: VideoIndex, wanted: list[int], max_pixels: int, deadline: float
) -> dict[int, Image.Image]:
    """The frames with the ``wanted`` pts, as RGB images of at most ``max_pixels``."""
    wanted = sorted(set(wanted))
    found: dict[int, Image.Image] = {}
    try:
        with av.open(io.BytesIO(data), format=index.container, metadata_errors="ignore") as c:
            stream = c.streams.video[0]
            decoder = _Decoder(c, stream, set(wanted), deadline)
            frames: Iterator[av.VideoFrame] | None = None
            position: int | None = None
            last: av.VideoFrame | None = None
            for p in wanted:
                key = _key_before(index, p)
                if frames is None or position is None or key > position:
                    frames, last = decoder.frames_from(key), None
                chosen = None
                for frame in frames:
                    position = frame.pts if position is None else max(position, frame.pts)
                    if frame.pts >= p:
                        # the wanted frame, or (a broken index) the nearest one decoded
                        chosen = frame if frame.pts == p or last is None else last
                        last = frame
                        break
                    last = frame
                else:
                    chosen, frames = last, None  # end of the video: its last frame
                if chosen is None:
                    raise ToolError(
                        ErrorKind.runtime_error,
                        f"no frame could be decoded at {frame_time(index, p):.3f} s",
                    )
                found[p] = _to_image(chosen, max_pixels)
    except ToolError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ToolError(
            ErrorKind.runtime_error,
            f"the video could not be decoded ({exc})",
            hint="The file may be damaged in the range asked for; try other times.",
        ) from exc
    return found


def _to_image(frame: av.VideoFrame, max_pixels: int) -> Image.Image:
    width, height = fit_pixels(frame.width, frame.height, max_pixels)
    if (width, height) == (frame.width, frame.height):
        return frame.to_image()
    return frame.to_image(width=width, height=height, interpolation="AREA")
