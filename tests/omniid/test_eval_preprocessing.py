"""omniid-eval's results.parquet says, on every generated row, how each input was read: a
--bench entry's references are photos (detected and aligned, turned by their EXIF orientation,
the largest of several faces taken), a manifest's are aligned crops given as such; the reference
rows, which no encoder reads, have none."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from omniid.eval_cli import eval_main
from omniid.face_inputs import AS_IS, GIVEN
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest, train_flow  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="module")
def flow_run(sample_manifest, tmp_path_factory):
    return train_flow(sample_manifest, tmp_path_factory.mktemp("flow") / "run", "omniid")


@pytest.fixture
def bench(kept_faces, sample_run, tmp_path):
    """One entry: ref_1 a photo as a phone stores it (turned, EXIF Orientation 6), ref_2 and ori
    aligned crops of the sample run."""
    import skimage.data

    entry = tmp_path / "bench" / "entry"
    entry.mkdir(parents=True)
    upright = np.ascontiguousarray(skimage.data.astronaut()[:, :448])  # public domain, one face
    exif = Image.Exif()
    exif[0x0112] = 6  # a viewer turns it clockwise: stored turned counter-clockwise
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))).save(entry / "ref_1.jpg", exif=exif, quality=95)
    crops = [sample_run / r["crop_path"] for r in kept_faces.to_pylist()][:2]
    shutil.copy(crops[0], entry / "ref_2.jpg")
    shutil.copy(crops[1], entry / "ori.jpg")
    (entry / "meta.json").write_text(json.dumps({"prompt": "photo of a person.", "seed": 3}))
    return entry.parent


def test_each_generated_row_says_how_each_bench_photo_was_read(flow_run, bench, tmp_path):
    out = tmp_path / "out"
    assert eval_main(["--bench", str(bench), "--checkpoint", str(flow_run), "--out", str(out), "--steps", "1",
                      "--bootstrap", "20"]) == 0
    rows = pq.read_table(out / "results.parquet").to_pylist()
    generated = [r for r in rows if r["checkpoint"]]
    assert generated and all(r["k"] == 2 for r in generated)
    for row in generated:
        phone, crop = row["input_preprocessing"]
        assert phone["how"].startswith("face detected and aligned") and phone["exif_orientation"] == 6
        assert phone["faces_found"] == 1 and len(phone["face_box"]) == 4
        assert crop == {"how": AS_IS, "faces_found": 1, "face_box": crop["face_box"], "exif_orientation": None}
    assert all(r["input_preprocessing"] is None for r in rows if not r["checkpoint"])  # copy-input: no encoder


def test_a_manifests_inputs_are_recorded_as_given_crops(flow_run, sample_manifest, tmp_path):
    out = tmp_path / "out"
    assert eval_main(["--checkpoint", str(flow_run), "--manifest", str(sample_manifest.with_name("test.parquet")),
                      "--out", str(out), "--identities", "1", "--inputs", "1", "--targets", "1", "--steps", "1",
                      "--bootstrap", "20", "--no-swap"]) == 0
    generated = [r for r in pq.read_table(out / "results.parquet").to_pylist() if r["checkpoint"]]
    assert generated and all(r["input_preprocessing"] == [{"how": GIVEN, "faces_found": None, "face_box": None,
                                                           "exif_orientation": None}] for r in generated)
