"""omniid-train on an --out that already holds a run: it continues (same options), refuses
(other options, each named with both values) or starts over (--restart), and never replaces or
deletes a checkpoint another run started from (--init-from)."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from omniid.checkpoint import write_run_preset
from omniid.cli import main
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_contract_folder)


def args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["--manifest", str(manifest), "--preset", "tiny", "--out", str(out), "--steps", "4", "--save-every", "2",
            "--eval-every", "100", *extra]


def logged_steps(out: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_the_same_command_again_continues_an_interrupted_run_and_a_finished_one_trains_nothing(
        sample_manifest, tmp_path, caplog):
    whole, out = tmp_path / "whole", tmp_path / "run"
    assert main(args(sample_manifest, whole)) == 0
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out)) == 0  # no --resume: it continues all the same
    assert f"resumed from {out / 'checkpoints' / 'step-00000002'} at step 2" in caplog.text
    assert logged_steps(out) == [1, 2, 3, 4]
    assert losses(out) == losses(whole)  # as if never interrupted
    step4 = out / "checkpoints" / "step-00000004" / "state.json"
    saved_at = step4.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out)) == 0
    assert f"{out} is already complete at step 4 of 4: nothing to train" in caplog.text
    assert logged_steps(out) == [1, 2, 3, 4] and step4.stat().st_mtime_ns == saved_at


def test_other_options_on_the_same_out_are_refused_naming_each(sample_manifest, tmp_path, caplog):
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    before = (out / "log.jsonl").read_text()
    assert main(args(sample_manifest, out, "--lr", "0.002", "--mask-ratio", "0.85")) == 2
    assert (f"{out} holds a run made with other options: --mask-ratio (model.mask_ratio) 0.95 (this "
            f"command: 0.85); --lr (optim.lr) 0.001 (this command: 0.002). Run the same options and inputs (manifests, --init-from, frozen "
            f"weights, number of processes) to continue it, --restart to start it over, or give another --out"
            ) in caplog.text
    assert (out / "log.jsonl").read_text() == before
    # options that do not change what is trained may differ (evaluations too: no convergence rule here)
    assert main(args(sample_manifest, out, "--log-every", "2", "--keep-checkpoints", "5", "--eval-every", "50")) == 0
    assert logged_steps(out)[-1] == 4


def test_a_refusal_names_the_flag_or_the_preset_choice_that_set_each_option(sample_manifest, tmp_path, caplog):
    """The user typed --steps and --stage, not optim.total_steps or data.num_targets."""
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    assert main(args(sample_manifest, out, "--steps", "6")) == 2
    assert "other options: --steps (optim.total_steps) 4 (this command: 6). Run" in caplog.text
    caplog.clear()
    assert main(args(sample_manifest, out, "--stage", "flow")) == 2  # the choice first, then what it set
    assert ("other options: --stage mtd (this command: flow); data.batch_size 2 (this command: 1, set by --stage "
            "flow); data.num_targets 8 (this command: 4, set by --stage flow). Run") in caplog.text


def test_restart_starts_over_unless_another_run_started_from_a_checkpoint(sample_manifest, tmp_path, caplog):
    out, flow = tmp_path / "mtd", tmp_path / "flow"
    assert main(args(sample_manifest, out)) == 0
    assert main(args(sample_manifest, out, "--lr", "0.002", "--restart")) == 0
    assert logged_steps(out) == [1, 2, 3, 4]
    assert json.loads((out / "preset.json").read_text())["optim"]["lr"] == 0.002
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--init-from", str(out),
                 "--out", str(flow), "--steps", "1", "--eval-every", "100"]) == 0
    caplog.clear()
    assert main(args(sample_manifest, out, "--restart")) == 2
    assert (f"{out}: --restart would delete checkpoints other runs started from (step-00000004 by "
            f"{flow.resolve()}); start over in another --out") in caplog.text
    assert (out / "checkpoints" / "step-00000004" / "encoder.safetensors").is_file()


def test_a_checkpoint_another_run_started_from_is_never_replaced(sample_manifest, tmp_path, caplog):
    out, flow = tmp_path / "mtd", tmp_path / "flow"
    assert main(args(sample_manifest, out)) == 0
    step4 = out / "checkpoints" / "step-00000004"
    assert main(["--manifest", str(sample_manifest), "--preset", "tiny", "--stage", "flow", "--init-from", str(step4),
                 "--out", str(flow), "--steps", "1", "--eval-every", "100"]) == 0
    encoder = (step4 / "encoder.safetensors").read_bytes()
    # `latest` naming step 2, as a kill after step 4's rename leaves it: the replay would save step 4
    # again, over the one the flow run started from (an explicit --resume of step 2 is refused
    # before any work: tests/omniid/test_older_resume.py)
    (out / "checkpoints" / "latest").write_text("step-00000002")
    assert main(args(sample_manifest, out, "--resume", "auto")) == 2
    assert (f"{step4}: {flow.resolve()} started from this checkpoint (--init-from), so it is not replaced; "
            "train into another --out") in caplog.text
    assert (step4 / "encoder.safetensors").read_bytes() == encoder


def latest_state(out: Path) -> Path:
    return out / "checkpoints" / (out / "checkpoints" / "latest").read_text() / "state.json"


def edit_state(out: Path, **changes) -> None:
    """state.json as an older or another run left it (it is not among the files its checksums cover)."""
    path = latest_state(out)
    state = {**json.loads(path.read_text()), **changes}
    path.write_text(json.dumps({k: v for k, v in state.items() if v is not ...}))


def test_other_data_on_the_same_out_is_refused(sample_manifest, tmp_path, caplog):
    """The audit's repro: the same --out with the manifests swapped went on training at step 2 on
    other identities."""
    train, test, out = sample_manifest, sample_manifest.parent / "test.parquet", tmp_path / "run"
    assert main(args(train, out, "--stop-after", "2")) == 0
    before = (out / "log.jsonl").read_text()
    assert main(args(test, out, "--test-manifest", str(train))) == 2
    assert (f"{out} holds a run made with other options: --manifest {str(train.resolve())!r} (this command: "
            f"{str(test.resolve())!r}); --test-manifest {str(test.resolve())!r} (this command: "
            f"{str(train.resolve())!r}). Run the same options and inputs") in caplog.text
    assert "resumed from" not in caplog.text and (out / "log.jsonl").read_text() == before
    state = json.loads(latest_state(out).read_text())
    assert state["manifest"] == str(train.resolve()) and len(state["manifest_sha256"]) == 64


def test_a_manifest_rebuilt_at_the_same_path_is_refused(kept_faces, sample_run, tmp_path, caplog):
    folder, out = tmp_path / "manifests", tmp_path / "run"
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))
    manifest = write_contract_folder(folder, {"train": kept_faces}, sample_run)
    assert main(args(manifest, out, "--stop-after", "2")) == 0
    fewer = kept_faces.filter(pc.is_in(kept_faces["clip_id"], pa.array(clips[1:])))
    write_contract_folder(folder, {"train": fewer}, sample_run)  # same path, other identities
    assert main(args(manifest, out)) == 2
    assert "--manifest's sha256" in caplog.text and "the file was rebuilt or changed since the run started" in caplog.text
    assert logged_steps(out) == [1, 2]


def test_another_number_of_processes_is_refused(sample_manifest, tmp_path, caplog):
    """A run of 2 processes continued by 1 would change the global batch and the sampler's draws."""
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    edit_state(out, world=2)
    assert main(args(sample_manifest, out)) == 2
    assert "number of processes 2 (this command: 1)" in caplog.text and logged_steps(out) == [1, 2]


