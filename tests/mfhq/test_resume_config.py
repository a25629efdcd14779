"""What a resume compares: the options that change rows. The decode watchdog's bound, and the
chunk size while every face is embedded, change how a row is made and not what it holds
(mfhq.config.HOW_NOT_WHAT): another value continues the run (a longer bound is how `--retry
timeout` is meant to be used). A run an earlier mfhq made, which fingerprinted them, resumes and
still counts as one config."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import fingerprint_of, fingerprinted, load_pipeline
from mfhq.manifest.run_state import read_run_state
from mfhq.plan import RunMismatch, check_resume
from presets import write_preset


def test_the_fingerprint_leaves_out_what_changes_no_row():
    scheduled = load_pipeline(SAMPLE_PRESET)  # embed.every 4: the schedule's plan follows the chunks
    assert scheduled.embed.every > 1
    one_by_one = scheduled.replace(embed={"every": 1})
    assert scheduled.replace(decode={"timeout_s": 600}).fingerprint() == scheduled.fingerprint()
    assert one_by_one.replace(decode={"chunk_frames": 5}).fingerprint() == one_by_one.fingerprint()
    assert scheduled.replace(decode={"chunk_frames": 5}).fingerprint() != scheduled.fingerprint()
    assert scheduled.replace(decode={"fps": 2}).fingerprint() != scheduled.fingerprint()
    # A run.json's config from before a section existed still has a fingerprint.
    assert fingerprint_of({"decode": {"fps": 5.0, "chunk_frames": 16}}) == fingerprint_of({"decode": {"fps": 5.0}})


def _recorded(cfg) -> dict:
    """What run.json records of a config (without the videos, which check_resume compares apart)."""
    return {"config": json.loads(json.dumps(cfg.to_dict())), "config_fingerprint": cfg.fingerprint()}


def test_a_resume_refuses_only_options_that_change_rows(tmp_path):
    scheduled = load_pipeline(SAMPLE_PRESET)
    run = tmp_path / "run.json"
    check_resume(_recorded(scheduled), run, scheduled.replace(decode={"timeout_s": 600}), {}, "folder", tmp_path, False)
    one_by_one = scheduled.replace(embed={"every": 1})
    check_resume(_recorded(one_by_one), run, one_by_one.replace(decode={"chunk_frames": 5}), {}, "folder", tmp_path,
                 False)
    with pytest.raises(RunMismatch, match=r"decode\.chunk_frames: 16 in the run, 5 now"):
        check_resume(_recorded(scheduled), run, scheduled.replace(decode={"chunk_frames": 5}), {}, "folder", tmp_path,
                     False)


def _earlier_fingerprint(cfg) -> str:
    """The fingerprint an earlier mfhq gave this config: the decode watchdog's bound counted too."""
    content = fingerprinted(cfg.to_dict())
    content["decode"]["timeout_s"] = cfg.decode.timeout_s
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def _as_if_made_earlier(run: Path, fingerprint: str) -> None:
    meta = json.loads((run / "run.json").read_text())
    meta["config_fingerprint"] = fingerprint
    meta["configs"] = [{**meta["configs"][0], "fingerprint": fingerprint}]
    (run / "run.json").write_text(json.dumps(meta))
    for marker in (run / "done").glob("*.json"):
        marker.write_text(json.dumps({**json.loads(marker.read_text()), "config_fingerprint": fingerprint}))


def test_a_run_an_earlier_mfhq_made_resumes_under_a_longer_timeout_as_one_config(tmp_path):
    videos, run = tmp_path / "videos", tmp_path / "run"
    videos.mkdir()
    (videos / "a0.mp4").write_bytes(b"")
    quick = write_preset(tmp_path / "quick.yaml", {"decode.fps": 1, "run.workers": 1}, base=SAMPLE_PRESET)
    longer = write_preset(tmp_path / "longer.yaml", {"decode.fps": 1, "decode.timeout_s": 600, "run.workers": 1},
                          base=SAMPLE_PRESET)
    args = ["extract", "--root", str(videos), "--out", str(run)]
    run_cli(*args, "--pipeline", str(quick))
    earlier, now = _earlier_fingerprint(load_pipeline(quick)), load_pipeline(longer).fingerprint()
    assert earlier != now
    _as_if_made_earlier(run, earlier)

    (videos / "a1.mp4").write_bytes(b"")
    resumed = run_cli(*args, "--pipeline", str(longer))
    assert f"fingerprint {earlier} was made by an earlier mfhq" in " ".join(resumed.stderr.split())
    configs = json.loads((run / "run.json").read_text())["configs"]
    assert [(c["fingerprint"], c.get("same_rows_as")) for c in configs] == [(earlier, None), (now, earlier)]
    state = read_run_state(run)
    assert state.complete and state.shards_done == 2 and state.configs == ((now, 2),)
    assert "mixes configs" not in run_cli("summary", "--run", str(run)).stdout

    again = run_cli(*args, "--pipeline", str(quick))  # the run's first timeout again: the same config
    assert "already complete: 2 clips" in again.stderr and "earlier mfhq" not in again.stderr
    assert len(json.loads((run / "run.json").read_text())["configs"]) == 2
    other = write_preset(tmp_path / "other.yaml", {"decode.fps": 2, "run.workers": 1}, base=SAMPLE_PRESET)
    refused = run_cli(*args, "--pipeline", str(other), check=False)
    assert refused.returncode == 2 and "decode.fps: 1 in the run, 2 now" in refused.stderr
