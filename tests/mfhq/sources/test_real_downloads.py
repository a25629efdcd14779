"""The adapters on what researchers hold after running the public download scripts, read through
the worker's own clip opening (`open_clip`: geometry, frame sampling, decoding) from small real
videos whose frames say their own ordinal (tests/support/grey_videos.py). The metadata follows
the shared real-metadata README: real for TalkingHead-1KH's field layout, SYNTHETIC (ids with
"synth") for the three datasets that forbid redistribution.

What is checked: the frames a clip reads are exactly its range (inclusive / exclusive ends, a
download at another frame rate than the annotation's, a stream-copied chunk whose timestamps do
not start at 0, a range past the video's end), the downloaders' file names and folders, and
that a row keeps the clip's id whatever its status.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from conftest import run_cli
from downloader_cut import downloader_cut, numbered_download, ordinal
from grey_videos import ordinals, write_grey
from mfhq.config import DecodeConfig
from mfhq.worker.clip_open import open_clip
from source_fixtures import TEST_PRESET, hq_entry, scan, vfhq_meta, vfhq_root

VF_NAME = "Clip+synthVF_a-1+P2+C0+F10-15"  # vfhq_meta(): FPS 25, frames 11..14 (F bounds exclusive)
VF_CUT = "Clip+synthVF_a-1+P2+C0+F10-30"  # frames 11..29; yunyu/vfhq-downloader's cut holds 11..28


def _video(path: Path, n: int, rate: int = 25, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_grey(path, [round(1000 * i / rate) for i in range(n)], rate=rate, **kwargs)


def _read(clip, fps: float) -> list[int] | tuple[str, str]:
    """The ordinals of the frames extract reads for `clip` at `fps`, or its failure row's (status, reason)."""
    opened = open_clip(clip, DecodeConfig(fps=fps), "test")
    if opened.failed is not None:
        return opened.failed["status"], opened.failed["reason"]
    try:
        return ordinals([frame for chunk in opened.chunks for frame in chunk.frames])
    finally:
        opened.close()


def test_a_vfhq_download_at_twice_the_meta_rate_reads_the_whole_range(tmp_path):
    # YouTube serves some videos at 50 fps where the meta file counted 25: frames 11..14 at 25 fps
    # are shown from 0.44 s until frame 15 starts at 0.60 s, i.e. frames 22..29 at 50 fps.
    root = vfhq_root(tmp_path, {f"train/{VF_NAME}.txt": vfhq_meta()})
    _video(root / "videos" / "synthVF_a-1.mp4", 40, rate=50)
    clip = scan("vfhq", root)[0][VF_NAME]
    assert _read(clip, 50) == list(range(22, 30))
    # At the meta file's own rate, and at 30 fps (0.44 s falls in frame 13, frame 18 starts at 0.60 s).
    _video(root / "videos" / "synthVF_a-1.mp4", 40, rate=25)
    assert _read(clip, 25) == [11, 12, 13, 14]
    _video(root / "videos" / "synthVF_a-1.mp4", 40, rate=30)
    assert _read(clip, 30) == [13, 14, 15, 16, 17]


@pytest.mark.parametrize("meta,video,options", [
    # EFHQ's download_vfhq.py: yt-dlp "bestvideo" (WebM) into videos/<train|test>/, metas in annotations/.
    ("annotations/train", "videos/train/synthVF_a-1.webm", {"fmt": "webm", "codec": "libvpx-vp9"}),
    # yunyu/vfhq-downloader: yt-dlp's merged file in youtube_videos/, .mp4, .webm or .mkv.
    ("meta_info/test", "youtube_videos/synthVF_a-1.mkv", {"fmt": "matroska"}),
])
def test_vfhq_reads_the_public_downloaders_files(tmp_path, meta, video, options):
    (tmp_path / meta).mkdir(parents=True)
    (tmp_path / meta / f"{VF_NAME}.txt").write_text(vfhq_meta())
    _video(tmp_path / video, 30, **options)
    found, problems = scan("vfhq", tmp_path)
    assert problems == {}
    clip = found[VF_NAME]
    assert (clip.video_path, clip.split, clip.extra["layout"]) == (tmp_path / video, meta.rsplit("/")[-1], "raw")
    assert _read(clip, 25) == [11, 12, 13, 14]


def _cut_meta() -> str:
    """A 160 x 96, 25 fps meta file whose CROP has an odd corner and odd sides, and whose face
    moves two pixels right a frame: frame f's box is (40 + 2 f, 30) to (60 + 2 f, 50)."""
    lines = ["Video ID: synthVF_a-1", "H: 96", "W: 160", "FPS: 25", "", "FRAME INDEX X0 Y0 W H [Landmarks (5 Points)]", ""]
    lines += [f"{f:08d} 0 {40 + 2 * f} 30 20 20 {45 + 2 * f} 35 {55 + 2 * f} 35 {50 + 2 * f} 40 {46 + 2 * f} 45 {54 + 2 * f} 45"
              for f in range(11, 30)]
    return "\n".join(lines + ["CROP: 31 17 122 92"]) + "\n"