def test_init_from_must_match_to_continue(sample_manifest, tmp_path, caplog):
    source, out = tmp_path / "source", tmp_path / "run"
    assert main(args(sample_manifest, source, "--steps", "2")) == 0
    started = (source / "checkpoints" / "step-00000002").resolve()
    assert main(args(sample_manifest, out, "--init-from", str(source), "--stop-after", "2")) == 0
    assert main(args(sample_manifest, out)) == 2  # without --init-from
    assert f"--init-from {str(started)!r} (this command: None)" in caplog.text
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out, "--init-from", str(source))) == 0  # the same command continues
    assert "resumed from" in caplog.text and logged_steps(out) == [1, 2, 3, 4]


def test_a_run_saved_before_its_data_was_recorded_is_refused_until_resumed_explicitly(
        sample_manifest, tmp_path, caplog):
    """Safer than a warning: an older run cannot show it continues on the same data, and
    --resume auto (one flag) continues it knowingly."""
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    edit_state(out, manifest=..., manifest_sha256=..., test_manifest=..., test_manifest_sha256=...)
    assert main(args(sample_manifest, out)) == 2
    assert (f"{out}: its newest intact checkpoint was saved before omniid-train recorded the manifest a run trains on"
            in caplog.text and "add --resume auto to continue it with this --manifest" in caplog.text)
    assert main(args(sample_manifest, out, "--resume", "auto")) == 0
    assert logged_steps(out) == [1, 2, 3, 4]
    assert json.loads(latest_state(out).read_text())["manifest"] == str(sample_manifest.resolve())


