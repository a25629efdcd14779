"""Small real videos whose frames say their own ordinal: frame i is a flat grey of level 4 i, so
a decoded frame's mean, over 4, is the frame a reader delivered (in a longer video, that
ordinal mod 64: level 4 (i mod 64))."""
from __future__ import annotations

import struct
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


def cut_by_stream_copy(source, path, keyframe: int, cut: int):
    """What `ffmpeg -ss T -c copy` writes: the packets from the keyframe before frame `cut` on (`keyframe`),
    timestamps shifted so that frame `cut` starts at 0; the mov muxer turns the negative start into
    an edit list whose media time skips the pre-roll."""
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4") as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        times = sorted(p.pts for p in src.demux(stream) if p.size)
        src.seek(0, stream=stream)
        for packet in src.demux(stream):
            if packet.size and packet.pts >= times[keyframe]:
                packet.pts, packet.dts = packet.pts - times[cut], packet.dts - times[cut]
                packet.stream = copy
                out.mux(packet)
    return path


def with_edit_list(source, path, edits: list[tuple[int, int]]):
    """A copy of the MP4 `source` whose video track's edit list is `edits`: (segment duration in the
    movie's time scale, media time in the track's; -1 an empty edit, a delay), each at rate 1. The
    movie's and track's durations become the edits' total, as a muxer writes them. For the edit
    lists PyAV's muxer cannot write (a trimmed end, a delay, several edits). Only for files whose
    `moov` follows its `mdat` (PyAV's, without faststart): a `moov` that grows or shrinks then
    moves no chunk offset. The `elst` is rewritten (version 0) and its parents' sizes follow."""
    data = bytearray(open(source, "rb").read())
    moov = _box(data, 0, len(data), b"moov")
    trak = _box(data, moov[1], moov[2], b"trak")
    edts = _box(data, trak[1], trak[2], b"edts")
    elst = _box(data, edts[1], edts[2], b"elst")
    entries = b"".join(struct.pack(">IiHH", duration, media_time, 1, 0) for duration, media_time in edits)
    new = struct.pack(">I4sII", 16 + len(entries), b"elst", 0, len(edits)) + entries
    grow = len(new) - (elst[2] - elst[0])
    data[elst[0]:elst[2]] = new
    for begin, _, _ in (moov, trak, edts):
        struct.pack_into(">I", data, begin, struct.unpack_from(">I", data, begin)[0] + grow)
    total = sum(duration for duration, _ in edits)
    mvhd, tkhd = _box(data, moov[1], moov[2] + grow, b"mvhd"), _box(data, trak[1], trak[2] + grow, b"tkhd")
    struct.pack_into(">I", data, mvhd[1] + 16, total)  # version 0: flags, two times, time scale, duration
    struct.pack_into(">I", data, tkhd[1] + 20, total)  # version 0: flags, two times, track id, reserved, duration
    open(path, "wb").write(data)
    return path


def edit_list(path) -> list[tuple[int, int]]:
    """The first track's edit list, as `with_edit_list` takes it: (segment duration, media time)."""
    data = open(path, "rb").read()
    moov = _box(data, 0, len(data), b"moov")
    trak = _box(data, moov[1], moov[2], b"trak")
    elst = _box(data, *_box(data, trak[1], trak[2], b"edts")[1:], b"elst")
    count = struct.unpack_from(">I", data, elst[1] + 4)[0]
    return [struct.unpack_from(">Ii", data, elst[1] + 8 + 12 * i) for i in range(count)]


def _box(data, begin: int, end: int, kind: bytes) -> tuple[int, int, int]:
    """(start, payload start, end) of the first box of type `kind` in data[begin:end] (32-bit sizes)."""
    while begin + 8 <= end:
        size, found = struct.unpack_from(">I4s", data, begin)
        if found == kind:
            return begin, begin + 8, begin + size
        begin += size
    raise ValueError(f"no {kind.decode()} box")
