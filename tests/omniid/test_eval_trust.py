"""What omniid-eval and omniid-generate refuse to trust: a damaged checkpoint, a step folder away
from the run that trained it, a --size the run's FLUX cannot make, and input rows with problems
(every one named in one error). All on the tiny preset, with a flow run trained by omniid-train."""
from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from omniid.checkpoint import pointed
from omniid.data import DataError, load_manifest
from omniid.eval_cli import eval_main, generate_main
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             train_flow, write_eval_set)


@pytest.fixture(scope="module")
def flow_run(sample_manifest, tmp_path_factory):
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "run", "omniid")


@pytest.fixture(scope="module")
def eval_set(kept_faces, sample_run, tmp_path_factory):
    return write_eval_set(tmp_path_factory.mktemp("evalset"), kept_faces, sample_run, identities=2, faces=3)


@pytest.fixture
def images(kept_faces, sample_run) -> list[str]:
    return [str(sample_run / p) for p in kept_faces["crop_path"].to_pylist()[:2]]


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def generate(run, images, out, *extra) -> int:
    return generate_main(["--checkpoint", str(run), "--images", *images, "--out", str(out), "--steps", "1", *extra])


def evaluate(run, manifest, out, *extra) -> int:
    return eval_main(["--checkpoint", str(run), "--manifest", str(manifest), "--out", str(out), "--inputs", "1",
                      "--steps", "1", "--bootstrap", "10", *extra])


DAMAGE = {  # how a step folder is damaged -> what the refusal says about it
    "cut short": (lambda step: (step / "adapter.safetensors").write_bytes(
        (step / "adapter.safetensors").read_bytes()[:1000]), "adapter.safetensors has 1000 bytes, "),
    "changed": (lambda step: (step / "encoder.safetensors").write_bytes(
        (lambda b: b[:-100] + bytes([b[-100] ^ 0xFF]) + b[-99:])((step / "encoder.safetensors").read_bytes())),
                "encoder.safetensors does not match the SHA-256 recorded when it was saved"),
    "state.json missing": (lambda step: (step / "state.json").unlink(), "state.json is missing"),
}


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_checkpoint_is_refused_naming_the_file(flow_run, eval_set, images, how, tmp_path, caplog):
    """Before: a changed weight file generated as if it were the trained one, a file cut short
    ended in safetensors' traceback after --out was claimed, a missing state.json was reported as
    naming no flow-stage preset."""
    run = shutil.copytree(flow_run, tmp_path / "run")
    step = pointed(run / "checkpoints")
    damage, said = DAMAGE[how]
    damage(step)
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate(run, images, tmp_path / "gen") == 2
        assert evaluate(run, eval_set, tmp_path / "eval") == 2
    assert len(errors(caplog)) == 2
    for message in errors(caplog):
        assert message.startswith(f"{step}: a damaged checkpoint (") and said in message
    assert not (tmp_path / "gen").exists() and not (tmp_path / "eval").exists()  # nothing claimed, nothing written


def test_a_checkpoint_without_training_state_still_generates(flow_run, images, tmp_path):
    """The optimizer and RNG state are training's alone: generation neither reads nor checks them."""
    run = shutil.copytree(flow_run, tmp_path / "run")
    step = pointed(run / "checkpoints")
    (step / "optimizer.safetensors").unlink()
    (step / "rng.safetensors").unlink()
    assert generate(run, images, tmp_path / "gen") == 0