def test_evaluations_must_match_while_the_convergence_rule_counts_them(sample_manifest, tmp_path, caplog):
    """patience counts evaluations: --eval-every 2 instead of 1 would double a baseline's patience in steps."""
    out = tmp_path / "run"
    flow = ["--stage", "flow", "--representation", "clip", "--batch-size", "1", "--patience", "2"]
    assert main(args(sample_manifest, out, *flow, "--eval-every", "1", "--steps", "2", "--save-every", "1",
                     "--stop-after", "1")) == 0
    assert main(args(sample_manifest, out, *flow, "--eval-every", "2", "--steps", "2", "--save-every", "1")) == 2
    assert "--eval-every (eval_every) 1 (this command: 2)" in caplog.text


def test_an_unreadable_preset_json_is_one_line_and_resume_auto_writes_it_again(sample_manifest, tmp_path, caplog):
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    preset = out / "preset.json"
    preset.write_text(preset.read_text()[:40])  # as a kill mid-write left it before it was written atomically
    assert main(args(sample_manifest, out)) == 2
    assert f"{preset}: cannot be read (" in caplog.text and "--resume auto continues the run" in caplog.text
    leftover = out / ".tmp-preset.json-k1lled"  # a write killed before its rename
    leftover.write_text("{")
    assert main(args(sample_manifest, out, "--resume", "auto")) == 0
    assert json.loads(preset.read_text())["name"] == "tiny" and logged_steps(out) == [1, 2, 3, 4]
    assert not leftover.exists()


def test_preset_json_is_replaced_whole(tmp_path):
    """Written aside and renamed (a new file), never rewritten in place, so a kill leaves the old one."""
    write_run_preset(tmp_path, {"name": "tiny"})
    before = (tmp_path / "preset.json").stat().st_ino
    write_run_preset(tmp_path, {"name": "paper"})
    assert (tmp_path / "preset.json").stat().st_ino != before
    assert json.loads((tmp_path / "preset.json").read_text()) == {"name": "paper"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preset.json"]


def test_an_explicit_resume_continues_with_other_data_saying_what_differs_and_recording_it(
        sample_manifest, tmp_path, caplog):
    """--resume is the escape hatch: it continues on other data and options, but names each with
    both values (an option the restored optimizer state overrides says so), and state.json and
    log.jsonl record that the run was continued with differences."""
    train, test, out = sample_manifest, sample_manifest.parent / "test.parquet", tmp_path / "run"
    assert main(args(train, out, "--stop-after", "2")) == 0
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert main(args(test, out, "--test-manifest", str(train), "--lr", "0.0005", "--representation-lr-scale",
                         "0.5", "--resume", "auto")) == 0
    warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("--resume auto continues"))
    assert (f"--manifest {str(train.resolve())!r} (this command: {str(test.resolve())!r})" in warning
            and "--lr (optim.lr) 0.001 (this command: 0.0005)" in warning
            and "recorded in state.json and log.jsonl" in warning)
    # the optimizer state restores the checkpoint's param groups: the old scale trains, and says so
    assert ("--representation-lr-scale (optim.representation_lr_scale) 1.0 (this command: 0.5; not applied: the checkpoint's param groups "
            "(their lr scale) are restored)") in warning
    assert json.loads((out / "preset.json").read_text())["optim"]["representation_lr_scale"] == 1.0
    assert logged_steps(out) == [1, 2, 3, 4]
    step2 = out / "checkpoints" / "step-00000002"
    continued = json.loads(latest_state(out).read_text())["continued_with_differences"]
    assert [(c["step"], c["checkpoint"]) for c in continued] == [(2, str(step2))]
    assert any("--manifest" in d for d in continued[0]["differences"])
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "continued_with_differences" in r] == [2]


