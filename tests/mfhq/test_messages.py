"""What a user reads: decoder noise kept off the terminal and in the clip's reason, the options
that differ on a config mismatch, and messages that say what a run is and what to do
(issue 25, items 6, 8 and 10)."""
from __future__ import annotations

import shutil

from conftest import SAMPLE_PRESET, run_cli


def test_decoder_noise_goes_into_the_reason_never_over_the_progress_bar(sample_dir, tmp_path):
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    shutil.copy(sample_dir / "videos" / "corrupt.mp4", videos / "corrupt.mp4")
    shutil.copy(sample_dir / "videos" / "corrupt.mp4", videos / "sub" / "été vidéo.webm")
    (videos / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")  # listed, then missing: a transient status
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(SAMPLE_PRESET))
    terminal = result.stdout + result.stderr
    assert "moov atom" not in terminal and "ERROR opening" not in terminal and "video_reader.cc" not in terminal
    assert "extract: 100%" in result.stderr  # the progress bar itself is there
    assert "'sub/été vidéo.webm' -> 'sub/_t__vid_o'" in result.stderr  # how ids are made, said once
    reason = run_cli("summary", "--run", str(run), "--full").stdout
    assert "the decoders said: moov atom not found" in reason and "[Errno" not in reason

    again = run_cli("extract", "--root", str(videos), "--out", str(run), "--pipeline", str(SAMPLE_PRESET))
    assert "already complete: 3 clips (2 decode_error, 1 missing), 0 faces kept" in again.stderr
    assert "run them again with --retry missing" in again.stderr and "0 clips in" not in again.stderr
    quiet = run_cli("-q", "extract", "--root", str(videos), "--out", str(run), "--pipeline", str(SAMPLE_PRESET),
                    "--retry", "missing")
    assert "extract:" not in quiet.stderr and "INFO" not in quiet.stderr  # -q: no progress bar either
    typo = run_cli("extract", "--root", str(videos), "--out", str(run), "--retry", "crashd", check=False)
    assert typo.returncode == 2 and "unknown status 'crashd'" in typo.stderr and "['" not in typo.stderr


def test_a_config_mismatch_names_the_options_that_differ(sample_dir, sample_run, tmp_path):
    from presets import write_preset

    other = write_preset(tmp_path / "other.yaml", {"decode.fps": 4, "detect.score_threshold": 0.6}, base=SAMPLE_PRESET)
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(sample_run), "--pipeline",
                     str(other), check=False)
    assert result.returncode == 2
    assert "decode.fps: 5 in the run, 4 now; detect.score_threshold: 0.7 in the run, 0.6 now" in result.stderr
    assert " vs " not in result.stderr  # no fingerprints to compare by eye


def test_an_out_folder_of_other_files_is_refused(sample_dir, tmp_path):
    (tmp_path / "holiday").mkdir()
    (tmp_path / "holiday" / "notes.txt").write_text("mine")
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(tmp_path / "holiday"), check=False)
    assert result.returncode == 2
    assert "already holds files that are not an mfhq run's (notes.txt)" in result.stderr
    assert sorted(p.name for p in (tmp_path / "holiday").iterdir()) == ["notes.txt"]


def test_the_progress_bars_kept_count_is_of_the_clips_it_shows_done(sample_dir, tmp_path):
    """Each drawing of the bar shows the faces kept by the clips it counts done, not those of one
    shard fewer (it drew before it was told the new count). TQDM_MININTERVAL=0: every update draws."""
    import json
    import os
    import re

    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(sample_dir / "videos"), "--out", str(run), "--pipeline",
                     str(SAMPLE_PRESET), env={**os.environ, "TQDM_MININTERVAL": "0"})
    draws = re.findall(r"extract:.*?\| (\d+)/(\d+) \[[^]]*?(?:kept=(\d+))?\]", result.stderr.replace("\r", "\n"))
    kept = sum(json.loads(p.read_text())["kept"] for p in (run / "done").glob("*.json"))
    assert kept > 0 and any(int(n) for n, _, _ in draws)
    for n, total, shown in draws:
        if int(n) > 0:
            assert shown, f"a bar at {n}/{total} clips with no kept count: {draws}"
        if n == total:
            assert int(shown) == kept, f"the bar at {n}/{total} clips says kept={shown}; they kept {kept}: {draws}"