def test_a_step_folder_away_from_its_run_is_refused(flow_run, images, tmp_path, caplog):
    """Before: with no preset.json beside it, the preset's defaults stood in for the run's own
    flow settings (guidance, prompt, FLUX config) and settings.json recorded them as trained."""
    step = pointed(flow_run / "checkpoints")
    alone = shutil.copytree(step, tmp_path / "shared" / step.name)
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate(alone, images, tmp_path / "gen") == 2
    assert errors(caplog) == [f"{alone}: not inside its run folder (no {tmp_path / 'preset.json'}), so the settings "
                              "it was trained with (guidance, prompt, FLUX's config and precision) are unknown; give "
                              "it where omniid-train wrote it, RUN/checkpoints/step-N beside RUN/preset.json"]
    # put into another run's folder: that run's preset.json is not this step's
    other = tmp_path / "other"
    shutil.copytree(step, other / "checkpoints" / step.name)
    saved = json.loads((flow_run / "preset.json").read_text())
    (other / "preset.json").write_text(json.dumps({**saved, "name": "tiny-swap"}))
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate(other / "checkpoints" / step.name, images, tmp_path / "gen") == 2
    assert "state.json names preset 'tiny' but" in errors(caplog)[0] and "names 'tiny-swap'" in errors(caplog)[0]
    assert not (tmp_path / "gen").exists()


def test_a_step_folder_moved_into_another_run_of_its_preset_generates_with_its_own_flow_settings(
        flow_run, images, tmp_path, caplog):
    """Before: state.json did not record the flow settings, so a step in another run of the same
    preset (or an older step of a run continued with other ones) generated with that run's
    guidance and prompt, and recorded them as the trained ones. It uses its own and says so."""
    from omniid.flux import load_flow_run

    step = pointed(flow_run / "checkpoints")
    other = tmp_path / "other"
    moved = shutil.copytree(step, other / "checkpoints" / step.name)
    saved = json.loads((flow_run / "preset.json").read_text())
    trained = saved["flow"]["guidance"]
    assert trained != 9.0  # the premise: the other run's guidance is another
    (other / "preset.json").write_text(json.dumps({**saved, "flow": {**saved["flow"], "guidance": 9.0}}))
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert generate(moved, images, tmp_path / "gen") == 0
    said = (f"{moved} trained with other flow settings than its run's preset.json ({other / 'preset.json'}) gives: "
            f"flow.guidance {trained!r} (its run's preset.json: 9.0); using the step's own")
    assert any(r.getMessage().startswith(said) for r in caplog.records if r.levelno == logging.WARNING)
    settings = json.loads((tmp_path / "gen" / "settings.json").read_text())
    assert settings["trained_guidance"] == trained
    assert load_flow_run(moved).flow.guidance == trained
    # a step saved before the record generates with its run's preset.json, as it did
    state = json.loads((moved / "state.json").read_text())
    (moved / "state.json").write_text(json.dumps({k: v for k, v in state.items() if k != "flow"}))
    assert load_flow_run(moved).flow.guidance == 9.0


def test_generate_refuses_a_size_its_flux_would_round(flow_run, images, tmp_path, caplog):
    """Before: --size 33 wrote a 32 px image and settings.json said 33."""
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert generate(flow_run, images, tmp_path / "gen", "--size", "33") == 2
    assert errors(caplog) == ["--size 33: this run's FLUX makes images whose side is a multiple of 4; give 32 or 36"]
    assert not (tmp_path / "gen").exists()
    assert generate(flow_run, images, tmp_path / "gen", "--size", "36") == 0
    assert np.asarray(Image.open(tmp_path / "gen" / "seed0.png")).shape == (36, 36, 3)
    assert json.loads((tmp_path / "gen" / "settings.json").read_text())["size"] == 36


def _with_bad_rows(manifest, out):
    """`manifest`'s rows written to `out` (beside it, the same sidecar) with a problem in rows 1, 3, 4 and 5."""
    table = pq.read_table(manifest)
    schema = pa.schema([f.with_nullable(True) for f in table.schema], metadata=table.schema.metadata)
    rows = table.to_pylist()
    rows[1]["identity_id"] = None
    rows[3]["crop_path"] = ""
    rows[4]["mask_path"] = None
    rows[5]["yaw"] = None
    rows[0]["crop_path"] = "id0/absent.jpg"
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), out)
    return out


