"""Small real videos whose frames say their own ordinal: frame i is a flat grey of level 4 i, so
a decoded frame's mean, over 4, is the frame a reader delivered (in a longer video, that
ordinal mod 64: level 4 (i mod 64))."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

LOSSY_AT_DEFAULTS = ("mpeg4", "mpeg2video", "mjpeg")  # no crf option; their default bit rate blurs grey levels


def write_grey(path, pts_ms: list[int], fmt: str = "mp4", codec: str = "libx264", rate=25,
               time_base: Fraction = Fraction(1, 1000), options: dict | None = None, gop: int = 12):
    """64x64 video (H.264 with B-frames and a keyframe every `gop`, or the codec named, every 12) whose frame
    i is a flat grey of level 4 (i mod 64), shown at pts_ms[i]. time_base: the frames' (a whole number of
    its ticks per frame: 1/25 for containers that count frames, like AVI). options: the muxer's
    (movflags for a fragmented MP4)."""
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = 64, 64
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        if codec == "libx265":  # x265's own defaults (open GOPs), a keyframe every 12, quiet
            stream.options = {"x265-params": "keyint=12:log-level=none", "crf": "10"}
        elif codec in LOSSY_AT_DEFAULTS:  # a bit rate high enough that each grey level survives
            stream.options, stream.bit_rate = {"g": "12"}, 20_000_000
        else:
            stream.options = {"g": str(gop), "crf": "10"}
        for i, pts in enumerate(pts_ms):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 4 * (i % 64), np.uint8), format="rgb24")
            frame.pts, frame.time_base = round(pts / 1000 / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def ordinals(frames) -> list[int]:
    return [int(round(float(f.mean()) / 4)) for f in frames]


def chain_samples(path, start_sec: float = 2.0) -> tuple[list[int], list[int], list[str]]:
    """What extract does with a clip from `start_sec` to the end: the decoder chain opens it,
    samples it at the default rate and reads the chunks. (sampled indices, the ordinals of the
    frames read, the chain's errors and notes)."""
    from mfhq.config import DecodeConfig
    from mfhq.decode import ClipDecoder, sample_indices

    decoder = ClipDecoder(DecodeConfig())
    info = decoder.open(path)
    indices = sample_indices(info, decoder.cfg, start_sec, None)
    frames = [f for chunk in decoder.chunks(path, indices) for f in chunk.frames]
    decoder.close()
    return indices, ordinals(frames), list(decoder.errors)
