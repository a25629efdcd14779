"""Video decoding: PyAV first, decord as the fallback, frames sampled at a configurable rate.

Readers return BGR uint8 frames (OpenCV's order, which every offline model here expects).
Indices are always read in sorted batches: decord's get_batch on sorted indices is ~3.5x faster
than per-frame seeks. Hangs and native crashes are not handled here but by the runner's
watchdog (mfhq.worker.watchdog), around the process that calls these functions. Reading the
next chunk while the models work on this one: decode_ahead.py.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from mfhq.config import DecodeConfig
from mfhq.decode_containers import lacking_decoder, no_video_stream, seeks_exactly, several_edits
from mfhq.decode_decord import DecordReader
from mfhq.decode_end import DecodeError, End, Tail, ended_reason  # noqa: F401 (DecodeError: its home for callers)
from mfhq.decode_shown import shown_of, squared, turned
from mfhq.decode_skip import LOOKAHEAD, TimestampCheck, can_skip
from mfhq.frame_pool import FRAMES
from mfhq.frame_times import VideoInfo, frame_count, sample_indices, with_frame_times  # noqa: F401 (their home for callers)
from mfhq.native_output import captured_stderr, clean_error

log = logging.getLogger(__name__)
CHUNK_BYTES = 128 * 2**20  # decoded frames held at once per clip, at most (one frame if larger)


class VideoReader(Protocol):
    name: str

    def open(self, path: Path) -> VideoInfo: ...
    def read(self, indices: list[int]) -> np.ndarray: ...  # [N, H, W, 3] BGR uint8
    def close(self) -> None: ...


class PyAVReader:
    """Sequential decoding with PyAV, tolerant of odd containers.

    A read that starts well past the decoder's position (a clip deep inside a long raw video)
    seeks to the keyframe before it instead of decoding everything from frame 0, in containers
    where a seek lands frame-exact (decode_containers.py; elsewhere it reads on); frames are
    then numbered from their timestamps (on VFR video through their map, frame_times.py). Non-reference frames that no read asks for are not
    decoded, where the timestamps are proven to number frames as counting does (decode_skip.py).
    """

    name = "pyav"
    SEEK_GAP = 50  # frames; below this, decoding on is cheaper than a seek

    def open(self, path: Path) -> VideoInfo:
        import av

        self._path = path
        with av.open(str(path)) as container:
            nothing = no_video_stream(path, container)
            if nothing:
                raise DecodeError(nothing)
            stream = container.streams.video[0]
            lacking = lacking_decoder(path, stream.codec_context.name)
            if lacking:
                raise DecodeError(lacking)
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            n_frames = frame_count(path, container, fps)  # the header's where it covers the stream, else the packets'
            width, height = stream.codec_context.width, stream.codec_context.height
            # An edit list of several pieces renumbers them one after another, out of its index's
            # order: a seek there is not trusted, and frames are counted from the first.
            self._seekable = seeks_exactly(container.format.name) and not several_edits(path, container.format.name)
            info = with_frame_times(path, VideoInfo(int(n_frames), fps, width, height), container)
            shown = shown_of(path, container, stream)  # last: it may decode the first frame (decode_shown.py)
        # Frames are handed over as shown: square pixels (_square None: already), turned as ffmpeg does (decode_shown.py).
        self._turns, self.facts, self._square = shown.turns, shown.facts(path, width, height), shown.resampled(width, height)
        self._info = VideoInfo(info.n_frames, info.fps, *shown.size(width, height), info.times,
                               stored=self._square and shown.stored_size(width, height))
        self._next = 0
        self._container = self._check = None
        # Frames the decoder output since open: fewer where a seek or skipping saved decoding the
        # rest. Not the frames decoded: those an edit list hides, and reference frames that no read
        # asks for, are decoded and never output, and which frames skipping dropped unseen (a
        # non-reference frame) the decoder alone knows.
        self.n_output = 0
        self.notes: list[str] = []  # what it recovered from (a seek that raised), for the row's reason
        self.ended: End | None = None  # the stream ended before frames asked for (decode_end.py)
        return self._info

    def _start(self, target: int) -> None:
        """Open the container positioned at or before `target`; self._next is the next frame's index."""
        import av

        self.close()
        self._container = av.open(str(self._path))
        stream = self._container.streams.video[0]
        self._stream, self._origin = stream, float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        self._next, position, self.ended = 0, None, None
        self._tail = Tail(self._path, self._info.n_frames, lambda pts: self._number(pts * self._stream.time_base))
        if target >= self.SEEK_GAP and stream.time_base and self._seekable:
            position = int((self._origin + self._info.time_of(target)) / stream.time_base)
            try:
                self._container.seek(position, stream=stream, backward=True, any_frame=False)
                self._next = None  # unknown until the first frame's timestamp is read
            except (av.error.FFmpegError, OSError) as exc:
                # A damaged index (an MP4 whose sync-sample table lists no keyframe before the target):
                # read on from frame 0 as where seeks are not trusted; the row's reason says so (`notes`).
                self.notes.append(f"pyav: seek to frame {target} failed ({clean_error(exc)}); read on from frame 0")
                log.warning("%s: %s", self._path, self.notes[-1])
                self._seekable = False
                return self._start(target)
        # Skipping numbers packets by timestamp x fps, which only CFR streams do.
        vfr = self._info.times is not None
        self._check = TimestampCheck(self._path, self._info.fps, position) if can_skip(stream) and not vfr else None
        self._wanted, self._last = set(), -1
        self._iter = self._frames()

    def _frames(self):
        """The decoded frames, in order; packets of frames that may be dropped go to the
        decoder with skip_frame = NONREF (it drops them if nothing is predicted from them)."""
        context, dropping = self._stream.codec_context, False
        for packet in self._container.demux(self._stream):
            if not self._tail.admits(packet):
                continue  # the file ends inside it: a truncated download (decode_end.py)
            index = round(self._check.number(packet.pts)) if self._check and packet.pts is not None else None
            may_drop = index is not None and packet.size > 0 and index <= self._last and index not in self._wanted
            if may_drop != dropping:
                context.skip_frame, dropping = ("NONREF" if may_drop else "DEFAULT"), may_drop
            yield from packet.decode()

    def _index(self, frame) -> int:
        if frame.pts is None:
            raise DecodeError(f"{self._path}: a frame without a timestamp after a seek")
        return self._number(frame.pts * self._stream.time_base)

    def _number(self, stamp) -> int:
        seconds = float(stamp) - self._origin
        return int(round(seconds * self._info.fps)) if self._info.times is None else self._info.nearest(seconds)

    def read(self, indices: list[int]) -> np.ndarray:
        first, last = indices[0], max(indices)
        far = self._seekable and first - (self._next or 0) > self.SEEK_GAP
        if self._container is None or first < (self._next or 0) or far:
            self._start(first)
        wanted, out, got = set(indices), None, []
        if self._check is not None and not self._check.through(last + LOOKAHEAD):
            self._check = None  # the frames read so far were numbered alike both ways; now counted again
        self._wanted, self._last = wanted, last
        while self._next is None or self._next <= last:
            try:
                frame = next(self._iter)
            except StopIteration:
                self.ended = End(None if self._next is None else self._next - 1)
                break
            self.n_output += 1
            # At a short stream's end, frames the cut lost may be missing among those the decoder gives up.
            stamped = self._next is None or self._check is not None or (self._tail.short and frame.pts is not None)
            index = self._index(frame) if stamped else self._next
            if self._tail.short and self._tail.lost(wanted, self._next, index):
                self.ended, self._iter = End(None if self._next is None else self._next - 1), iter(())
                break
            if index in wanted:
                image = turned(squared(frame.to_ndarray(format="bgr24"), self._square), self._turns)
                if out is None:
                    # Filled frame by frame (a list stacked at the end held the chunk twice), in
                    # a reused buffer once the chunk before has been let go (frame_pool.py).
                    out = FRAMES.array((len(wanted), *image.shape))
                out[len(got)] = image
                got.append(index)
            self._next = index + 1
        if not got and self.ended is not None:
            return np.empty((0, self._info.height, self._info.width, 3), np.uint8)
        if not got:
            raise DecodeError(f"{self._path}: PyAV returned none of frames {first}..{last}")
        _check_delivered(self._path, indices, got)
        return out[:len(got)]

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
        if getattr(self, "_check", None) is not None:
            self._check.close()
        self._container = self._check = None


