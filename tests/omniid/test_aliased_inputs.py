"""omniid's inputs that are its output, or one input given twice: refused before any work, in one
line naming the paths, and nothing of the input touched."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from omniid.cli import main
from omniid.eval_cli import eval_main
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest, split_manifest, train_flow  # noqa: F401  (pytest fixtures)

TINY = ["--preset", "tiny", "--steps", "2", "--batch-size", "1", "--eval-every", "100", "--save-every", "2"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def flow_run(sample_manifest, tmp_path_factory) -> Path:
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "run")


def test_init_from_the_run_out_holds_is_refused_before_restart_deletes_it(sample_manifest, tmp_path, caplog):
    """`--init-from RUN --out RUN --restart` (the refusal's own advice without --restart) deleted
    the checkpoint it was to start from, then said it was `not an Omni-ID checkpoint`."""
    out = tmp_path / "mtd"
    assert main(["--manifest", str(sample_manifest), "--out", str(out), *TINY]) == 0
    before = _files(out)
    for init_from in (out, out / "checkpoints" / "step-00000002", tmp_path / "." / "mtd" / "checkpoints"):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="omniid"):
            assert main(["--manifest", str(sample_manifest), "--out", str(out), "--init-from", str(init_from),
                         "--restart", *TINY]) == 2
        assert f"--init-from {init_from} is a checkpoint of --out {out}, the run this command trains" in caplog.text
        assert _files(out) == before, "the run's checkpoints changed"
    # a new run inside the folder of the run it starts from is another run: it trains
    assert main(["--manifest", str(sample_manifest), "--out", str(out / "flow"), "--init-from", str(out),
                 "--stage", "flow", *TINY]) == 0


def test_the_training_manifest_as_test_manifest_is_refused(sample_manifest, tmp_path, caplog):
    """Its eval_* losses and swap gap, logged as a test set's, were measured on the training identities."""
    copy = tmp_path / "copy.parquet"
    copy.write_bytes(sample_manifest.read_bytes())
    for test, how in ((sample_manifest.parent / "." / "train.parquet", "is"), (copy, "has the same content (sha256) as")):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="omniid"):
            assert main(["--manifest", str(sample_manifest.parent), "--test-manifest", str(test),
                         "--out", str(tmp_path / "run"), *TINY]) == 2
        assert (f"test manifest {test.resolve()} (--test-manifest, or test.parquet beside --manifest) {how} the "
                f"training manifest {sample_manifest.resolve()}") in caplog.text
        assert not (tmp_path / "run").exists()


def test_a_test_manifest_sharing_identities_with_training_says_so(sample_manifest, split_manifest, tmp_path, caplog):
    """Some identities in both (sample_manifest's test.parquet is two of its training clips): the
    log says how many are not held out; a split without shared identities draws no such line."""
    import pyarrow.parquet as pq

    test = sample_manifest.parent / "test.parquet"
    shared = sorted(set(pq.read_table(test, columns=["identity_id"]).column(0).to_pylist()))
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert main(["--manifest", str(sample_manifest), "--out", str(tmp_path / "both"), *TINY]) == 0
    assert (f"test manifest {test.resolve()}: {len(shared)} of its {len(shared)} identities are in the training "
            f"manifest {sample_manifest.resolve()} too (e.g. {shared[0]})") in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert main(["--manifest", str(split_manifest), "--out", str(tmp_path / "apart"), *TINY]) == 0
    assert "identities are in the training manifest" not in caplog.text


def test_an_out_that_is_or_lies_inside_the_manifest_folder_is_refused(sample_manifest, caplog):
    """The run's checkpoints, log and preset went among the manifest's files (cluster-sample then
    refused to rebuild the folder)."""
    folder = sample_manifest.parent
    before = sorted(p.name for p in folder.iterdir())
    for out, manifest, where in ((folder, folder, "is"), (folder / "run", sample_manifest, "lies inside")):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="omniid"):
            assert main(["--manifest", str(manifest), "--out", str(out), *TINY]) == 2
        assert f"--out {out}: {where} the manifest folder {folder} (--manifest)" in caplog.text
        assert sorted(p.name for p in folder.iterdir()) == before


def test_one_checkpoint_given_twice_to_omniid_eval_is_refused(flow_run, sample_manifest, tmp_path, caplog):
    """Two spellings of one step folder made two rows of one model, generated and scored twice."""
    for twice in ([flow_run, flow_run], [flow_run, flow_run / "checkpoints" / "latest"]):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="omniid"):
            assert eval_main(["--checkpoint", *map(str, twice), "--manifest", str(sample_manifest.parent),
                              "--out", str(tmp_path / "eval"), "--inputs", "1", "--steps", "1"]) == 2
        step = (flow_run / "checkpoints" / "step-00000002").resolve()
        assert (f"--checkpoint {twice[1]}: the checkpoint {flow_run} given again (both are {step}); its row would be "
                "generated and scored twice") in caplog.text
        assert not (tmp_path / "eval").exists()


def test_an_eval_or_generate_out_inside_the_manifest_folder_is_refused(flow_run, sample_manifest, caplog):
    """omniid-eval's table, images and report went among the manifest's files (as a run's did
    before omniid-train refused it), and cluster-sample then refused to rebuild the folder."""
    from omniid.eval_cli import generate_main

    folder = sample_manifest.parent
    before = sorted(p.name for p in folder.iterdir())
    crop = next(folder.rglob("*.jpg"), None) or sample_manifest  # any path: refused before it is read
    for command, argv, what in (
            (eval_main, ["--checkpoint", str(flow_run), "--manifest", str(folder), "--out", str(folder / "eval"),
                         "--inputs", "1", "--targets", "1", "--steps", "1", "--no-swap"], "omniid-eval's files"),
            (eval_main, ["--checkpoint", str(flow_run), "--manifest", str(folder), "--out", str(folder.parent / "ev"),
                         "--export-multiid", str(folder / "multiid"), "--inputs", "1", "--steps", "1", "--no-swap"],
             "the export's entries"),
            (generate_main, ["--checkpoint", str(flow_run), "--images", str(crop), "--manifest", str(folder),
                             "--out", str(folder / "gen"), "--steps", "1"], "omniid-generate's files")):
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="omniid"):
            assert command(argv) == 2
        assert f"lies inside the manifest folder {folder} (--manifest); {what} would sit among the manifest's " \
               "files" in caplog.text, caplog.text
        assert sorted(p.name for p in folder.iterdir()) == before
