"""Which containers each reader reads right. Ours.

A frame is numbered by its ordinal in the stream, and a reader must never hand back a
neighbour under that number. Measured on generated 64x64 clips whose frame i is a grey level
of its own (tests/mfhq/test_decode_containers.py), with each reader, after a seek and read on
from frame 0:

- PyAV's seek lands on the keyframe before the target and the frames after it are numbered from
  their timestamps: exact in MP4/MOV and Matroska/WebM. In AVI, ASF and MPEG-PS it returned an
  earlier frame under the target's number; in MPEG-TS and FLV it landed past the target; a raw
  H.264/HEVC stream cannot seek at all. There PyAV reads on from frame 0, counting frames, which
  was right in every container (slower for a clip deep inside a long file). Where a seek in
  MP4/MOV or Matroska raises (a damaged index), the clip is read on from frame 0 the same way.
- decord returned other frames than those asked for in AVI, ASF, MPEG-TS and MPEG-PS (TS: hung),
  could not open NUT or raw streams, and in MP4/Matroska misnumbered the frames of an open-GOP
  HEVC stream (x265's default). It is used only where its frames were right: H.264, VP8/VP9 and
  MPEG-4 Part 2 in MP4/MOV and Matroska/WebM.
- A fragmented MP4 (movie fragments, `moof` boxes, after the `moov`: ffmpeg's `frag_keyframe`,
  with or without `empty_moov`, a global `sidx`, as DASH streams are) read right by both after a
  seek, in every layout tried that decodes at all (tests/mfhq/test_decode_fragmented.py; ffmpeg's
  `global_sidx` without `default_base_moof` wrote files whose fragments no reader decodes, from
  frame 0 either). Its header is what misleads: the `moov` describes the first
  fragment at most, so its frame count is that fragment's (12 of 120 frames; 0 with
  `empty_moov`) and, where a complete `sidx` lets FFmpeg read fragments only as it reaches them,
  its index covers that fragment alone. Such a file is counted and timed from its packets
  (frame_times.py); `fragmented` tells it from the `mvex` box that announces fragments.
- An MP4/MOV's edit list says which stretch of its media is shown (tests/mfhq/test_decode_editlist.py,
  test_decode_edits.py). One that starts after its first decoded frames (a stream-copied cut at a
  non-keyframe, `ffmpeg -ss T -c copy`: the GOP's frames before T are kept, for decoding, and
  hidden) or ends before its last (a trimmed end) holds frames that no decoder outputs, and its
  header counts them (96 for 90 shown; 120 for 60). FFmpeg's index flags the hidden ones it keeps
  discarded and leaves out those past the keyframe after a trimmed end, so its entries less the
  discarded ones are the frames shown (`shown_frames`). PyAV drops the hidden frames, from frame 0
  and after a seek alike, and numbers the shown ones from their timestamps exactly. decord counted
  them and returned the frames they displace (after a seek on a cut, frame 54 for 60 with 6
  hidden, yet 0, 5, 10 right from the start; frame 59 for 60 past a trimmed end): it is not used
  there. An empty edit before the media (a delay) moves FFmpeg's timestamps, by the delay, not the
  frames, and FFmpeg's own B-frame edit list (a media time of the composition delay) hides
  nothing: both readers read those. An edit list of several pieces (a concatenation of cuts) is
  decoded piece after piece, renumbered one after another, but its index is then out of timestamp
  order and PyAV's seek near a join returned another frame (source frame 40 for 38) or none:
  PyAV reads such a file on from frame 0, counting, and decord (other frames than those shown
  from the start) is not used.

The container is FFmpeg's probe of the file's bytes, not its extension: a `.mp4` that holds an
MPEG-TS stream is read as MPEG-TS.
"""
from __future__ import annotations

import struct
from pathlib import Path

# FFmpeg's demuxer names (container.format.name).
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"
SEEKS_EXACTLY = frozenset({MP4, MATROSKA})
DECORD_CONTAINERS = frozenset({MP4, MATROSKA})
DECORD_CODECS = frozenset({"h264", "vp8", "vp9", "mpeg4"})
NAMES = {MP4: "MP4/MOV", MATROSKA: "Matroska/WebM"}


