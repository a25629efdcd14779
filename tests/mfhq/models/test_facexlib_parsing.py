"""facexlib face parsing (the paper preset's mask; our choice) with its real architectures and random weights: the
face labels, binary masks at crop size, BiSeNet, and fp16 on CUDA."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mfhq.models import create_backend
from mfhq.models.facexlib_parsing import LABELS, PARSENET, face_mask


def test_face_labels_are_skin_brows_eyes_nose_mouth_lips():
    labels = np.arange(len(LABELS)).reshape(1, -1)
    mask = face_mask(labels)[0]
    # Spelled out, not read back from FACE_LABELS: comparing the mask with the constant that
    # made it passed with "nose" dropped from the face. The MTD loss needs every inner part.
    face = {"skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip"}
    assert {LABELS[i] for i in np.flatnonzero(mask == 255)} == face
    not_face = {"background", "hair", "hat", "neck", "neck_l", "cloth", "l_ear", "r_ear", "ear_r"}
    assert {LABELS[i] for i in np.flatnonzero(mask == 0)} == not_face


@pytest.fixture(scope="module")
def parsenet(tmp_path_factory):
    from facexlib.parsing import ParseNet

    folder = tmp_path_factory.mktemp("parsing")
    torch.manual_seed(0)
    torch.save(ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict(), folder / PARSENET.name)
    # parse_size 128 keeps the CPU tests quick; the network and the label mapping are the same.
    backend = create_backend("parsing", "facexlib-parsenet", models_dir=folder, parse_size=128)
    backend.setup()
    return backend


def test_parsenet_random_weights_give_binary_masks_at_crop_size(parsenet):
    crops = np.random.default_rng(4).integers(0, 256, (2, 448, 448, 3), dtype=np.uint8)
    masks = parsenet.masks(crops)
    assert parsenet.labels(crops).shape == (2, 128, 128)
    assert masks.shape == (2, 448, 448) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 255}


@pytest.mark.parametrize("label, value", [("skin", 255), ("eye_g", 255), ("hair", 0), ("l_ear", 0), ("background", 0)])
def test_parsenet_mask_follows_the_predicted_label(parsenet, label, value):
    head = parsenet._net.out_mask_conv.conv2d
    with torch.no_grad():  # make the network predict one label everywhere
        head.weight.zero_()
        head.bias.zero_()
        head.bias[LABELS.index(label)] = 10.0
    masks = parsenet.masks(np.full((1, 448, 448, 3), 128, np.uint8))
    assert (masks == value).all()


def test_bisenet_loads_through_facexlib_and_masks_a_batch(tmp_path):
    from facexlib.parsing import BiSeNet

    torch.manual_seed(0)
    torch.save(BiSeNet(num_class=19).state_dict(), tmp_path / "parsing_bisenet.pth")
    backend = create_backend("parsing", "facexlib-bisenet", models_dir=tmp_path, parse_size=128)
    backend.setup()
    masks = backend.masks(np.random.default_rng(5).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8))
    assert masks.shape == (2, 256, 256) and set(np.unique(masks)) <= {0, 255}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_parsing_on_cuda_in_fp16_autocast_agrees_with_cpu(parsenet):
    folder = parsenet.paths[PARSENET.name].parent  # the file, not the fixture's edited network
    gpu, cpu = (create_backend("parsing", "facexlib-parsenet", models_dir=folder, device=d, parse_size=128)
                for d in ("cuda", "cpu"))
    gpu.setup()
    cpu.setup()
    crops = np.random.default_rng(6).integers(0, 256, (4, 448, 448, 3), dtype=np.uint8)
    on_gpu, on_cpu = gpu.labels(crops), cpu.labels(crops)
    assert on_gpu.shape == on_cpu.shape == (4, 128, 128)
    assert (on_gpu == on_cpu).mean() > 0.95  # fp16 may flip near-tied pixels, not the map
