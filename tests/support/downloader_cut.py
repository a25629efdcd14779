"""A VFHQ download and the clip yunyu/vfhq-downloader's crop_clips.py cuts from it, as real small
videos. Its ffmpeg command (`-ss <start> -to <end> -i <download>`, a crop filter, re-encoded) runs
two libavfilter filters, and the cut here runs the same two through PyAV: `trim` from the start
for the duration end - start (counted from the first frame kept, an open end), then `crop`, which
takes the corner and the size down to even pixels in 4:2:0. The start and end seconds and the
crop box are the test's to compute, as the script does.

Each download frame says which it is: a flat grey of level 60 + 3 n (n its ordinal, up to 64),
with a black square where the face is (`ordinal`), so that a frame read from the cut names its
source frame and the annotations can be checked against the pixels.
"""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


def numbered_download(path, width: int, height: int, rate: int, faces: list[tuple[int, int, int, int]],
                      fmt: str = "matroska"):
    """A `width` x `height` H.264 video at `rate` fps with one frame per face box (x1, y1, x2, y2
    in its pixels, drawn black); Matroska counts time in milliseconds, as yt-dlp's merged files do."""
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "10", "g": "12"}
        for n, (x1, y1, x2, y2) in enumerate(faces):
            image = np.full((height, width, 3), 60 + 3 * n, np.uint8)
            image[y1:y2, x1:x2] = 0
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def ordinal(frame: np.ndarray) -> int:
    """The download frame a decoded frame shows (the median ignores the black square)."""
    return int(round((float(np.median(frame)) - 60) / 3))


def downloader_cut(download, path, start: float, end: float, box: tuple[int, int, int, int]):
    """`download` trimmed to [start, end) seconds and cropped to box (left, top, right, bottom),
    re-encoded as H.264 MP4 at the download's rate."""
    left, top, right, bottom = box
    with av.open(str(download)) as source, av.open(str(path), "w", format="mp4") as out:
        video = source.streams.video[0]
        graph = av.filter.Graph()
        chain = [graph.add_buffer(template=video), graph.add("trim", f"start={start}:duration={end - start}"),
                 graph.add("crop", f"{right - left}:{bottom - top}:{left}:{top}"), graph.add("buffersink")]
        for a, b in zip(chain, chain[1:]):
            a.link_to(b)
        graph.configure()
        stream = out.add_stream("libx264", rate=video.average_rate)
        stream.options = {"crf": "10"}
        written = 0

        def drain() -> None:
            nonlocal written
            while True:
                try:
                    frame = chain[-1].pull()
                except (BlockingIOError, av.error.EOFError):
                    return
                if not written:
                    stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
                frame.pts, frame.time_base = written, Fraction(1) / video.average_rate
                out.mux(stream.encode(frame))
                written += 1

        for frame in [*source.decode(video), None]:
            try:
                chain[0].push(frame)
            except av.error.EOFError:  # trim is done: it takes no more frames
                break
            drain()
        drain()
        out.mux(stream.encode())
    return path
