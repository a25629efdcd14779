"""HF `datasets` loads a manifest folder with its splits, and crops and masks as images."""
from __future__ import annotations

import pandas as pd
import pytest

from mfhq.manifest.hf import with_images


def test_hf_datasets_loads_the_folder_with_splits_and_images(manifests, tmp_path):
    hf = pytest.importorskip("datasets")
    train = pd.read_parquet(manifests / "train.parquet")
    # the folder's dataset card declares the splits
    ds = hf.load_dataset(str(manifests), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == len(train) and ds["test"].num_rows == len(pd.read_parquet(manifests / "test.parquet"))
    assert ds["train"][0]["crop_path"] == train.crop_path.iloc[0]
    ident = hf.load_dataset(str(manifests), "identities", cache_dir=str(tmp_path / "cache"))
    assert ident["clips"].num_rows == len(pd.read_parquet(manifests / "identities.parquet"))
    card = (manifests / "README.md").read_text()
    assert f"| train | {len(train)} | {train.identity_id.nunique()} |" in card
    images = with_images(ds, manifests)
    assert isinstance(images["train"].features["crop"], hf.Image)
    assert images["train"][0]["crop"].size == (448, 448) and images["test"][0]["mask"].mode == "1"
