"""Frame numbers and times, and which frames to sample. Ours.

A frame's index is its ordinal in the stream (what a sequential read counts, and decord's
numbering); its time is its presentation time from the stream's start. In constant-frame-rate
(CFR) video frame i is shown at i / fps, and that is all the readers and the sampling use. In a
variable-frame-rate (VFR) stream (a phone recording, a screen capture, a dropped-frame capture)
it is not: a seek numbered by timestamp x fps skips or repeats numbers and a time computed from
the number is wrong. So for a VFR stream the packets' timestamps are read once (demuxed, nothing
decoded: ~2 ms per second of 1080p video, under 1% of decoding a clip's sampled frames) and
sorted: frame i is shown at times[i].

CFR extract pays for that only outside MP4/MOV: an MP4/MOV's index (read with its header) holds
every frame's decode timestamp, and evenly spaced ones prove CFR. Not a fragmented MP4's
(decode_containers.py): its `moov` describes the first fragment at most, and where a complete
`sidx` lets FFmpeg read later fragments only as it reaches them, that fragment's evenly spaced
frames are all the index holds; such a file is counted and timed from its packets. No other header does:
Matroska/WebM index keyframes only, and FFmpeg takes their nominal and average frame rates both
from the track's default frame duration, so the two agree on a stream with a run of dropped
frames or a rate change. Every other stream is demuxed once (cached, so a long raw video's clips
share it). A stream counts as VFR only where some frame's timestamp strays a whole frame or more
from i / fps; one that jitters less is read as CFR, exactly as before (its rows unchanged:
timestamps that jitter are not a reason to sample other frames). So is one whose decode times are evenly
spaced (an ASF file's last two B-frame packets share a presentation time).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from mfhq.config import DecodeConfig
from mfhq.decode_containers import fragmented, shown_frames

log = logging.getLogger(__name__)
EVEN = 0.25  # an index spacing this far (relative) from the median one is not CFR


@dataclass(frozen=True)
class VideoInfo:
    n_frames: int
    fps: float  # the average frame rate
    width: int
    height: int
    # VFR only: each frame's presentation time (seconds from the stream's start); None: i / fps.
    times: np.ndarray | None = field(default=None, compare=False, repr=False)
    # Non-square pixels only: the picture's size turned but not resampled to square pixels, where
    # a source's boxes are taken (decode_shown.py, mfhq.geometry); None: width x height.
    stored: tuple[int, int] | None = None

    def time_of(self, index: int) -> float:
        return index / self.fps if self.times is None else float(self.times[index])

    def end_of(self, last: int) -> float:
        """When frame `last` stops being shown: the next frame's time (the average step for the last)."""
        if self.times is None:
            return (last + 1) / self.fps
        return float(self.times[last + 1]) if last + 1 < self.n_frames else float(self.times[last]) + 1.0 / self.fps

    def sampled_span(self, first: int, last: int, sample_fps: float) -> float:
        """Seconds of video sampled from frame `first` to frame `last`: to the end of the last one's
        sampling period, the video's end at most (a cap that thins the samples, or a video slower
        than the sampling, leaves the span what it is)."""
        return min(self.time_of(last) + 1.0 / sample_fps, self.end_of(self.n_frames - 1)) - self.time_of(first)

    def nearest(self, seconds: float) -> int:
        """The VFR frame whose time is nearest `seconds` (a decoded frame's own timestamp)."""
        right = int(np.searchsorted(self.times, seconds))
        return min((i for i in (right - 1, right) if 0 <= i < len(self.times)), key=lambda i: abs(self.times[i] - seconds))


def with_frame_times(path: Path, info: VideoInfo, container=None) -> VideoInfo:
    """`info`, with each frame's time where the stream is VFR (its frame count then the packets').
    container: the file already open in PyAV, whose header then settles CFR without a second open."""
    if info.fps <= 0:
        return info
    try:
        if _header_proves_cfr(path, container):
            return info
        stat = Path(path).stat()
        times = _vfr_times(str(path), stat.st_size, stat.st_mtime_ns, info.fps)
    except Exception as exc:  # decord may read what PyAV cannot open: read it as CFR, as before
        log.debug("no frame times for %s: %s", path, exc)
        return info
    if times is None:
        return info
    return VideoInfo(len(times), info.fps, info.width, info.height, times)


def frame_count(path: Path, container, fps: float) -> int:
    """The video stream's frame count, `path` open in PyAV as `container`. An unfragmented MP4/MOV's
    index gives it: its entries less those its edit list hides (decoded, never output: a stream-copied
    cut's pre-roll, the frames after a trimmed end; decode_containers.py), which the header's count
    includes, so that a clip's last frames would not exist. A header's count (AVI) is exact, but a
    fragmented MP4's is its first fragment's (12 of 120 frames): counted from its packets, a demux
    the CFR check then reuses. So are the streams whose header gives no count."""
    stream = container.streams.video[0]
    shown = shown_frames(path, container)
    header = shown if shown is not None else 0 if fragmented(path, container.format.name) else stream.frames
    n_frames = header or counted_frames(path)
    if not n_frames and stream.duration and stream.time_base:  # packets without timestamps
        n_frames = int(float(stream.duration * stream.time_base) * fps)
    return n_frames or sum(1 for _ in container.decode(video=0))  # nothing else says


def counted_frames(path: Path) -> int:
    """The stream's frames counted from its packets (demuxed, nothing decoded), for a container
    whose header gives no frame count: Matroska/WebM give nothing (decoding every frame to count
    them cost 1.3-1.4 s on a 12 s 1080p file, its packets 12 ms); ASF and MPEG-TS give a duration,
    and duration x fps missed by whole frames (62 for 60 ASF frames at 30 fps, 58 for 59 MPEG-TS
    frames at 29.97). A raw video's clips share the count (cached), and the VFR check reads the
    same demux, so it costs no second read. 0 where the packets cannot say."""
    try:
        stat = Path(path).stat()
        times = _packet_times(str(path), stat.st_size, stat.st_mtime_ns)
    except Exception as exc:  # the caller counts by decoding, and that names the problem
        log.debug("no packet count for %s: %s", path, exc)
        return 0
    return 0 if times is None else len(times[0])