def test_every_bad_row_is_named_in_one_error(eval_set, flow_run, tmp_path, caplog):
    """Before: the first row with a problem raised, so a user fixed one row per attempt."""
    mine = _with_bad_rows(eval_set, eval_set.parent / "mine.parquet")
    expected = [f"{mine}: 4 row(s) with problems, 1 file(s) listed but missing:", "  row 1: empty identity_id",
                "  row 3: empty crop_path", "  row 4: no mask_path (training reads each face's mask)",
                "  row 5: yaw is null", f"  {eval_set.parent / 'id0' / 'absent.jpg'}"]
    with pytest.raises(DataError) as raised:
        load_manifest(mine)
    assert str(raised.value).splitlines() == expected
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert evaluate(flow_run, mine, tmp_path / "eval") == 2
    # eval reads crops alone: the row without a mask_path is no problem of its own
    expected = [expected[0].replace("4 row(s)", "3 row(s)"), *(line for line in expected[1:] if "mask_path" not in line)]
    assert errors(caplog)[0].splitlines() == expected and not (tmp_path / "eval").exists()


def test_every_bench_entry_without_a_seed_is_named_in_one_error(flow_run, eval_set, tmp_path, caplog):
    """--bench with --checkpoint generates each entry with its meta.json's seed: every entry that
    lacks one (or whose meta.json is not JSON) is named at once."""
    bench = tmp_path / "bench"
    crops = sorted(eval_set.parent.glob("id0/*.jpg"))
    for name in ("a", "b", "c"):
        (bench / name).mkdir(parents=True)
        shutil.copy(crops[0], bench / name / "ori.jpg")
        shutil.copy(crops[1], bench / name / "ref_1.jpg")
    (bench / "a" / "meta.json").write_text(json.dumps({"prompt": "photo of a person.", "seed": 3}))
    (bench / "b" / "meta.json").write_text(json.dumps({"prompt": "photo of a person."}))
    args = ["--bench", str(bench), "--checkpoint", str(flow_run), "--out", str(tmp_path / "out"), "--steps", "1"]
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert eval_main(args) == 2
    lines = errors(caplog)[0].splitlines()
    assert lines[0].startswith(f"--bench {bench}: 2 entries have no seed; omniid-eval generates each entry with")
    assert lines[1:] == [f"  {bench / 'b' / 'meta.json'}: has no integer \"seed\" (found None)",
                         f"  {bench / 'c' / 'meta.json'}: is missing"]
    (bench / "c" / "meta.json").write_text("{not json")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert eval_main(args) == 2
    assert errors(caplog)[0].startswith(f"--bench {bench}: 1 meta.json not a JSON object:\n  "
                                        f"{bench / 'c' / 'meta.json'}: Expecting property name")


@pytest.mark.parametrize("how", DAMAGE)
def test_the_python_api_refuses_a_damaged_checkpoint_as_the_clis_do(flow_run, how, tmp_path):
    """OmniIDEncoder / OmniIDAdapter.from_pretrained and load_flow_run check the files against
    state.json as the CLIs do, with the same message. Before, they loaded changed weights as the
    trained ones, and a missing state.json went unnoticed (the encoder, the adapter) or ended in
    another error (load_flow_run)."""
    from omniid.adapter import OmniIDAdapter
    from omniid.checkpoint import CheckpointError
    from omniid.encoder import OmniIDEncoder
    from omniid.flux import load_flow_run
    from omniid.generation import OmniIDGenerator

    run = shutil.copytree(flow_run, tmp_path / "run")
    step = pointed(run / "checkpoints")
    damage, said = DAMAGE[how]
    damage(step)
    with pytest.raises(CheckpointError) as cli:
        OmniIDGenerator.read(run)
    assert str(cli.value).startswith(f"{step}: a damaged checkpoint (") and said in str(cli.value)
    for load in (OmniIDEncoder.from_pretrained, OmniIDAdapter.from_pretrained, load_flow_run):
        with pytest.raises(CheckpointError) as api:
            load(run)
        assert str(api.value) == str(cli.value), load.__qualname__
