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

The container is FFmpeg's probe of the file's bytes, not its extension: a `.mp4` that holds an
MPEG-TS stream is read as MPEG-TS.
"""
from __future__ import annotations

from pathlib import Path

# FFmpeg's demuxer names (container.format.name).
MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA = "matroska,webm"
SEEKS_EXACTLY = frozenset({MP4, MATROSKA})
DECORD_CONTAINERS = frozenset({MP4, MATROSKA})
DECORD_CODECS = frozenset({"h264", "vp8", "vp9", "mpeg4"})
NAMES = {MP4: "MP4/MOV", MATROSKA: "Matroska/WebM"}


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
            codec = container.streams.video[0].codec_context.name if container.streams.video else None
    except Exception:  # noqa: BLE001
        # Not a file PyAV's FFmpeg can open (a damaged header): decord, on FFmpeg too, is left to
        # fail on it and say why (on the damaged sample file it did: "moov atom not found" goes
        # into the clip's reason).
        return None
    if format_name not in DECORD_CONTAINERS:
        return (f"{path}: decord is not used on the {format_name} container: its frames are proven right only "
                f"in MP4/MOV and Matroska/WebM (elsewhere it returned other frames than those asked for)")
    if codec not in DECORD_CODECS:
        return (f"{path}: decord is not used on {codec} video in {NAMES[format_name]} (its frames are proven "
                f"right only for H.264, VP8/VP9 and MPEG-4 Part 2; it misnumbered HEVC's); only PyAV reads it")
    return None
