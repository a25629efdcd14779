"""omniid-eval builds FLUX once per base model, not once per row, on the tiny preset (random-weight
diffusers classes on CPU: the numbers mean nothing about quality): rows of one base share one
FluxTransformer2DModel and score exactly as rows built each on its own FLUX; rows of another
base get theirs only after the first is freed."""
from __future__ import annotations

import contextlib
import functools
import gc
import shutil
import weakref

import pandas as pd
import pyarrow as pa
import pytest

from omniid.eval_cli import eval_main
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             write_contract_folder)

EVAL = ["--inputs", "1,2", "--targets", "1", "--steps", "2", "--bootstrap", "50"]


def train_flow(manifest, out, preset: str, representation: str):
    from omniid.cli import main

    assert main(["--manifest", str(manifest), "--preset", preset, "--stage", "flow", "--out", str(out),
                 "--representation", representation, "--steps", "2", "--batch-size", "1", "--eval-every", "100",
                 "--save-every", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(sample_manifest, tmp_path_factory):
    """Two rows of the tiny preset's FLUX and one of tiny-swap's (another VAE config: another base)."""
    root = tmp_path_factory.mktemp("runs")
    return {"omniid": train_flow(sample_manifest, root / "omniid", "tiny", "omniid"),
            "arcface": train_flow(sample_manifest, root / "arcface", "tiny", "arcface"),
            "other-base": train_flow(sample_manifest, root / "other-base", "tiny-swap", "omniid")}


@pytest.fixture(scope="module")
def eval_set(kept_faces, sample_run, tmp_path_factory):
    """Two identities of 3 real face crops each, named in protocol order."""
    folder = tmp_path_factory.mktemp("evalset")
    rows = []
    for n, clip in enumerate(sorted(set(kept_faces["clip_id"].to_pylist()))[:2]):
        for i, face in enumerate([r for r in kept_faces.to_pylist() if r["clip_id"] == clip][:3]):
            crop, mask = f"id{n}/{i:03d}.jpg", f"id{n}/{i:03d}.png"
            (folder / crop).parent.mkdir(exist_ok=True)
            shutil.copy(sample_run / face["crop_path"], folder / crop)
            shutil.copy(sample_run / face["mask_path"], folder / mask)
            rows.append({**face, "clip_id": f"id{n}", "crop_path": crop, "mask_path": mask})
    table = pa.Table.from_pylist(rows, schema=kept_faces.schema)
    write_contract_folder(folder, {"train": table, "test": table}, folder)
    return folder / "test.parquet"


@contextlib.contextmanager
def flux_built():
    """Every FluxTransformer2DModel constructed inside, with how many constructed before it (inside)
    were still alive then."""
    from diffusers import FluxTransformer2DModel

    built: list[tuple[weakref.ref, int]] = []
    original = FluxTransformer2DModel.__init__

    @functools.wraps(original)
    def counted(self, *args, **kwargs):
        gc.collect()
        alive = sum(ref() is not None for ref, _ in built)
        original(self, *args, **kwargs)
        built.append((weakref.ref(self), alive))

    FluxTransformer2DModel.__init__ = counted
    try:
        yield built
    finally:
        FluxTransformer2DModel.__init__ = original


def results(out) -> pd.DataFrame:
    return pd.read_parquet(out / "results.parquet").drop(columns=["input_paths"])


@pytest.fixture(scope="module")
def shared(runs, eval_set, tmp_path_factory):
    """One eval of two rows of one base: its folder and the FLUX transformers it constructed."""
    out = tmp_path_factory.mktemp("shared")
    with flux_built() as built:
        assert eval_main(["--checkpoint", str(runs["omniid"]), str(runs["arcface"]), "--manifest", str(eval_set),
                          "--out", str(out), *EVAL]) == 0
    return out, built


def test_rows_of_one_base_share_one_flux_and_score_as_if_built_per_row(runs, eval_set, shared, tmp_path):
    from omniid.evaluate import Protocol, evaluate
    from omniid.generation import OmniIDGenerator
    from omniid.metrics import FaceMetrics, default_pipeline

    out, built = shared
    assert len(built) == 1  # one FLUX for both rows (one per row before)
    with flux_built() as per_row:
        own = {name: OmniIDGenerator.from_checkpoint(runs[name]) for name in ("omniid", "arcface")}
    assert len(per_row) == 2 and own["omniid"].objective.transformer is not own["arcface"].objective.transformer
    evaluate(own, eval_set, tmp_path / "per-row", FaceMetrics(default_pipeline("tiny"), None, "cpu", None),
             Protocol(inputs=(1, 2), targets=1, steps=2, bootstrap=50))
    pd.testing.assert_frame_equal(results(out), results(tmp_path / "per-row"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "swap.parquet"),
                                  pd.read_parquet(tmp_path / "per-row" / "swap.parquet"))
    generated = results(out).query("representation in ['omniid', 'arcface']").image_path
    assert len(generated) == 2 * 2 * 2  # 2 identities x 2 rows x k = 1, 2
    for path in generated:
        assert (out / path).read_bytes() == (tmp_path / "per-row" / path).read_bytes(), path


def test_another_base_is_built_after_the_first_is_freed(runs, eval_set, shared, tmp_path):
    with flux_built() as built:
        assert eval_main(["--checkpoint", str(runs["omniid"]), str(runs["other-base"]), str(runs["arcface"]),
                          "--manifest", str(eval_set), "--out", str(tmp_path / "two"), *EVAL]) == 0
    assert len(built) == 2                    # tiny's (omniid, arcface), then tiny-swap's
    assert [alive for _, alive in built] == [0, 0]  # the first was freed before the second was built
    two = results(tmp_path / "two")
    assert list(dict.fromkeys(two.representation)) == ["omniid", "omniid (other-base)", "arcface", "copy-input"]
    same_base = two[two.representation.isin(["omniid", "arcface", "copy-input"])].reset_index(drop=True)
    before = results(shared[0])
    before = before[before.representation.isin(["omniid", "arcface", "copy-input"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(same_base.sort_values(["identity_id", "representation", "k"]).reset_index(drop=True),
                                  before.sort_values(["identity_id", "representation", "k"]).reset_index(drop=True))