@pytest.mark.parametrize("width,height,rate", [(160, 96, 25), (80, 48, 25), (160, 96, 50)])
def test_a_vfhq_downloader_cut_reads_its_source_frames_with_their_faces(tmp_path, width, height, rate):
    # yunyu/vfhq-downloader's crop_clips.py, its download since deleted: cut from a download at the
    # meta file's size, at half of it, and at twice the meta file's frame rate.
    root = vfhq_root(tmp_path, {f"train/{VF_CUT}.txt": _cut_meta()})
    scale, step = width / 160, rate // 25  # the download against the meta file: pixels, frames
    faces = [tuple(int(v * scale) for v in (40 + 2 * (n // step), 30, 60 + 2 * (n // step), 50)) for n in range(32 * step)]
    download = numbered_download(tmp_path / "deleted.mkv", width, height, rate, faces)
    # As crop_clips.py: the seconds of frames start+1 and end-1 at the meta FPS (5 decimals, then
    # milliseconds in its time stamps), the CROP scaled to the download and truncated.
    start, end = (float(f"{round(f / 25, 5):.3f}") for f in (11, 29))
    box = (int(31 / 160 * width), int(17 / 96 * height), int(122 / 160 * width), int(92 / 96 * height))
    (root / "cropped_videos").mkdir()
    downloader_cut(download, root / "cropped_videos" / "Clip+synthVF_a-1+P2+C0.mp4", start, end, box)
    clip = scan("vfhq", root)[0][VF_CUT]
    opened = open_clip(clip, DecodeConfig(fps=rate), "test")
    try:
        frames = [frame for chunk in opened.chunks for frame in chunk.frames]
    finally:
        opened.close()
    shown = [ordinal(frame) for frame in frames]
    assert shown == list(range(11 * step, 29 * step))  # source frames 11..28 (22..57 of the 50 fps download)
    ann, (x0, y0) = opened.clip.annotations, (box[0] & ~1, box[1] & ~1)  # ffmpeg's crop: an even corner
    assert len(ann.frames) == 18  # meta frames 11..28; 29 is past the cut's end
    for row, index in enumerate(ann.frames):
        f = shown[index] / step  # the meta frame this cut frame shows: its face must be this row
        assert ann.boxes[row] == pytest.approx(((40 + 2 * f) * scale - x0, 30 * scale - y0, (60 + 2 * f) * scale - x0, 50 * scale - y0))
        assert ann.landmarks[row][:2] == pytest.approx(((45 + 2 * f) * scale - x0, 35 * scale - y0))
        # And the pixels agree, to the pixel: the box's edge rows and columns are the black face's,
        # the ones just outside are grey.
        left, top, right, bottom = (int(v) for v in ann.boxes[row])
        middle, centre = (top + bottom) // 2, (left + right) // 2
        inside = [frames[index][y, x].max() for y, x in ((middle, left), (middle, right - 1), (top, centre), (bottom - 1, centre))]
        outside = [frames[index][y, x].min() for y, x in ((middle, left - 1), (middle, right), (top - 1, centre), (bottom, centre))]
        assert max(inside) < 30 and min(outside) > 45, (inside, outside)


def test_celebvtext_rows_keep_the_clip_id_without_mp4_whatever_their_status(tmp_path):
    # The shipped file's keys end in .mp4 and its clip ids do not: a malformed, repeated or
    # missing entry's row must carry the same id as the clip it would be (a repaired entry then
    # meets its old row instead of adding a second one), and two keys naming one clip stay two rows.
    ok = {"meta_video_names": "synthTX-a_1_0", "ytb_id": "synthTX-a_1",
          "duration": {"start_sec": 0.5, "end_sec": 2.5}, "bbox": {"top": 0.0, "bottom": 0.8, "left": 0.2, "right": 0.8},
          "version": "v0.11"}
    bad = {**ok, "bbox": {"top": 0.0, "bottom": 0.8}}
    entries = [("synthTX-a_1_0_0.mp4", bad), ("synthTX-a_1_0_1.mp4", ok), ("synthTX-a_1_0_1.mp4", ok),
               ("synthTX-a_1_0_2", ok), ("synthTX-a_1_0_2.mp4", ok)]
    root = tmp_path / "celebvtext"
    root.mkdir()
    (root / "celebvtext_info.json").write_text("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in entries) + "\n}")
    (tmp_path / "preset.yaml").write_text(TEST_PRESET)
    run_cli("extract", "--source", "celebvtext", "--root", str(root), "--out", str(tmp_path / "run"),
            "--pipeline", str(tmp_path / "preset.yaml"))
    rows = duckdb.sql(f"SELECT clip_id, status, reason FROM read_parquet('{tmp_path}/run/clips/*.parquet')").fetchall()
    statuses = {clip_id: status for clip_id, status, _ in rows}
    assert statuses == {"synthTX-a_1_0_0": "bad_metadata", "synthTX-a_1_0_1.duplicate": "bad_metadata",
                        "synthTX-a_1_0_1": "missing", "synthTX-a_1_0_2": "missing",
                        "synthTX-a_1_0_2.duplicate": "bad_metadata"}
    reasons = {clip_id: reason for clip_id, _, reason in rows}
    assert "celebvtext_info.json:2: clip 'synthTX-a_1_0_0.mp4': missing field 'bbox'" in reasons["synthTX-a_1_0_0"]
    assert "celebvtext_info.json:6: clip 'synthTX-a_1_0_2.mp4' appears twice" in reasons["synthTX-a_1_0_2.duplicate"]


def test_celebvtext_readme_layout_reads_start_frame_as_seconds_and_pixel_boxes(tmp_path):
    # The official README's layout: a `clips` wrapper, integer pixel boxes, and for one clip
    # start_frame / end_frame keys that hold seconds (415.29 in the README).
    entry = {"ytb_id": "synthTX-a_1", "duration": {"start_frame": 1.0, "end_frame": 2.0},
             "bbox": {"top": 0, "bottom": 48, "left": 8, "right": 56}, "version": "v0.1"}
    (tmp_path / "celebvtext_info.json").write_text(json.dumps({"clips": {"synthTX-a_1_0": entry}}, indent=2))
    _video(tmp_path / "raw" / "synthTX-a_1.mp4", 60)
    (clip,) = scan("celebvtext", tmp_path)[0].values()
    assert (clip.start_sec, clip.end_sec, clip.box_space) == (1.0, 2.0, None)
    assert _read(clip, 25) == list(range(25, 50))  # [1.0 s, 2.0 s), as ffmpeg -ss 1.0 -to 2.0 cuts it


def test_celebvhq_ranges_past_the_video_end(tmp_path):
    # A download can be shorter than the annotated one (a re-upload, a cut stream): a range running
    # past the end reads to the end, as the official ffmpeg cut does; one starting after it is an
    # `empty` row naming the video, the range and the video's length.
    clips = {"synthHQ-a_1_0": hq_entry(ytb_id="synthHQ-a_1", duration={"start_sec": 1.6, "end_sec": 9.0}),
             "synthHQ-a_1_1": hq_entry(ytb_id="synthHQ-a_1", duration={"start_sec": 5.0, "end_sec": 9.0})}
    (tmp_path / "celebvhq_info.json").write_text(json.dumps({"meta_info": {}, "clips": clips}))
    video = _video(tmp_path / "raw" / "synthHQ-a_1.mp4", 50)
    found = scan("celebvhq", tmp_path)[0]
    assert _read(found["synthHQ-a_1_0"], 5) == [40, 45]  # 1.6 s and 1.8 s of a 2 s video
    assert _read(found["synthHQ-a_1_1"], 5) == ("empty", f"{video}: no frames in range (5.0..9.0 s of 50 at 25 fps)")


def test_talkinghead_tubes_on_a_stream_copied_chunk(tmp_path):
    # videos_split.sh cuts with `-c copy -f segment` and no -reset_timestamps: chunk 1 keeps its
    # source timestamps (from 60.04 s here), and S, E count its frames from 0. Two tubes of one
    # person share their boundary frame (as val 1lSejjfNHpw_0075 0-728, 728-1456); E may pass the
    # chunk's end (chunks end on keyframes), and a tube may start after it.
    (tmp_path / "data_list").mkdir()
    lines = [f"-synthTH_a1_0001, 1080, 1920, {s}, {e}, 671, 47, 1471, 847" for s, e in ((0, 10), (10, 20), (40, 70), (60, 70))]
    (tmp_path / "data_list" / "val_video_tubes.txt").write_text("\n".join(lines))  # no final newline, as upstream
    chunk = tmp_path / "val" / "1min_clips" / "-synthTH_a1_0001.mp4"
    chunk.parent.mkdir(parents=True)
    write_grey(chunk, [60040 + 40 * i for i in range(50)])
    found = scan("talkinghead1kh", tmp_path)[0]
    read = {(clip.start_frame, clip.end_frame): _read(clip, 25) for clip in found.values()}
    assert read[(0, 10)] == list(range(0, 11)) and read[(10, 20)] == list(range(10, 21))
    assert read[(40, 70)] == list(range(40, 50))
    assert read[(60, 70)] == ("empty", f"{chunk}: no frames in range (frames 60..70 of 50 at 25 fps)")
