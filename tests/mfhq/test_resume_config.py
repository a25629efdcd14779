"""What a resume compares: the options that change rows. The decode watchdog's bound and the
chunk size change how a row is made and not what it holds (mfhq.config.HOW_NOT_WHAT): another
value continues the run (a longer bound is how `--retry timeout` is meant to be used; a smaller
chunk, how a run short of memory goes on). A run an earlier mfhq made, which fingerprinted them,
resumes and still counts as one config, but for one made with embed.every > 1, whose rows the
chunks decided (mfhq.config.SCHEDULE_PER_CHUNK)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLE_PRESET, run_cli
from mfhq.config import fingerprint_of, fingerprinted, load_pipeline
from mfhq.manifest.run_state import read_run_state
from mfhq.plan import RunMismatch, check_resume, run_identity
from presets import write_preset


def test_the_fingerprint_leaves_out_what_changes_no_row():
    scheduled = load_pipeline(SAMPLE_PRESET)  # embed.every 4: the schedule plans each clip whole
    assert scheduled.embed.every > 1
    one_by_one = scheduled.replace(embed={"every": 1})
    assert scheduled.replace(decode={"timeout_s": 600}).fingerprint() == scheduled.fingerprint()
    assert one_by_one.replace(decode={"chunk_frames": 5}).fingerprint() == one_by_one.fingerprint()
    assert scheduled.replace(decode={"chunk_frames": 5}).fingerprint() == scheduled.fingerprint()
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
    check_resume(_recorded(scheduled), run, scheduled.replace(decode={"chunk_frames": 5}), {}, "folder", tmp_path,
                 False)
    with pytest.raises(RunMismatch, match=r"decode\.fps: 5 in the run, 2 now"):
        check_resume(_recorded(scheduled), run, scheduled.replace(decode={"fps": 2}), {}, "folder", tmp_path, False)


def _earlier_fingerprint(cfg, *decode_options: str) -> str:
    """The fingerprint an earlier mfhq gave this config: these decode options counted too."""
    content = fingerprinted(cfg.to_dict())
    content["decode"].update({option: getattr(cfg.decode, option) for option in decode_options})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def test_a_run_an_earlier_mfhq_made_with_the_schedule_per_chunk_is_another_config(tmp_path):
    """Its embed.every > 1 schedule started over at each chunk, so its rows are not this version's
    at any chunk size, the run's own included: refused as another config (--force resumes it, as
    another config: no `same_rows_as`)."""
    scheduled = load_pipeline(SAMPLE_PRESET)
    earlier = _earlier_fingerprint(scheduled, "chunk_frames")  # the chunk size was fingerprinted with every > 1
    previous = {"config": json.loads(json.dumps(scheduled.to_dict())), "config_fingerprint": earlier}
    for chunk in (scheduled.decode.chunk_frames, 5):
        with pytest.raises(RunMismatch, match="schedule started over at each decode chunk"):
            check_resume(previous, tmp_path / "run.json", scheduled.replace(decode={"chunk_frames": chunk}), {},
                         "folder", tmp_path, False)
    check_resume(previous, tmp_path / "run.json", scheduled, {}, "folder", tmp_path, True)
    assert [c.get("same_rows_as") for c in run_identity(previous, scheduled)["configs"]] == [None, None]


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
    one_by_one = {"decode.fps": 1, "embed.every": 1, "run.workers": 1}  # every face embedded: the chunks change no row
    quick = write_preset(tmp_path / "quick.yaml", one_by_one, base=SAMPLE_PRESET)
    longer = write_preset(tmp_path / "longer.yaml", {**one_by_one, "decode.timeout_s": 600, "decode.chunk_frames": 4},
                          base=SAMPLE_PRESET)
    args = ["extract", "--root", str(videos), "--out", str(run)]
    run_cli(*args, "--pipeline", str(quick))
    earlier = _earlier_fingerprint(load_pipeline(quick), "timeout_s", "chunk_frames")
    now = load_pipeline(longer).fingerprint()
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
    other = write_preset(tmp_path / "other.yaml", {**one_by_one, "decode.fps": 2}, base=SAMPLE_PRESET)
    refused = run_cli(*args, "--pipeline", str(other), check=False)
    assert refused.returncode == 2 and "decode.fps: 1 in the run, 2 now" in refused.stderr
