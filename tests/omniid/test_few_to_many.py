"""Few-to-many draws (paper §3.2): in the flow stage no target is ever one of the identity's
inputs (an identity with few faces cycles through its other faces); MTD's targets are sampled
from all the identity's faces (3 -> 8 on 8 faces: every face, the inputs among them); each file
is decoded once per item and the flow stage decodes no mask; the presets and flags ask for at
least as many targets as inputs."""
from __future__ import annotations

import logging
from itertools import islice

import pytest
import torch
from PIL import Image

from omniid.cli import main
from omniid.config import FEW_TO_MANY, PRESETS, get_preset
from omniid.data import build_loader, load_manifest
from omniid.draws import FewToManyDataset
from omniid.errors import FlagError
from omniid.objectives.flow import loader_options as flow_loader_options
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


def _stage_loader(manifest, stage: str, **options):
    preset = get_preset("tiny", stage=stage)
    stage_options = flow_loader_options(preset.flow) if stage == "flow" else {}
    return build_loader(manifest, preset.model.image_size, preset.data.num_inputs, preset.data.num_targets,
                        **{"batch_size": 2, "seed": 5, **stage_options, **options})


def test_no_flow_target_is_ever_an_input(sample_manifest):
    draws = 0
    # mixed M (1 to 3 inputs) and the stage's own targets: 200 identity draws
    for batch in islice(_stage_loader(sample_manifest, "flow", num_inputs_min=1), 100):
        for inputs, targets in zip(batch["input_paths"], batch["target_paths"]):
            assert inputs and len(targets) == batch["targets"].shape[1]
            assert not set(inputs) & set(targets), (inputs, targets)
            draws += 1
    assert draws == 200


def test_mtd_targets_are_the_identitys_faces_inputs_among_them(sample_manifest):
    """3 -> 8 on MFHQ's 8 faces an identity: every face a target, so every input one of them, and
    an input's pixels as a target are its pixels as an input (decoded once). With more faces than
    targets (the sample's identities) the 8 are sampled from all of them."""
    identities = {name: faces[:8] for name, faces in load_manifest(sample_manifest).items()}
    dataset = FewToManyDataset(identities, 32, 3, 8, seed=5)
    for index in range(len(dataset)):
        for draw in range(5):
            item = dataset[(index, draw)]
            inputs, targets = item["input_paths"], item["target_paths"]
            assert len(inputs) == 3 and len(set(targets)) == 8 and set(inputs) <= set(targets)
            for i, path in enumerate(inputs):
                assert torch.equal(item["inputs"][i], item["targets"][targets.index(path)])
    seen_apart = False
    for batch in islice(_stage_loader(sample_manifest, "mtd"), 10):
        for inputs, targets in zip(batch["input_paths"], batch["target_paths"]):
            assert len(inputs) == 3 and len(set(targets)) == 8
            seen_apart |= not set(inputs) <= set(targets)
    assert seen_apart


@pytest.mark.parametrize("few_to_many", ["3-1", "3-5"])
def test_mtd_targets_fewer_than_the_faces_are_sampled_apart_from_the_inputs(sample_manifest, few_to_many):
    """3 -> 1 on 8 faces reconstructs a face it was not given 5 times in 8, not always its first
    input (autoencoding); 3 -> 5 is not always the 3 inputs and 2 more. A face that is both is
    decoded once, its pixels the same array."""
    m, r = FEW_TO_MANY[few_to_many]
    faces = next(iter(load_manifest(sample_manifest).values()))[:8]
    dataset = FewToManyDataset({"someone": faces}, 32, m, r, seed=3)
    unseen = inputs_in_targets = 0
    for draw in range(80):
        item = dataset[(0, draw)]
        inputs, targets = item["input_paths"], item["target_paths"]
        assert len(inputs) == m and len(targets) == len(set(targets)) == r
        unseen += len(set(targets) - set(inputs))
        inputs_in_targets += len(set(targets) & set(inputs))
        for i, path in enumerate(inputs):
            if path in targets:
                assert torch.equal(item["inputs"][i], item["targets"][targets.index(path)])
    # chance: r * 5/8 unseen a draw; the inputs' own order gave max(r - m, 0)
    assert 0.45 * r * 80 < unseen < 0.8 * r * 80 and inputs_in_targets > 0, (unseen, inputs_in_targets)


@pytest.mark.parametrize("held_out, inputs, distinct", [(2, 1, 1), (5, 3, 2)])
def test_an_identity_with_few_faces_keeps_flow_targets_apart(sample_manifest, held_out, inputs, distinct):
    """Fewer faces than M + R: M shrinks to leave a target, the other faces repeat to fill R."""
    for batch in islice(_stage_loader(sample_manifest, "flow", holdout=held_out, part="heldout"), 10):
        for got_inputs, targets in zip(batch["input_paths"], batch["target_paths"]):
            assert len(got_inputs) == inputs and len(set(targets)) == distinct and len(targets) == 4
            assert not set(got_inputs) & set(targets)
            # each face before any repeats
            assert max(targets.count(t) for t in targets) - min(targets.count(t) for t in targets) <= 1