def _check_delivered(path: Path, indices: list[int], got: list[int]) -> None:
    """Frames may be missing only at the end (the stream ended early): the caller pairs the
    frames with the first indices asked for, so a frame missing before one delivered would
    shift every later label."""
    if got != sorted(set(indices))[:len(got)]:
        missing = sorted(set(indices[:len(got)]) - set(got)) or sorted(set(got) - set(indices))
        raise DecodeError(f"{path}: PyAV could not deliver frame {missing[0]} (frames {indices[0]}..{indices[-1]} "
                          f"asked, {got[0]}..{got[-1]} decoded); another decoder is tried, or set decode.backend: decord")


def _load_custom(spec: str) -> type:
    module_name, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"decode backend {spec!r} cannot be imported: {exc}") from exc


def reader_chain(backend: str) -> list[VideoReader]:
    """The readers to try, in order, for a configured backend."""
    if backend == "auto":
        # PyAV first: on 1080p H.264 (mfhq bench) it decodes the sampled frames as fast as decord
        # or faster, while decord's decoder thread keeps decoding ahead as the models run (about
        # 900 MB of frames queued): a worker peaked at 1.8 GB with decord, 0.9 GB with PyAV.
        return [PyAVReader(), DecordReader()]
    if backend == "decord":
        return [DecordReader()]
    if backend == "pyav":
        return [PyAVReader()]
    if ":" in backend:
        return [_load_custom(backend)()]
    raise ValueError(f"unknown decode backend {backend!r}; use auto, decord, pyav or module:Class")


