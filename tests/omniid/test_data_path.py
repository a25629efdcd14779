"""The trainer's data path: a JPEG crop is decoded straight at the encoder's side (draft mode),
close to a full decode and resize, and an image in memory gets the same reduction; the
`omniid-bench-data` report carries its fields for both stages."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from omniid.bench_data import main as bench_main
from omniid.data import load_faces
from omniid.preprocess import image_to_tensor, load_pixels, pixels_to_tensor
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="module")
def crops(sample_manifest):
    faces = load_faces(sample_manifest)
    return [faces[i].crop for i in range(0, len(faces), max(1, len(faces) // 6))]


def _full_decode(path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def test_a_jpeg_crop_is_decoded_at_the_encoders_side_close_to_a_full_resize(crops):
    for path in crops:
        assert _full_decode(path).size == (448, 448)
        with Image.open(path) as image:
            image.draft("RGB", (224, 224))
            drafted = np.asarray(image.convert("RGB"))
        assert np.array_equal(load_pixels(path, 224), drafted)  # the DCT did the 448 -> 224 reduction
        resized = np.asarray(_full_decode(path).resize((224, 224), Image.Resampling.BICUBIC))
        error = np.abs(drafted.astype(np.int16) - resized)
        assert error.mean() < 1.0 and error.max() <= 16, (error.mean(), error.max())  # in 1/255


@pytest.mark.parametrize("side", [224, 32])
def test_an_image_in_memory_gets_the_same_reduction_as_its_file(crops, side):
    """What inference feeds the encoder (an image in memory) against what training read (the file)."""
    for path in crops:
        from_file = load_pixels(path, side).astype(np.int16)
        from_memory = load_pixels(np.asarray(_full_decode(path)), side)
        assert from_memory.shape == (side, side, 3)
        error = np.abs(from_file - from_memory)
        assert error.mean() < 1.0 and error.max() <= 16, (side, error.mean(), error.max())
    tensor = image_to_tensor(crops[0], 224)
    assert tensor.shape == (3, 224, 224) and tensor.is_contiguous()
    assert np.allclose(tensor.numpy(), pixels_to_tensor(load_pixels(crops[0], 224)).numpy())



@pytest.mark.parametrize("side, factor", [(224, 2), (112, 4), (56, 8), (32, 8)])
def test_an_image_in_memory_is_reduced_by_the_factor_a_jpeg_draft_decode_takes(side, factor):
    """448 px in memory -> `side`: the largest of 2, 4, 8 that keeps it at least `side` (the DCT
    scale PIL's draft takes from the file), as a box filter, then bicubic for the rest: 448 -> 224
    is the 2 x 2 box itself, not a bicubic resize of the whole."""
    pixels = np.random.default_rng(0).integers(0, 256, (448, 448, 3), dtype=np.uint8)
    reduced = Image.fromarray(pixels).reduce(factor)
    expected = reduced if reduced.size == (side, side) else reduced.resize((side, side), Image.Resampling.BICUBIC)
    assert np.array_equal(load_pixels(pixels, side), np.asarray(expected))

def test_bench_data_reports_both_stages(sample_manifest, capsys):
    assert bench_main(["--manifest", str(sample_manifest), "--preset", "tiny", "--items", "4", "--workers", "1",
                       "--loader-batches", "2", "--mtd-steps-per-s", "10", "--flow-steps-per-s", "1"]) == 0
    records = {r["stage"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert set(records) == {"mtd", "flow"}
    for stage, r in records.items():
        for field in ("cpu_ms_per_item", "wall_ms_per_item", "items_per_s_per_worker", "jpeg_floor_ms_per_item",
                      "item_over_floor", "crops_per_item", "loader_items_per_s_per_worker", "loader_cores_per_gpu_at_assumed_rate"):
            assert math.isfinite(r[field]) and r[field] > 0, (stage, field, r[field])
        assert r["items"] == 4 and r["loader_workers"] == 1
        steps, identities = r["assumed_optimizer_steps_per_s"], r["identities_per_optimizer_step"]
        assert r["assumed_items_per_s_per_gpu"] == steps * identities
        needed = r["assumed_items_per_s_per_gpu"]  # an assumption (the step rate), not a measurement
        assert r["loader_cores_per_gpu_at_assumed_rate"] == pytest.approx(needed * r["cpu_ms_per_item"] / 1000)
    assert records["mtd"]["masks"] and not records["flow"]["masks"]
    assert records["flow"]["target_side"] == 32 and records["mtd"]["targets"] == 8


def test_bench_data_names_a_missing_manifest(tmp_path, caplog):
    assert bench_main(["--manifest", str(tmp_path / "none.parquet"), "--preset", "tiny", "--stages", "mtd"]) == 2
    assert "none.parquet" in caplog.text


@pytest.mark.parametrize("shape", [(100, 100), (300, 200), (200, 300)])
def test_an_image_smaller_than_the_side_is_scaled_up_from_a_file_and_from_memory(tmp_path, shape):
    """A crop smaller than the encoder's input on a side (a run with a smaller align.size, a small
    photo) is scaled up, the same from its file as from memory; it once raised a bare StopIteration,
    which a DataLoader's iteration can take for the end of its data."""
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    path = tmp_path / "small.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    from_file = load_pixels(path, 224)
    assert from_file.shape == (224, 224, 3)
    assert np.array_equal(from_file, load_pixels(np.asarray(_full_decode(path)), 224))
