"""`mfhq extract --source all` end to end on the four datasets laid out as their users hold them,
and the `all` source finding each dataset by its folder name.

The videos are generated (the bundled sample's clips under each dataset's file names); the
metadata is real for TalkingHead-1KH's one listed-but-absent tube and SYNTHETIC otherwise (see
tests/support/source_fixtures.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
import numpy as np
import pytest

import source_fixtures as fx
from conftest import run_cli
from mfhq.records import Clip
from mfhq.sources import get_source
from mfhq.sources.base import SourceError, problem_id
from source_fixtures import hq_entry as _hq_entry, vfhq_meta as _vfhq_meta, vfhq_root as _vfhq_root


@pytest.fixture(scope="module")
def datasets(sample_dir, tmp_path_factory):
    return fx.all_datasets(sample_dir / "videos", tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "sources-test.yaml"
    path.write_text(fx.TEST_PRESET)
    return path


@pytest.fixture(scope="module")
def all_run(datasets, preset, tmp_path_factory):
    before = sorted(p.relative_to(datasets) for p in datasets.rglob("*"))
    run = tmp_path_factory.mktemp("runs") / "all"
    result = run_cli("extract", "--source", "all", "--root", str(datasets), "--out", str(run), "--pipeline", str(preset))
    assert sorted(p.relative_to(datasets) for p in datasets.rglob("*")) == before  # nothing written beside the videos
    assert not [p for p in run.rglob("*") if p.suffix in (".mp4", ".mkv", ".avi")]  # and no re-encoded clip
    return run, result


def _clips(run) -> dict[str, dict]:
    rows = duckdb.connect().sql(f"SELECT * FROM read_parquet('{run}/clips/*.parquet')").to_arrow_table().to_pylist()
    return {f"{r['source']}/{r['clip_id']}": r for r in rows}


def _faces(run, clip_id: str) -> list[dict]:
    assert "'" not in clip_id
    return duckdb.connect().sql(
        f"SELECT * FROM read_parquet('{run}/faces/*.parquet') WHERE clip_id = '{clip_id}' ORDER BY frame_index"
    ).to_arrow_table().to_pylist()


EXPECTED = {
    f"celebvhq/{fx.HQ_RAW}_0": "ok", f"celebvhq/{fx.HQ_RAW}_1_0": "ok", f"celebvhq/{fx.HQ_CUT}_0": "ok",
    "celebvhq/synthMISSNG_0": "missing", "celebvhq/synthREVERS_0": "bad_metadata",
    f"celebvhq/{problem_id('../synthESCAPE_0')}": "bad_metadata",  # ___synthESCAPE_0-<hash>
    f"celebvtext/{fx.TXT_RAW}_0_0": "ok", f"celebvtext/{fx.TXT_RAW}_0_1": "ok",
    f"celebvtext/{fx.TXT_RAW}_0_2": "bad_metadata",
    f"talkinghead1kh/{fx.TH_RAW}_0000_S12_E80_L400_T100_R880_B620": "ok",
    f"talkinghead1kh/{fx.TH_CUT}_0003_S5_E60_L300_T0_R1000_B700": "ok",
    "talkinghead1kh/--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351": "missing",
    "talkinghead1kh/train-line3": "bad_metadata", "talkinghead1kh/train-line4": "bad_metadata",
    f"vfhq/Clip+{fx.VF_RAW}+P0+C0+F4-96": "ok", f"vfhq/Clip+{fx.VF_CUT}+P3+C1+F100-200": "ok",
    "vfhq/Clip+synthVF-trc+P0+C0+F4-40": "bad_metadata",
}


def test_every_entry_of_every_source_gets_one_status_row(all_run):
    run, _ = all_run
    assert {k: r["status"] for k, r in _clips(run).items()} == EXPECTED
    plan = json.loads((run / "plan.json").read_text())
    assert {sid.rsplit("-", 1)[0] for sid in plan} == {"celebvhq", "celebvtext", "talkinghead1kh", "vfhq"}


def test_problem_rows_name_the_file_and_line(all_run):
    rows = _clips(all_run[0])
    assert "celebvhq_info.json:" in rows["celebvhq/synthREVERS_0"]["reason"]
    assert "unsafe clip id '../synthESCAPE_0'" in rows[f"celebvhq/{problem_id('../synthESCAPE_0')}"]["reason"]
    assert "train_video_tubes.txt:3: expected 9" in rows["talkinghead1kh/train-line3"]["reason"]
    assert "reversed frame range 90..40" in rows["talkinghead1kh/train-line4"]["reason"]
    assert "Clip+synthVF-trc+P0+C0+F4-40.txt:" in rows["vfhq/Clip+synthVF-trc+P0+C0+F4-40"]["reason"]
    # A pixel box only the real video size shows to be outside: caught when the video is opened.
    assert "lies outside the 512x512 frame" in rows[f"celebvtext/{fx.TXT_RAW}_0_2"]["reason"]


def test_identity_keys_and_splits(all_run):
    rows = _clips(all_run[0])
    assert rows[f"celebvhq/{fx.HQ_RAW}_1_0"]["video_key"] == fx.HQ_RAW  # never split on '_'
    assert rows[f"talkinghead1kh/{fx.TH_RAW}_0000_S12_E80_L400_T100_R880_B620"]["video_key"] == fx.TH_RAW
    assert rows[f"talkinghead1kh/{fx.TH_RAW}_0000_S12_E80_L400_T100_R880_B620"]["split"] == "train"
    assert rows[f"talkinghead1kh/{fx.TH_CUT}_0003_S5_E60_L300_T0_R1000_B700"]["split"] == "val"
    assert rows[f"vfhq/Clip+{fx.VF_RAW}+P0+C0+F4-96"]["split"] == "train"
    assert rows[f"vfhq/Clip+{fx.VF_CUT}+P3+C1+F100-200"]["split"] == "test"
    # A missing video's row says which video to fetch.
    missing = rows["talkinghead1kh/--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351"]
    assert (missing["video_key"], missing["split"]) == ("--Y9imYnfBw", "train")


def test_vfhq_clip_rows_carry_the_person_id_within_the_video(all_run):
    """extract writes VFHQ's P<pid> into the clip row's person_key (what keeps two people of one
    video apart in cluster-sample); sources without person ids, and rows of no clip, hold null."""
    rows = _clips(all_run[0])
    assert rows[f"vfhq/Clip+{fx.VF_RAW}+P0+C0+F4-96"]["person_key"] == "P0"
    assert rows[f"vfhq/Clip+{fx.VF_CUT}+P3+C1+F100-200"]["person_key"] == "P3"
    assert rows["vfhq/Clip+synthVF-trc+P0+C0+F4-40"]["person_key"] is None  # bad_metadata: no clip was made
    others = [r["person_key"] for key, r in rows.items() if not key.startswith("vfhq/")]
    assert len(others) == len(EXPECTED) - 3 and set(others) == {None}


def test_raw_videos_are_read_only_in_the_clip_range(all_run):
    run, _ = all_run
    for clip_id, first, last in [(f"{fx.HQ_RAW}_0", 25, 75), (f"{fx.HQ_RAW}_1_0", 7, 37),
                                 (f"{fx.TH_RAW}_0000_S12_E80_L400_T100_R880_B620", 12, 80),
                                 (f"Clip+{fx.VF_RAW}+P0+C0+F4-96", 5, 95)]:
        frames = [f["frame_index"] for f in _faces(run, clip_id)]
        assert frames and first <= min(frames) and max(frames) <= last, clip_id
    # A cut clip is read whole.
    assert min(f["frame_index"] for f in _faces(run, f"{fx.HQ_CUT}_0")) == 0


def test_vfhq_landmarks_replace_the_detector_and_are_checked(all_run, sample_dir):
    run, result = all_run
    rows = _clips(run)
    annotated = rows[f"vfhq/Clip+{fx.VF_RAW}+P0+C0+F4-96"]
    assert annotated["n_frames_verified"] >= 1
    assert annotated["n_frames_detect_skipped"] == annotated["n_frames_read"] - annotated["n_frames_verified"] > 0
    # The generated face's geometric box and the detector's agree well, not perfectly.
    assert 0.5 < annotated["annotation_iou"] <= 1.0
    # The same 5 points in the same order: a mirrored order would give an error near 1.
    assert annotated["annotation_nme"] < 0.25
    assert f"detection skipped on {annotated['n_frames_detect_skipped']} frames" in result.stderr
    # Clips without per-frame lines, and other sources, run the detector on every frame.
    for key in (f"vfhq/Clip+{fx.VF_CUT}+P3+C1+F100-200", f"celebvhq/{fx.HQ_RAW}_0"):
        assert rows[key]["n_frames_detect_skipped"] is None and rows[key]["annotation_iou"] is None
    # Kept faces carry the meta file's landmarks, rescaled from its 1024 px frame to the 512 px video.
    boxes, marks = fx.vfhq_faces()
    faces = _faces(run, f"Clip+{fx.VF_RAW}+P0+C0+F4-96")
    unscored = [f for f in faces if f["det_score"] is None]
    assert len(unscored) == annotated["n_frames_read"] and all(f["kept"] for f in faces)
    for face in unscored:
        expected = np.round(marks[face["frame_index"]] * fx.VF_SCALE, 3) / fx.VF_SCALE
        assert np.allclose(np.asarray(face["landmarks"]).reshape(5, 2), expected, atol=1e-3)


def test_stats_counts_the_faces_annotations_gave_apart_from_detected_ones(all_run, tmp_path):
    """VFHQ's annotated frames skip the detector: their faces (no detector score) were counted as
    'faces detected'. The headline counts them apart."""
    import csv

    run, _ = all_run
    run_cli("stats", "--run", str(run), "--out", str(tmp_path))
    with open(tmp_path / "tables" / "headline.csv") as handle:
        head = {row["metric"]: int(row["value"]) for row in csv.DictReader(handle)}
    total, annotated, above = duckdb.sql(
        f"SELECT count(*), count(*) FILTER (WHERE det_score IS NULL), count(*) FILTER (WHERE det_score > 0) "
        f"FROM read_parquet('{run}/faces/*.parquet')").fetchall()[0]
    assert annotated > 0
    assert above == total - annotated  # a threshold on the score leaves the annotations out (NaN: above all)
    assert head["faces detected"] == total - annotated
    assert head["faces from source annotations (not detected)"] == annotated


def test_a_truncated_clip_list_is_a_status_row_and_the_run_completes(tmp_path, preset):
    root = tmp_path / "celebvtext"
    root.mkdir()
    (root / "celebvtext_info.json").write_text('{"synthTX-a_1_0_0.mp4": {"ytb_id": "synthTX-a_1", "durat')
    result = run_cli("extract", "--source", "celebvtext", "--root", str(root), "--out", str(tmp_path / "run"),
                     "--pipeline", str(preset))
    (row,) = _clips(tmp_path / "run").values()
    assert row["status"] == "bad_metadata" and "celebvtext_info.json" in row["reason"] and "line 1" in row["reason"]
    assert "1 bad_metadata" in result.stderr


def test_clips_file_and_limit_select_a_subset(datasets, preset, tmp_path):
    # Only entries that need no decoding are picked, so that no model is loaded.
    listing = tmp_path / "clips.txt"
    listing.write_text("# picked by hand\ntalkinghead1kh/train-line3\n--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351\n"
                       "vfhq/not-there\n")
    run = tmp_path / "run"
    result = run_cli("extract", "--source", "talkinghead1kh", "--root", str(datasets / "TalkingHead-1KH"),
                     "--out", str(run), "--pipeline", str(preset), "--clips", str(listing))
    assert sorted(_clips(run)) == ["talkinghead1kh/--Y9imYnfBw_0000_S0_E271_L504_T63_R792_B351",
                                   "talkinghead1kh/train-line3"]
    assert "1 listed clip(s) are not in the source" in result.stderr
    limited = tmp_path / "limited"
    run_cli("extract", "--source", "talkinghead1kh", "--root", str(datasets / "TalkingHead-1KH"),
            "--out", str(limited), "--pipeline", str(preset), "--clips", str(listing), "--limit", "1")
    assert len(_clips(limited)) == 1


def test_sources_command_lists_what_each_adapter_expects():
    out = run_cli("sources").stdout
    for name, needle in [("celebvhq", "celebvhq_info.json"), ("celebvtext", "celebvtext_info.json"),
                         ("talkinghead1kh", "1min_clips"), ("vfhq", "meta_info"), ("all", "several")]:
        line = next(l for l in out.splitlines() if l.startswith(name + " "))
        assert needle in line


@pytest.mark.parametrize("source,folder,clip_id", [
    ("celebvhq", "CelebV-HQ", f"{fx.HQ_RAW}_0"),
    ("celebvtext", "celebvtext", f"{fx.TXT_RAW}_0_1"),
    ("talkinghead1kh", "TalkingHead-1KH", f"{fx.TH_RAW}_0000_S12_E80_L400_T100_R880_B620"),
    ("vfhq", "vfhq", f"Clip+{fx.VF_RAW}+P0+C0+F4-96"),
])
def test_each_source_on_its_own_gives_the_rows_of_the_combined_run(all_run, datasets, preset, tmp_path, source, folder, clip_id):
    listing = tmp_path / "one.txt"
    listing.write_text(f"{source}/{clip_id}\n")
    run = tmp_path / "run"
    run_cli("extract", "--source", source, "--root", str(datasets / folder), "--out", str(run),
            "--pipeline", str(preset), "--clips", str(listing))
    (row,) = _clips(run).values()
    assert row["status"] == "ok" and row["n_faces_kept"] > 0
    columns = ("frame_index", "kept", "bbox", "landmarks", "embedding")
    alone = [[face[c] for c in columns] for face in _faces(run, clip_id)]
    combined = [[face[c] for c in columns] for face in _faces(all_run[0], clip_id)]
    assert alone == combined


def test_all_finds_each_dataset_by_its_folder_name(tmp_path):
    (tmp_path / "CelebV-HQ").mkdir()
    (tmp_path / "CelebV-HQ" / "celebvhq_info.json").write_text(json.dumps({"clips": {"synth_HQ-id_0": _hq_entry()}}))
    _vfhq_root(tmp_path / "VFHQ", {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": _vfhq_meta()})
    items = list(get_source("all", tmp_path).scan())
    assert sorted(i.key if isinstance(i, Clip) else f"{i.source}/{i.clip_id}" for i in items) == [
        "celebvhq/synth_HQ-id_0", "vfhq/Clip+synthVF_a-1+P2+C0+F10-15"]
    with pytest.raises(SourceError, match="no dataset folder"):
        list(get_source("all", tmp_path / "VFHQ" / "meta_info").scan())
    # A dataset folder without its metadata is one row; the others are still read.
    (tmp_path / "talkinghead1kh").mkdir()
    items = {i.source: i for i in get_source("all", tmp_path).scan()}
    assert items["talkinghead1kh"].status == "bad_metadata" and "no <split>_video_tubes.txt" in items["talkinghead1kh"].reason
    assert items["celebvhq"].clip_id == "synth_HQ-id_0" and items["vfhq"].clip_id.startswith("Clip+")


def test_a_dataset_in_two_folders_is_refused_not_half_read(tmp_path):
    """`vfhq/` beside `VFHQ/`: one was read and the other's videos dropped without a row. A link
    naming the same folder (or a case-insensitive disk's one folder) is one folder."""
    _vfhq_root(tmp_path / "VFHQ", {"train/Clip+synthVF_a-1+P2+C0+F10-15.txt": _vfhq_meta()})
    (tmp_path / "vfhq").symlink_to(tmp_path / "VFHQ")
    assert [i.source for i in get_source("all", tmp_path).scan()] == ["vfhq"]
    (tmp_path / "vfhq").unlink()
    _vfhq_root(tmp_path / "vfhq", {"test/Clip+synthVF_b-1+P0+C0+F1-5.txt": _vfhq_meta()})
    with pytest.raises(SourceError, match=rf"all: vfhq has 2 folders under {tmp_path}: vfhq, VFHQ; each dataset is "
                                          r"read from one folder: merge them, or give each its own --root"):
        list(get_source("all", tmp_path).scan())