def test_a_damaged_latest_compares_the_checkpoint_actually_resumed(sample_manifest, tmp_path, caplog):
    """`latest` (step 4) is damaged, so the run resumes from step 2: the options and facts are
    compared with step 2's record, not with the damaged step 4's."""
    first, out = tmp_path / "first", tmp_path / "run"
    six = ("--steps", "6")
    assert main(args(sample_manifest, first, *six, "--stop-after", "4")) == 0
    step2, step4 = first / "checkpoints" / "step-00000002", first / "checkpoints" / "step-00000004"
    encoder = step4 / "encoder.safetensors"
    encoder.write_bytes(encoder.read_bytes()[:100])  # cut short: set aside on resume
    state = json.loads((step2 / "state.json").read_text())  # not among the files its checksums cover
    (step2 / "state.json").write_text(json.dumps({**state, "world": 2}))  # step 2 was saved by 2 processes
    shutil.copytree(first, out)
    assert main(args(sample_manifest, first, *six)) == 2  # the same command: step 2 differs, refused
    assert "number of processes 2 (this command: 1)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert main(args(sample_manifest, out, *six, "--resume", "auto")) == 0
    warning = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("--resume auto continues"))
    assert "number of processes 2 (this command: 1)" in warning
    continued = json.loads(latest_state(out).read_text())["continued_with_differences"]
    assert [(c["step"], c["checkpoint"]) for c in continued] == [(2, str(out / "checkpoints" / "step-00000002"))]


def test_an_out_that_is_no_run_is_refused_unless_new_or_empty(sample_manifest, tmp_path, caplog):
    """A folder of other files (an eval output, photos) is no run; checkpoints and a log without the
    run's preset.json cannot be compared: a fresh start there cut the log back to step 0 and saved its
    steps among theirs."""
    others = tmp_path / "photos"
    others.mkdir()
    (others / "a.jpg").write_bytes(b"not ours")
    assert main(args(sample_manifest, others)) == 2
    assert f"--out {others}: holds files that are not an omniid-train run (a.jpg); give a new or empty folder" in caplog.text
    assert main(args(sample_manifest, others, "--restart")) == 2  # --restart deletes only a run's own files
    assert sorted(p.name for p in others.iterdir()) == ["a.jpg"]

    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--stop-after", "2")) == 0
    (out / "preset.json").unlink()  # deleted by hand, or the folder copied without it
    log_before = (out / "log.jsonl").read_text()
    caplog.clear()
    assert main(args(sample_manifest, out)) == 2
    assert (f"--out {out}: holds a run's files (checkpoints, log.jsonl) but no preset.json, so what trained there cannot be "
            "compared with this command: --resume auto continues") in caplog.text
    assert (out / "log.jsonl").read_text() == log_before
    assert main(args(sample_manifest, out, "--resume", "auto")) == 0  # taken deliberately: it continues
    assert logged_steps(out) == [1, 2, 3, 4]
    # a run's folder may hold the user's own files beside it (an eval output): the run continues
    (out / "eval").mkdir()
    assert main(args(sample_manifest, out)) == 0


def test_an_out_with_no_checkpoint_yet_starts_with_this_commands_options(sample_manifest, tmp_path, caplog):
    """A check that fails once preset.json is written (too few identities for the batch) leaves a
    folder with nothing trained in it: the fix the message asks for (a lower --batch-size) was
    then refused as 'a run made with other options'. A first save killed part way leaves only its
    temporary folder, which is no checkpoint either."""
    out = tmp_path / "run"
    assert main(args(sample_manifest, out, "--batch-size", "64")) == 2
    assert "cannot fill one global batch of 64" in caplog.text and (out / "preset.json").is_file()
    (out / "checkpoints" / ".tmp-step-00000002").mkdir(parents=True)  # a kill during the first save
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert main(args(sample_manifest, out, "--batch-size", "2")) == 0
    assert f"{out} holds no checkpoint yet: starting the run with this command's options" in caplog.text
    assert json.loads((out / "preset.json").read_text())["data"]["batch_size"] == 2
    assert logged_steps(out) == [1, 2, 3, 4]