@dataclass
class DecodedChunk:
    indices: list[int]
    frames: np.ndarray  # [N, H, W, 3] BGR


class ClipDecoder:
    """Opens a clip with the first reader that works and yields its sampled frames in chunks."""

    def __init__(self, cfg: DecodeConfig):
        self.cfg = cfg
        self.errors: list[str] = []
        self.reader: VideoReader | None = None
        self.info: VideoInfo | None = None
        self.ended: str | None = None  # why the sampled frames past the stream's end were not read
        self.facts: list[str] = []  # how the file is shown, where not as stored (decode_shown.py)

    def open(self, path: Path) -> VideoInfo:
        said = []  # what the native decoders printed: part of the reason, never over the progress bar
        for reader in reader_chain(self.cfg.backend):
            try:
                with captured_stderr() as native:
                    self.info = reader.open(path)
                self.reader, self.facts = reader, list(getattr(reader, "facts", ()))
                return self.info
            except Exception as exc:  # decord raises DECORDError, which is not a RuntimeError
                self.errors.append(f"{reader.name}: {clean_error(exc)}")
                log.debug("%s cannot open %s: %s", reader.name, path, exc)
            finally:
                said.extend(line for line in native.lines if line not in said)
        said_text = f"; the decoders said: {'; '.join(said)}" if said else ""
        raise DecodeError(f"{path}: no decoder could open it ({'; '.join(self.errors)}{said_text})")

    def chunks(self, path: Path, indices: list[int]) -> Iterator[DecodedChunk]:
        step = max(1, self.cfg.chunk_frames)
        if self.info is not None and self.info.width and self.info.height:
            # Bound a chunk's bytes too: 32 frames of 4K video are 800 MB.
            step = max(1, min(step, CHUNK_BYTES // (self.info.width * self.info.height * 3)))
        for begin in range(0, len(indices), step):
            batch = indices[begin:begin + step]
            frames = self._read(path, batch)
            if len(frames):
                yield DecodedChunk(batch, frames)
            end = getattr(self.reader, "ended", None)
            # after the stream's end the frames are not in the file: none is asked for (decode_end.py)
            if end is not None and begin + len(frames) < len(indices):
                self.ended = ended_reason(path, end, self.info.n_frames, indices[begin + len(frames):], self.reader.name)
                return

    def _read(self, path: Path, batch: list[int]) -> np.ndarray:
        try:
            with captured_stderr() as native:
                return self.reader.read(batch)
        except Exception as exc:
            self._take_notes()  # before the error: it came first
            self.errors.append(f"{self.reader.name}: {clean_error(exc)}"
                               + (f" (it said: {native.text()})" if native.lines else ""))
            # Fall over to the next reader in the chain for the rest of the clip.
            chain = reader_chain(self.cfg.backend)
            names = [r.name for r in chain]
            position = names.index(self.reader.name) if self.reader.name in names else len(chain)
            for reader in chain[position + 1:]:
                try:
                    with captured_stderr():
                        reader.open(path)
                        frames = reader.read(batch)
                    self.reader.close()
                    self.reader = reader
                    return frames
                except Exception as inner:
                    self.errors.append(f"{reader.name}: {clean_error(inner)}")
            raise DecodeError(f"{path}: reading frames {batch[0]}..{batch[-1]} failed ({'; '.join(self.errors)})")
        finally:
            self._take_notes()

    def _take_notes(self) -> None:
        """What the reader recovered from itself (PyAV read on where a seek raised): the row's reason lists it."""
        self.errors.extend(note for note in getattr(self.reader, "notes", ()) if note not in self.errors)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
