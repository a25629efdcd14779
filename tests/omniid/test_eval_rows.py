"""omniid-eval's rows on the tiny preset (random-weight diffusers classes on CPU: the numbers mean
nothing about quality): FLUX is built once per base model, not once per row (rows of one base
share one FluxTransformer2DModel and score exactly as rows built each on its own FLUX; rows of
another base get theirs only after the first is freed); --export-multiid's folder is checked
before any model loads; --bench generates each entry with the seed its meta.json records."""
from __future__ import annotations

import contextlib
import functools
import gc
import json
import logging
import shutil
import weakref

import numpy as np

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from omniid.eval_cli import eval_main
from omniid_fixtures import (kept_faces, one_torch_thread, read_only_dir, sample_manifest,  # noqa: F401  (fixtures)
                             train_flow, write_eval_set)

EVAL = ["--inputs", "1,2", "--targets", "1", "--steps", "2", "--bootstrap", "50"]



@pytest.fixture(scope="module")
def runs(sample_manifest, tmp_path_factory):
    """Two rows of the tiny preset's FLUX and one of tiny-swap's (another VAE config: another base)."""
    root = tmp_path_factory.mktemp("runs")
    return {"omniid": train_flow(sample_manifest, root / "omniid", "omniid"),
            "arcface": train_flow(sample_manifest, root / "arcface", "arcface"),
            "other-base": train_flow(sample_manifest, root / "other-base", "omniid", preset="tiny-swap")}


