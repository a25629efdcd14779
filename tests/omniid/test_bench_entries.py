"""omniid-eval --bench drops no folder without a trace: a folder that lacks ori.* or ref_1.* (no
MultiID-Bench entry) is named in a warning, a note under the table and settings.json."""
from __future__ import annotations

import json
import logging
import shutil

import pytest

from omniid.eval_cli import eval_main
from omniid_fixtures import kept_faces, one_torch_thread  # noqa: F401  (pytest fixtures)


@pytest.fixture
def bench(kept_faces, sample_run, tmp_path):
    """Two entries of real crops (ref_1, ori, out), a folder with no ori.jpg and one with no ref_1.jpg."""
    root = tmp_path / "bench"
    clips = sorted(set(kept_faces["clip_id"].to_pylist()))[:2]
    for n, clip in enumerate(clips):
        crops = [sample_run / r["crop_path"] for r in kept_faces.to_pylist() if r["clip_id"] == clip][:3]
        entry = root / f"entry{n}"
        entry.mkdir(parents=True)
        for name, crop in zip(("ref_1.jpg", "ori.jpg", "out.jpg"), crops):
            shutil.copy(crop, entry / name)
    shutil.copytree(root / "entry0", root / "no-ori")
    (root / "no-ori" / "ori.jpg").unlink()
    shutil.copytree(root / "entry1", root / "no-ref")
    (root / "no-ref" / "ref_1.jpg").unlink()
    return root


def test_folders_that_are_no_entry_are_named_not_dropped(bench, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert eval_main(["--bench", str(bench), "--out", str(out), "--bootstrap", "20", "--no-real-row"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["identities"] == ["entry0", "entry1"]
    assert settings["skipped"] == {"no-ori": "no ori.* image (.jpg/.jpeg/.png/.webp)",
                                   "no-ref": "no ref_1.* image (.jpg/.jpeg/.png/.webp)"}
    note = f"--bench {bench}: 2 folder(s) without ori.* or ref_1.* skipped, not entries: no-ori, no-ref"
    assert settings["notes"] == [note]
    assert note in [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    table = (out / "table.md").read_text()
    assert f"Note: {note}" in table
    assert "Skipped identities: 2 (folders without ori.* or ref_1.*; listed in settings.json)." in table