# FFmpeg decoders that decode only through a GPU's hwaccel: picked where the build has no software
# decoder for the format, they fail on the first frame with a message that names neither.
HARDWARE_ONLY = {"av1": ("AV1", "libdav1d or libaom-av1")}


def lacking_decoder(path: Path, decoder: str) -> str | None:
    """Why PyAV cannot decode this stream on a CPU, or None: its decoder (`decoder`, the one
    FFmpeg picked) needs hardware, the build having no software one for the format."""
    if decoder not in HARDWARE_ONLY:
        return None
    name, wanted = HARDWARE_ONLY[decoder]
    return (f"{path}: {name} video, and this PyAV's FFmpeg has no software {name} decoder ({wanted}; its own "
            f"'{decoder}' decodes only on a GPU): install a PyAV wheel that bundles one (PyPI's av wheels bundle "
            f"dav1d: pip install -U av)")


def no_video_stream(path: Path, container) -> str | None:
    """Why an opened file has nothing to decode (a sound file, an MP4 muxed with no video packets,
    whose empty track FFmpeg drops), or None where it has a video stream."""
    if container.streams.video:
        return None
    kinds = sorted({stream.type for stream in container.streams})
    return f"{path}: the file has no video stream ({'only ' + ', '.join(kinds) if kinds else 'no streams at all'})"


def seeks_exactly(format_name: str) -> bool:
    """Does PyAV's keyframe seek land where timestamps number frames exactly, in this container?"""
    return format_name in SEEKS_EXACTLY


def decord_refusal(path: Path) -> str | None:
    """Why decord must not read this file (its frames there are not proven to be the ones asked
    for), or None where it may. The message names the file and its container."""
    import av

    try:
        with av.open(str(path)) as container:
            format_name = container.format.name
            nothing = no_video_stream(path, container)
            if nothing:
                return nothing
            video = container.streams.video[0]
            # The format's name (av1), not the decoder's (libdav1d): what the message says
            codec = video.codec_context.codec.canonical_name if video is not None else None
            shown = shown_frames(path, container) if video is not None else None
            hidden = (video.frames - shown if shown is not None and video.frames else
                      hidden_frames(video) if video is not None else 0)
            truncated = video is not None and format_name == MP4 and data_past_end(path, video)
    except Exception:  # noqa: BLE001
        # Not a file PyAV's FFmpeg can open (a damaged header): decord, on FFmpeg too, is left to
        # fail on it and say why (on the damaged sample file it did: "moov atom not found" goes
        # into the clip's reason).
        return None
    if format_name not in DECORD_CONTAINERS:
        return (f"{path}: decord is not used on the {format_name} container: its frames are proven right only "
                f"in MP4/MOV and Matroska/WebM (elsewhere it returned other frames than those asked for)")
    if several_edits(path, format_name):
        return (f"{path}: decord is not used on an MP4/MOV whose edit list joins several pieces of its video "
                f"(it returned other frames than those shown); only PyAV reads it, from its first frame")
    if hidden > 0:
        of = hidden + shown if shown is not None else "decoded"
        return (f"{path}: decord is not used on an MP4/MOV whose edit list hides {hidden} of its {of} frames "
                f"(a stream-copied cut, a trimmed end): it counts them and returns frames they displace; only PyAV reads it")
    if truncated:
        return (f"{path}: decord is not used on an MP4/MOV whose index places frames past the file's end (a truncated "
                f"file, a header that over-counts): it numbered the frames after one the end lost wrong; only PyAV reads it")
    if codec not in DECORD_CODECS:
        return (f"{path}: decord is not used on {codec} video in {NAMES[format_name]} (its frames are proven "
                f"right only for H.264, VP8/VP9 and MPEG-4 Part 2; it misnumbered HEVC's); only PyAV reads it")
    return None


def data_past_end(path: Path, stream) -> bool:
    """Does an MP4/MOV index place frames past the file's end (a truncated download, a header that
    over-counts)? decord counts the packets it finds, so the frames after one the end lost (a
    B-frame's reference) took lower numbers (frame 50 handed on as 49: decode_end.py). The index
    is in decode order, so its last entries hold the data that lies last."""
    size = Path(path).stat().st_size
    return any(e.pos is not None and e.pos >= 0 and e.pos + e.size > size for e in stream.index_entries[-64:])


