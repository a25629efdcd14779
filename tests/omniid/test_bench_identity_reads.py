"""The trainer's benchmarks build a baseline's batches as its training run does: through the
representation's `loader_options` (the `arcface` baselines' 112 px read of each input crop,
`identity_inputs`), joined to the stage's by the trainer's own join. Before, omniid-bench-data,
bench_flow and gpu_check had no representation, so a baseline's figures could only be the Omni-ID
batches', without that read (0.54 ms a crop) and with the identity model on resized encoder inputs."""
from __future__ import annotations

import json

import pytest
import torch

from omniid.bench_data import main as bench_main, stage_dataset
from omniid.config import get_preset
from omniid.objectives import build_objective
from omniid.preprocess import IDENTITY_SIDE
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)

TINY = get_preset("tiny", stage="flow")


def _exit_code(main, argv: list[str]) -> int:
    """main's return, or the code argparse exits with (a flag it does not know)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_bench_data_reads_each_input_crop_at_112px_for_the_arcface_baselines(sample_manifest, capsys):
    assert _exit_code(bench_main, ["--manifest", str(sample_manifest), "--preset", "tiny", "--stages", "flow",
                                   "--items", "3", "--workers", "0", "--representation", "arcface"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["representation"] == "arcface" and record["identity_reads_per_item"] >= 1
    for name in ("arcface", "arcface+clip"):
        item = stage_dataset(sample_manifest, TINY, "flow", name)[(0, 0)]
        faces = item["identity_inputs"]
        assert faces.dtype == torch.uint8 and tuple(faces.shape) == (len(item["input_paths"]), IDENTITY_SIDE,
                                                                      IDENTITY_SIDE, 3)
    assert "identity_inputs" not in stage_dataset(sample_manifest, TINY, "flow", "omniid")[(0, 0)]
    # the MTD stage trains Omni-ID only, as omniid-train says
    assert _exit_code(bench_main, ["--manifest", str(sample_manifest), "--representation", "arcface"]) == 2


def test_the_options_read_without_building_are_the_built_models(capsys):
    """loader_options_of reads the class; the built flow objective joins the same to the stage's,
    and gpu_check's and bench_flow's synthetic batches carry what they add."""
    from omniid import bench_flow, gpu_check
    from omniid.representations import loader_options_of

    assert loader_options_of("omniid") == {} and loader_options_of("clip") == {}
    torch.manual_seed(0)
    model = build_objective("flow", TINY, representation="arcface", pretrained_clip=False)
    assert loader_options_of("arcface") == dict(model.representation.loader_options) == {"identity_side": IDENTITY_SIDE}
    assert model.loader_options["identity_side"] == IDENTITY_SIDE
    for batch in (gpu_check.synthetic_batch(TINY, torch.device("cpu"), model.loader_options),
                  bench_flow.synthetic_batch(TINY, 2, torch.device("cpu"), model.loader_options)):
        b, m = batch["inputs"].shape[:2]
        assert batch["identity_inputs"].dtype == torch.uint8
        assert tuple(batch["identity_inputs"].shape) == (b, m, IDENTITY_SIDE, IDENTITY_SIDE, 3)
    assert _exit_code(gpu_check.main, ["--preset", "tiny", "--device", "cpu", "--stages", "flow", "--steps", "1",
                                       "--representation", "arcface"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["representation"] == "arcface" and record["s_per_step"] > 0
