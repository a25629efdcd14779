"""A sample clip downloaded short (its MP4 index first, its `mdat` cut inside a packet): extract
keeps the faces of the frames before the end, counts the frames it read, and says where the
stream ended in the clip's reason and in `mfhq summary`, with the same rows wherever a chunk
boundary falls and with decode-ahead on or off."""
from __future__ import annotations

import av
import pytest
import yaml

from conftest import SAMPLE_PRESET, run_cli
from run_rows import image_files, named_files, query, rows

N = 100  # the sample clip's frames, sampled at 5 of its 25 fps: 0, 5, ..., 95


def _faststart_copy(source, path):
    """The clip stream-copied with its index first, as a streamed download is written."""
    with av.open(str(source)) as src, av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = src.streams.video[0]
        copy = out.add_stream_from_template(stream)
        for packet in src.demux(stream):
            if packet.dts is not None:
                packet.stream = copy
                out.mux(packet)
    return path


@pytest.fixture(scope="module")
def videos(sample_dir, tmp_path_factory):
    """A folder holding the clip cut halfway into its 51st packet; (folder, its first sampled frame lost)."""
    folder = tmp_path_factory.mktemp("short") / "videos"
    folder.mkdir()
    whole = _faststart_copy(sample_dir / "videos" / "astronaut_motion.mp4", folder.parent / "whole.mp4")
    with av.open(str(whole)) as container:
        stream = container.streams.video[0]
        packets = [(round(float(p.pts * stream.time_base) * 25), p.pos, p.size) for p in container.demux(stream) if p.size]
    offset, size = packets[50][1:]
    (folder / "short_download.mp4").write_bytes(whole.read_bytes()[:offset + size // 2])
    whole_frames = {n for n, _, _ in packets[:50]}
    return folder, min(set(range(0, N, 5)) - whole_frames)


def _extract(videos, out, **changes):
    preset = yaml.safe_load(SAMPLE_PRESET.read_text())
    # the preset's embed.every 4: a run of one face ends where the stream does, whatever the chunks
    for key, value in {"run.workers": 1, **changes}.items():
        section, name = key.split(".")
        preset[section][name] = value
    (out.parent / f"{out.name}.yaml").write_text(yaml.safe_dump(preset))
    run_cli("extract", "--root", str(videos), "--out", str(out), "--pipeline", str(out.parent / f"{out.name}.yaml"))
    return out


@pytest.fixture(scope="module")
def runs(videos, tmp_path_factory):
    base = tmp_path_factory.mktemp("short-runs")
    return {(chunk, ahead): _extract(videos[0], base / f"chunk{chunk}-{ahead}", **{"decode.chunk_frames": chunk,
                                                                                  "run.decode_ahead": ahead})
            for chunk in (4, 16) for ahead in ("never", "always")}


def test_the_faces_before_the_end_are_kept_and_the_row_names_the_end(videos, runs):
    folder, first_lost = videos
    read = list(range(0, first_lost, 5))  # the sampled frames before the end
    run = runs[(16, "never")]  # the end inside the first chunk (0..75)
    [(status, reason, n_read, kept, duration)] = query(run, "SELECT status, reason, n_frames_read, n_faces_kept, "
                                                            "duration_sec FROM clips")
    assert status == "ok" and kept > 0 and n_read == len(read) and duration == pytest.approx(len(read) / 5)
    not_read = list(range(first_lost, N, 5))
    assert reason.startswith(f"{folder / 'short_download.mp4'}: the video stream ended after frame ")
    assert reason.endswith(f"short of the {N} frames its header promised (pyav): {len(not_read)} sampled frame(s) "
                           f"past it not read ({first_lost}..95)")
    faces = query(run, "SELECT frame_index, kept FROM faces ORDER BY frame_index")
    assert {f for f, _ in faces} <= set(read) and sum(k for _, k in faces) == kept
    assert image_files(run) == named_files(run) and len(image_files(run)) == 2 * kept
    summary = run_cli("summary", "--run", str(run), "--full").stdout
    assert "the video stream ended after frame" in summary and f"past it not read ({first_lost}..95)" in summary


def test_the_rows_are_the_same_wherever_the_chunk_ends_and_with_decode_ahead(runs):
    first = rows(runs[(16, "never")], exclude="stage_seconds, video_path")
    for key, run in runs.items():
        assert rows(run, exclude="stage_seconds, video_path") == first, key


def test_the_faces_read_are_those_of_the_whole_file(sample_dir, videos, runs, tmp_path):
    _, first_lost = videos
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "short_download.mp4").write_bytes(_faststart_copy(sample_dir / "videos" / "astronaut_motion.mp4",
                                                               tmp_path / "w.mp4").read_bytes())
    full = _extract(whole, tmp_path / "full", **{"decode.chunk_frames": 16})
    sql = f"SELECT frame_index, face_index, kept, bbox FROM faces WHERE frame_index < {first_lost} ORDER BY ALL"
    assert query(runs[(4, "always")], sql) == query(full, sql) != []


def test_duration_is_the_seconds_sampled_not_the_samples_over_the_rate(sample_dir, tmp_path):
    """`duration_sec` is the decoded range's seconds: a cap on sampled frames (`decode.max_frames`)
    thins the samples over the whole clip, and the duration stays the clip's 4 s (it read 0.6 s:
    3 samples over 5 fps); the whole file uncapped gives the same 4 s."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "whole.mp4").write_bytes((sample_dir / "videos" / "astronaut_motion.mp4").read_bytes())
    capped = _extract(folder, tmp_path / "capped", **{"decode.max_frames": 3})
    whole = _extract(folder, tmp_path / "whole", **{"decode.max_frames": None})
    [(n_read, duration)] = query(capped, "SELECT n_frames_read, duration_sec FROM clips")
    assert n_read == 3 and duration == pytest.approx(N / 25)
    assert query(whole, "SELECT duration_sec FROM clips")[0][0] == pytest.approx(N / 25)