@pytest.mark.parametrize("stage", ["mtd", "flow"])
def test_each_file_is_decoded_once_per_item_and_flow_reads_no_mask(sample_manifest, stage, monkeypatch):
    loader = _stage_loader(sample_manifest, stage, holdout=5, part="heldout", batch_size=1)  # targets repeat
    opened = _record_calls(monkeypatch, Image, "open", str)
    for batch in islice(loader, 4):
        crops = set(batch["input_paths"][0]) | set(batch["target_paths"][0])
        assert len(opened) == len(set(opened))  # nothing decoded twice
        assert {p for p in opened if p.endswith(".jpg")} == crops
        masks = [p for p in opened if p.endswith(".png")]
        assert len(masks) == (len(set(batch["target_paths"][0])) if stage == "mtd" else 0)
        assert ("masks" in batch) == (stage == "mtd")
        opened.clear()


def test_presets_ask_for_more_targets_than_inputs_at_the_old_flux_cost():
    for name in PRESETS:
        for stage in ("mtd", "flow"):
            data = get_preset(name, stage=stage).data
            assert data.num_targets >= data.num_inputs, (name, stage)
    flow = get_preset("paper", stage="flow").data
    assert (flow.num_inputs, flow.num_targets, flow.batch_size) == (3, 4, 2)  # 8 FLUX forwards, as 4 x 2
    tiny = get_preset("tiny", stage="flow").data
    assert tiny.num_targets * tiny.batch_size == 4 and tiny.num_targets > tiny.num_inputs


def test_config_refuses_fewer_targets_than_inputs_except_the_papers_ablation():
    with pytest.raises(FlagError, match=r"2 targets for 3 inputs.*paper §3.2"):
        get_preset("paper", stage="flow", **{"data.num_targets": 2})
    with pytest.raises(FlagError, match=r"1 targets for 5 inputs"):
        get_preset("paper", **{"data.num_inputs": 5, "data.num_targets": 1})
    for inputs, targets in FEW_TO_MANY.values():  # 3-1 is the paper's own ablation of the rule
        assert get_preset("paper", **{"data.num_inputs": inputs, "data.num_targets": targets}).data.num_targets == targets
    with pytest.raises(FlagError, match="holdout_faces 1"):
        get_preset("tiny-swap", **{"data.holdout_faces": 1})


def test_cli_names_a_broken_rule_in_one_line(sample_manifest, tmp_path, capsys, caplog):
    code = main(["--manifest", str(sample_manifest), "--preset", "tiny", "--holdout-faces", "1",
                 "--out", str(tmp_path / "run")])
    assert code == 2 and "holdout_faces 1" in caplog.text and "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_mtd_targets_of_an_identity_with_few_faces_repeat_and_the_log_says_so(sample_manifest, caplog):
    """4 faces for 3 -> 8: the 8 targets cycle through the 4 faces, and the line counting such
    identities names its set, as in MTD training."""
    name, faces = next(iter(load_manifest(sample_manifest).items()))
    with caplog.at_level(logging.INFO, logger="omniid.data"):
        dataset = FewToManyDataset({name: faces[:4]}, 32, 3, 8)
    item = dataset[(0, 0)]
    assert len(item["target_paths"]) == 8 and len(set(item["target_paths"])) == 4
    assert "train: 1 of 1 identities have fewer than 8 faces: their 8 targets repeat faces" in caplog.text


def test_the_short_identities_line_names_its_set_and_says_when_inputs_shrink(sample_manifest, caplog):
    """The flow stage's held-out frames (2 faces each): 1 input and 1 target, repeated."""
    with caplog.at_level(logging.INFO, logger="omniid.data"):
        loader = _stage_loader(sample_manifest, "flow", holdout=2, part="heldout", name="heldout")
    n = len(loader.dataset)
    assert (f"heldout: {n} of {n} identities have fewer than 3 + 4 faces: their 4 targets repeat faces (never an "
            f"input); the inputs of {n} of them shrink to their faces - 1 (to 1 at the fewest)") in caplog.text


@pytest.mark.parametrize("stage", ["mtd", "flow"])
def test_each_face_is_converted_to_floats_once_per_item(sample_manifest, stage, monkeypatch):
    """MTD: an input that is also a target is copied from its input tensor (3 -> 8 converts 8
    faces, not 11); repeated targets are converted once."""
    import omniid.crop_reader as crop_reader

    loader = _stage_loader(sample_manifest, stage, holdout=5, part="heldout", batch_size=1)  # targets repeat
    converted = _record_calls(monkeypatch, crop_reader, "pixels_to_tensor", id)
    for batch in islice(loader, 4):
        faces = set(batch["input_paths"][0]) | set(batch["target_paths"][0])
        assert len(converted) == len(faces), (stage, len(converted), len(faces))
        converted.clear()


def _record_calls(monkeypatch, owner, name: str, key) -> list:
    """owner.name still runs; the list gets key(first argument) of each call."""
    calls, real = [], getattr(owner, name)

    def recording(first, *args, **kwargs):
        calls.append(key(first))
        return real(first, *args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls
