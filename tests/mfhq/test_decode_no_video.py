"""A file with no video stream to decode (a sound file named .mp4, an MP4 muxed with a video track
but no packets, which FFmpeg reads as no stream at all): both decoders say so, naming the file,
instead of PyAV's `IndexError: tuple index out of range`."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from mfhq.config import DecodeConfig
from mfhq.decode import ClipDecoder
from mfhq.decode_end import DecodeError


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        for i in range(5):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def _video_track_without_packets(path: Path) -> Path:
    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=25)
    stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
    container.start_encoding()  # the header and its empty track, then no packet at all
    container.close()
    return path


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("make, kinds", [(_audio_only, "only audio"), (_video_track_without_packets, "no streams at all")])
def test_a_file_without_a_video_stream_says_so(tmp_path, backend, make, kinds):
    path = make(tmp_path / "clip.mp4")
    with pytest.raises(DecodeError) as raised:
        ClipDecoder(DecodeConfig(backend=backend)).open(path)
    reason = str(raised.value)
    assert f"{backend}: DecodeError: {path}: the file has no video stream ({kinds})" in reason
    assert "IndexError" not in reason