@lru_cache(maxsize=4)  # clips of one long raw video come one after another: demuxed once
def _packet_times(path: str, size: int, mtime_ns: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Each video packet's presentation time (seconds from the stream's start), sorted: a frame a
    packet, less those an edit list hides (decoded, never output); and their decode times, in
    order (None where a packet lacks one). None where a packet has no presentation timestamp
    (nothing to number frames by)."""
    import av

    with av.open(path) as container:
        stream = container.streams.video[0]
        if stream.time_base is None:
            return None
        stamps = [(p.pts, p.dts) for p in container.demux(stream) if p.size and not p.is_discard]
        pts = [p for p, _ in stamps]
        if not pts or any(p is None for p in pts):
            return None
        dts = None if any(d is None for _, d in stamps) else np.asarray([d for _, d in stamps], np.int64)
        origin = stream.start_time if stream.start_time is not None else min(pts)
        base = float(stream.time_base)
        return (np.sort(np.asarray(pts, np.int64)) - origin) * base, None if dts is None else (dts - dts[0]) * base


def _vfr_times(path: str, size: int, mtime_ns: int, fps: float) -> np.ndarray | None:
    packets = _packet_times(path, size, mtime_ns)
    if packets is None:
        return None  # cannot be mapped: read as CFR
    times, decode_times = packets
    if _evenly(times, fps):
        return None  # jitter, not VFR: no frame strays a whole frame from i / fps
    # ASF keeps one timestamp a packet: with B-frames FFmpeg's demuxer gave the last two packets
    # the same presentation time (..., 2.32, 2.32 s for 60 frames at 25 fps), a whole frame off,
    # their decode times evenly spaced. Those prove CFR as an MP4's index does (decode times too).
    if decode_times is not None and _evenly(decode_times, fps):
        return None
    log.debug("%s is variable-frame-rate: frames numbered and timed from its %d timestamps", path, len(times))
    return times


def _evenly(times: np.ndarray, fps: float) -> bool:
    return bool(np.abs(times * fps - np.arange(len(times))).max() < 1.0)


def _header_proves_cfr(path: Path, container=None) -> bool:
    if container is None:
        import av

        with av.open(str(path)) as opened:
            return _header_proves_cfr(path, opened)
    # A fragmented MP4's index may hold its first fragment alone, evenly spaced whatever follows.
    return not fragmented(path, container.format.name) and _looks_cfr(container.streams.video[0])


def _looks_cfr(stream) -> bool:
    """From the container's header only: True where it proves the stream constant-rate, i.e. a
    full index (MP4/MOV) whose timestamps are evenly spaced. Equal nominal and average rates
    prove nothing (FFmpeg's Matroska demuxer sets both from the track's one default frame
    duration): False, so the packets are read."""
    count = stream.frames or 0
    index = stream.index_entries
    if count < 2 or len(index) != count:
        return False
    steps = np.diff(np.sort(np.fromiter((e.timestamp for e in index), np.int64, count)))
    middle = float(np.median(steps))
    return middle > 0 and bool(np.all(np.abs(steps - middle) <= EVEN * middle))


def sample_indices(info: VideoInfo, cfg: DecodeConfig, start_sec: float | None, end_sec: float | None,
                   frames: tuple[int, int] | None = None) -> list[int]:
    """Frame indices at cfg.fps within [start, end), sorted and unique.

    `frames` (first, last), both inclusive, is a range given in frames instead (TalkingHead-1KH
    tubes, VFHQ clips): it is sampled at cfg.fps the same way and never leaves the range. A
    seconds range is half-open like ffmpeg's -ss/-to: no frame starting at `end` or later.
    """
    if info.n_frames <= 0 or info.fps <= 0:
        return []
    if frames is not None:
        first, last = frames[0], min(frames[1], info.n_frames - 1)
        if last < first:
            return []
        start_sec, end_sec = info.time_of(first), info.end_of(last)
    start = max(0.0, start_sec or 0.0)
    end = min(info.end_of(info.n_frames - 1), end_sec) if end_sec is not None else info.end_of(info.n_frames - 1)
    if end <= start:
        return []
    times = np.arange(start, end, 1.0 / cfg.fps)
    if info.times is None:  # the nearest frame start, a tie going to the later frame (ffmpeg's -ss
        # keeps no frame before the start); positions built from frame units, not from the float
        # times, whose noise made ties on half a frame (CelebV's hundredths) fall either way
        positions = start * info.fps + np.arange(len(times)) * (info.fps / cfg.fps)
        nearest = np.floor(positions + 0.5 + 1e-6).astype(np.int64)
        indices = np.unique(np.clip(nearest, 0, info.n_frames - 1))
    else:  # the frame shown at each sample time
        indices = np.unique(np.maximum(0, np.searchsorted(info.times, times + 1e-6, side="right") - 1))
    if frames is not None:
        indices = indices[(indices >= first) & (indices <= last)]
    elif end_sec is not None:
        indices = np.asarray([i for i in indices if info.time_of(int(i)) < end_sec - 1e-9], np.int64)
    if cfg.max_frames is not None and len(indices) > cfg.max_frames:
        # Spread the cap over the whole range rather than keeping only the start.
        keep = np.linspace(0, len(indices) - 1, cfg.max_frames).round().astype(int)
        indices = indices[np.unique(keep)]
    return indices.tolist()