def hidden_frames(stream) -> int:
    """How many of the stream's index entries its edit list marks discarded (decoded, never output):
    FFmpeg's MP4/MOV demuxer marks them. 0 elsewhere (no other demuxer marks any)."""
    return sum(1 for entry in stream.index_entries if entry.is_discard)


def shown_frames(path: Path, container) -> int | None:
    """How many frames decoding outputs, from an unfragmented MP4/MOV's index (read with its header):
    its entries less those the edit list discards. The header's count (its sample tables') is
    not: it also counts a cut's hidden pre-roll and the frames after a trimmed end, which FFmpeg
    leaves out of the index past the keyframe that follows the end. None elsewhere (a fragmented
    MP4's index may cover its first fragment alone; other containers' hide nothing)."""
    stream = container.streams.video[0]
    if container.format.name != MP4 or not stream.index_entries or fragmented(path, container.format.name):
        return None
    return len(stream.index_entries) - hidden_frames(stream)


def several_edits(path: Path, format_name: str) -> bool:
    """Does the video track's edit list show more than one piece of its media (a concatenation of
    cuts)? An empty edit (a delay before the first frame) is not a piece. FFmpeg then renumbers
    the pieces' timestamps one after another, and its index is no longer in timestamp order, so
    a seek is not trusted. False where there is no edit list, or the boxes cannot be walked."""
    if format_name != MP4:
        return False
    try:
        with open(path, "rb") as f:
            return sum(1 for _, media_time in _video_edits(f) if media_time != -1) > 1
    except (OSError, struct.error):
        return False


def _video_edits(f) -> list[tuple[int, int]]:
    """The first video track's edit list: (segment duration, media time; -1: empty) a piece."""
    moov = _child(f, 0, f.seek(0, 2), b"moov")
    for kind, begin, end in _children(f, *moov) if moov else ():
        if kind != b"trak" or _handler(f, begin, end) != b"vide":
            continue
        elst = _child(f, begin, end, b"edts")
        elst = elst and _child(f, *elst, b"elst")
        if not elst:
            return []
        f.seek(elst[0])
        version, count = struct.unpack(">B3xI", f.read(8))
        entry = ">Ii4x" if version == 0 else ">Qq4x"  # (the rate, 4 bytes, is not read)
        count = min(count, (elst[1] - elst[0] - 8) // struct.calcsize(entry))
        return [struct.unpack(entry, f.read(struct.calcsize(entry))) for _ in range(count)]
    return []


def fragmented(path: Path, format_name: str) -> bool:
    """Is this an MP4/MOV whose `moov` announces movie fragments (an `mvex` box)? Then the header's
    frame count and index may cover only its first fragment. Walks box headers only (the `moov`
    of a long video is megabytes; its children are a few). False where the boxes cannot be walked:
    FFmpeg opened the file, and its header is then read as before."""
    if format_name != MP4:
        return False
    try:
        with open(path, "rb") as f:
            moov = _child(f, 0, f.seek(0, 2), b"moov")
            return moov is not None and _child(f, *moov, b"mvex") is not None
    except (OSError, struct.error):
        return False


def _handler(f, begin: int, end: int) -> bytes | None:
    """The handler type of the track in [begin, end) (b"vide", b"soun", ...), or None."""
    mdia = _child(f, begin, end, b"mdia")
    hdlr = mdia and _child(f, *mdia, b"hdlr")
    if not hdlr:
        return None
    f.seek(hdlr[0] + 8)  # past version and flags, and pre_defined
    return f.read(4)


def _child(f, begin: int, end: int, wanted: bytes) -> tuple[int, int] | None:
    """The payload (begin, end) of the first box of type `wanted` in [begin, end), or None."""
    return next(((b, e) for kind, b, e in _children(f, begin, end) if kind == wanted), None)


def _children(f, begin: int, end: int):
    """(type, payload begin, payload end) of each box in [begin, end), in order."""
    while begin + 8 <= end:
        f.seek(begin)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:  # a 64-bit size follows the type
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:  # the box runs to the end of its parent
            size = end - begin
        if size < header:
            return  # not a box structure: nothing to conclude from
        yield kind, begin + header, min(begin + size, end)
        begin += size
