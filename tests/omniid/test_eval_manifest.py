"""What omniid-eval makes of its manifest. It reads crops alone: no mask_path or mask file is
required (training's are). On identities a checkpoint trained on it says so (console, table.md, report.html,
settings.json) instead of reading as a held-out evaluation; it is not refused (the demo does it).
The check compares identity_ids with the training manifest state.json records, or, with that file
gone, the evaluated manifest's SHA-256 with the recorded one."""
from __future__ import annotations

import json
import logging
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mfhq.manifest.io import sha256_of
from omniid.checkpoint import read_state, resolve_checkpoint
from omniid.eval_cli import eval_main
from omniid.eval_seen import seen_in_training
from omniid_fixtures import (kept_faces, one_torch_thread, sample_manifest,  # noqa: F401  (pytest fixtures)
                             train_flow, write_contract_folder)

SEEN = "IDENTITIES SEEN IN TRAINING: held-out numbers do not apply"


@pytest.fixture(scope="module")
def flow_run(sample_manifest, tmp_path_factory):
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "run", "omniid")


def test_eval_on_the_training_manifest_says_its_identities_were_seen(flow_run, sample_manifest, tmp_path, caplog):
    out = tmp_path / "eval"
    with caplog.at_level(logging.WARNING, logger="omniid"):
        assert eval_main(["--checkpoint", str(flow_run), "--manifest", str(sample_manifest), "--out", str(out),
                          "--identities", "2", "--inputs", "1,2", "--targets", "1", "--steps", "2", "--no-swap"]) == 0
    settings = json.loads((out / "settings.json").read_text())
    own = {"training_manifest": str(sample_manifest.resolve()), "how": "identity_id overlap with its training manifest"}
    assert settings["seen_in_training"] == {"omniid": {  # "by": the runs that saw them (run None: itself)
        "seen": 2, "of": 2, **own, "by": [{"run": None, "stage": "flow", "seen": 2, **own}]}}
    assert any(SEEN in r.getMessage() for r in caplog.records)  # on the console, before anything is generated
    table = (out / "table.md").read_text()
    assert SEEN in table.split("| Representation", 1)[0]  # above the table
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| ")]
    assert rows[0][:5] == ["Representation", "setting", "step", "training", "k"]
    assert {tuple(r[:4]) for r in rows[1:]} == {("omniid", "decoder-only", "2", "saw 2/2 identities"),
                                                ("copy-input", "copy of an input", "", "")}
    assert SEEN in (out / "report.html").read_text()


def test_a_held_out_manifest_adds_nothing(flow_run, sample_manifest, tmp_path):
    """Identities the training manifest does not hold: no warning, no column."""
    state = read_state(resolve_checkpoint(flow_run))
    names = set(pq.read_table(sample_manifest, columns=["identity_id"]).column(0).to_pylist())
    assert seen_in_training({"omniid": state}, sample_manifest, ["someone-else"]) == {}
    partly = seen_in_training({"omniid": state}, sample_manifest, ["someone-else", sorted(names)[0]])
    assert partly["omniid"]["seen"] == 1 and partly["omniid"]["of"] == 2


def test_without_the_training_manifest_the_sha256_decides(flow_run, sample_manifest, tmp_path):
    """The recorded file moved away: the evaluated manifest is recognised by its SHA-256."""
    state = read_state(resolve_checkpoint(flow_run))
    assert state["manifest_sha256"] == sha256_of(sample_manifest)  # what training records
    moved = {**state, "manifest": str(tmp_path / "gone" / "train.parquet")}
    copy = tmp_path / "copy.parquet"
    shutil.copy(sample_manifest, copy)
    seen = seen_in_training({"omniid": moved}, copy, ["a", "b"])
    assert seen["omniid"]["seen"] == 2 and "same SHA-256" in seen["omniid"]["how"]
    other = tmp_path / "other.parquet"
    other.write_bytes(copy.read_bytes() + b"\0")
    assert seen_in_training({"omniid": moved}, other, ["a", "b"]) == {}
    assert seen_in_training({"omniid": {}}, copy, ["a"]) == {}  # a checkpoint saved before the record


def test_eval_reads_a_manifest_without_masks(flow_run, kept_faces, sample_run, tmp_path):
    """Crops only: one identity's rows have no mask_path, the other's name mask files that are not
    there. Before, eval refused it (it read the manifest as training does, masks required)."""
    folder = tmp_path / "manifest"
    rows = []
    for n, clip in enumerate(sorted(set(kept_faces["clip_id"].to_pylist()))[:2]):
        for i, face in enumerate([r for r in kept_faces.to_pylist() if r["clip_id"] == clip][:3]):
            crop = f"id{n}/{i:03d}.jpg"
            (folder / crop).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample_run / face["crop_path"], folder / crop)
            mask = None if n == 0 else f"id{n}/{i:03d}.png"  # no mask_path / a mask file that is not there
            rows.append({**face, "clip_id": f"id{n}", "crop_path": crop, "mask_path": mask})
    table = pa.Table.from_pylist(rows, schema=kept_faces.schema)
    write_contract_folder(folder, {"train": table, "test": table}, folder)
    out = tmp_path / "eval"
    assert eval_main(["--checkpoint", str(flow_run), "--manifest", str(folder), "--out", str(out), "--inputs", "1",
                      "--targets", "1", "--steps", "2", "--no-swap", "--no-copy-row"]) == 0
    results = pq.read_table(out / "results.parquet").to_pylist()
    assert sorted((r["identity_id"], r["representation"]) for r in results) == [("id0", "omniid"), ("id1", "omniid")]
