"""A re-run of omniid-eval never replaces an earlier --export-multiid without --force, even where
--out itself is new again (deleted or moved away since): the export is refused in one line naming
it, before any model loads, and left as it was; with --force it may be replaced."""
from __future__ import annotations

import logging

import pytest
from PIL import Image

from omniid.errors import OutputError
from omniid.eval_cli import eval_main
from omniid.eval_export import check_export_dir, write_export


@pytest.fixture
def earlier_export(tmp_path):
    """(the export folder, the --out that wrote it): an evaluation's export of one real JPEG entry,
    its --out since deleted."""
    image = tmp_path / "face.jpg"
    Image.new("RGB", (8, 8), (120, 90, 60)).save(image)
    row = {"image_path": str(image), "identity_id": "x", "k": 1, "target": 0, "sample": 0, "seed": 3,
           "target_path": str(image), "input_paths": [str(image)], "representation": "omniid"}
    folder, out = tmp_path / "multiid", tmp_path / "eval"
    write_export(folder, [row], out, "a photo")
    return folder, out


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_into_a_new_out_refuses_the_earlier_export_without_force(earlier_export, tmp_path, monkeypatch,
                                                                          caplog):
    from omniid.generation import OmniIDGenerator

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the export folder was checked")

    monkeypatch.setattr(OmniIDGenerator, "from_checkpoint", refuse)
    folder, out = earlier_export
    before = _files(folder)
    assert not out.exists()
    with caplog.at_level(logging.ERROR, logger="omniid"):
        assert eval_main(["--checkpoint", str(tmp_path / "run"), "--manifest", str(tmp_path / "set"),
                          "--out", str(out), "--export-multiid", str(folder)]) == 2
    assert (f"--export-multiid {folder}: holds an earlier export of this evaluation (--out {out}); give --force"
            in caplog.text), caplog.text
    assert _files(folder) == before and not out.exists()


def test_force_lets_the_same_evaluation_replace_its_export(earlier_export):
    folder, out = earlier_export
    with pytest.raises(OutputError, match="holds an earlier export of this evaluation"):
        check_export_dir(folder, out)
    check_export_dir(folder, out, force=True)
    with pytest.raises(OutputError, match="holds the export of another evaluation"):
        check_export_dir(folder, out.parent / "another-eval", force=True)


def test_an_export_holding_files_it_did_not_write_is_refused_even_with_force(earlier_export):
    """A file put beside the evaluation's own export (not one of the roots its marker lists) is
    refused, even with --force: the re-run would leave it among the new entries."""
    folder, out = earlier_export
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds files that its export did not write \(notes.txt\)"):
        check_export_dir(folder, out, force=True)
    assert (folder / "notes.txt").read_text() == "mine"