@pytest.fixture(scope="module")
def eval_set(kept_faces, sample_run, tmp_path_factory):
    """Two identities of 3 real face crops each, named in protocol order."""
    return write_eval_set(tmp_path_factory.mktemp("evalset"), kept_faces, sample_run, identities=2, faces=3)


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
    # two omniid rows of step 2: each is labelled with its run
    assert list(dict.fromkeys(two.representation)) == ["omniid (omniid, step 2)", "omniid (other-base, step 2)",
                                                        "arcface", "copy-input"]
    # the row `shared` calls omniid (its images' folder is named after the label: left out)
    two = two.replace({"representation": {"omniid (omniid, step 2)": "omniid"}}).drop(columns=["image_path"])
    same_base = two[two.representation.isin(["omniid", "arcface", "copy-input"])].reset_index(drop=True)
    before = results(shared[0]).drop(columns=["image_path"])
    before = before[before.representation.isin(["omniid", "arcface", "copy-input"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(same_base.sort_values(["identity_id", "representation", "k"]).reset_index(drop=True),
                                  before.sort_values(["identity_id", "representation", "k"]).reset_index(drop=True))


@pytest.fixture
def nothing_loaded(monkeypatch):
    """Fails the test if a checkpoint or a metric model gets loaded."""
    from omniid.generation import OmniIDGenerator
    from omniid.metrics import FaceMetrics

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the command's folders were checked")

    monkeypatch.setattr(OmniIDGenerator, "from_checkpoint", refuse)
    monkeypatch.setattr(FaceMetrics, "__init__", refuse)


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]


def test_the_export_folder_is_checked_before_any_model_loads(runs, eval_set, read_only_dir, tmp_path, caplog,
                                                             nothing_loaded):
    a_file, foreign, theirs = tmp_path / "a-file", tmp_path / "notes", tmp_path / "theirs"
    a_file.write_text("")
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    theirs.mkdir()
    (theirs / "omniid-export.json").write_text(json.dumps({"eval_out": str(tmp_path / "other-eval"), "roots": []}))
    out = tmp_path / "eval"
    for folder, message in (
            (a_file, f"--export-multiid {a_file}: is a file, not a folder"),
            (read_only_dir / "x", f"--export-multiid {read_only_dir / 'x'}: {read_only_dir}, where it would be made, "
                                  "is on a read-only file system"),
            (foreign, f"--export-multiid {foreign}: already holds files that are not an omniid-eval export "
                      "(notes.txt); give a new or empty folder"),
            (theirs, f"--export-multiid {theirs}: holds the export of another evaluation (--out "
                     f"{tmp_path / 'other-eval'})"),
            (out, f"--export-multiid {out}: is --out itself")):
        caplog.clear()
        assert eval_main(["--checkpoint", str(runs["omniid"]), "--manifest", str(eval_set), "--out", str(out),
                          "--export-multiid", str(folder), *EVAL]) == 2
        assert len(errors(caplog)) == 1 and errors(caplog)[0].startswith(message), errors(caplog)
    assert not out.exists() and (foreign / "notes.txt").read_text() == "mine"


def test_the_same_evaluation_with_force_replaces_its_own_export(tmp_path):
    from omniid.eval_export import check_export_dir, write_export
    from omniid.errors import OutputError

    image = tmp_path / "face.jpg"
    Image.new("RGB", (8, 8)).save(image)
    row = {"image_path": str(image), "identity_id": "x", "k": 1, "target": 0, "sample": 0, "seed": 3,
           "target_path": str(image), "input_paths": [str(image)]}
    folder, out = tmp_path / "multiid", tmp_path / "eval"
    write_export(folder, [{**row, "representation": "a"}, {**row, "representation": "b"}], out, "p")
    check_export_dir(folder, out, force=True)  # the same --out, with --force: taken again
    write_export(folder, [{**row, "representation": "a"}], out, "p")
    assert sorted(p.name for p in folder.iterdir()) == ["a", "omniid-export.json"]  # b's entries are gone
    with pytest.raises(OutputError, match="holds the export of another evaluation"):
        check_export_dir(folder, tmp_path / "another-eval")


@pytest.fixture(scope="module")
def exported(runs, eval_set, tmp_path_factory):
    """An eval with --seed 7 exported for MultiID-Bench: (its folder, the omniid root)."""
    root = tmp_path_factory.mktemp("exported")
    assert eval_main(["--checkpoint", str(runs["omniid"]), "--manifest", str(eval_set), "--out", str(root / "eval"),
                      "--seed", "7", "--no-swap", "--no-copy-row", "--export-multiid", str(root / "multiid"),
                      *EVAL]) == 0
    return root / "eval", root / "multiid" / "omniid"


def test_bench_generates_each_entry_with_the_seed_its_meta_json_records(runs, exported, tmp_path, caplog):
    first, root = exported
    metas = {entry.name: json.loads((entry / "meta.json").read_text()) for entry in root.iterdir()}
    assert len(metas) == 2 * 2 and {m["seed"] for m in metas.values()} == {7}  # not the default --seed 0
    with caplog.at_level(logging.INFO, logger="omniid"):
        assert eval_main(["--bench", str(root), "--checkpoint", str(runs["omniid"]), "--out", str(tmp_path / "bench"),
                          "--steps", "2", "--bootstrap", "50", "--no-copy-row"]) == 0
    assert "each entry is generated with the seed its meta.json records" in caplog.text
    assert "seeds each --bench entry's own, from its meta.json" in (tmp_path / "bench" / "table.md").read_text()
    back = pd.read_parquet(tmp_path / "bench" / "results.parquet")
    generated = back[back.representation == "omniid"]
    assert len(generated) == len(metas) and set(back[back.representation == "bench out"].seed) == {7}
    for _, row in generated.iterrows():
        meta = metas[row.identity_id]
        assert row.seed == meta["seed"]
        again = np.asarray(Image.open(tmp_path / "bench" / row.image_path))
        original = np.asarray(Image.open(first / "images" / "omniid" / meta["identity_id"] /
                                         f"k{meta['k']}_t{meta['target']}_s{meta['sample']}.png"))
        assert np.array_equal(again, original), row.identity_id  # the same image: same inputs, seed, weights


def test_bench_refuses_to_generate_from_an_entry_without_a_seed(runs, exported, tmp_path, caplog, nothing_loaded):
    bench = tmp_path / "bench"
    shutil.copytree(exported[1], bench)
    entry = sorted(bench.iterdir())[1]
    meta = json.loads((entry / "meta.json").read_text())
    del meta["seed"]
    (entry / "meta.json").write_text(json.dumps(meta))
    assert eval_main(["--bench", str(bench), "--checkpoint", str(runs["omniid"]), "--out", str(tmp_path / "out"),
                      "--steps", "2"]) == 2
    assert errors(caplog) == [f"--bench {entry / 'meta.json'}: has no integer \"seed\" (found None); omniid-eval "
                              "generates each entry with the seed its meta.json records (--export-multiid writes it). "
                              "Add one, or score the given out.jpg alone (without --checkpoint)"]
