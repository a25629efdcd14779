"""Face masks from facexlib's face parsing networks (ParseNet, BiSeNet), batched.

Both predict the 19 CelebAMask-HQ labels at 512 px. The MTD loss needs the face itself, so
the binary mask (255 = face) is the union of FACE_LABELS: skin, brows, eyes, eyeglasses (they
sit on the face; leaving them out would punch holes at the eyes), nose, mouth and lips. Ears,
earrings, neck, necklace, cloth, hair, hat and background are not face: they change between
views of one person and are not identity.

Each network is built and loaded by facexlib's own `init_parsing_model`, pointed at the folder
where the resolved file lies, so facexlib finds it and downloads nothing.
"""
from __future__ import annotations

import numpy as np

from mfhq.models.base import Backend
from mfhq.models.runtime import inference, prepare_torch_module, torch_device
from mfhq.models.weights import WeightFile

# CelebAMask-HQ label order, as facexlib's parsing models predict it.
LABELS = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
          "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
FACE_LABELS = ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "nose", "mouth", "u_lip", "l_lip")
FACE_IDS = np.array([LABELS.index(name) for name in FACE_LABELS])
PARSE_SIZE = 512


def _weight(file: str, release: str) -> WeightFile:
    return WeightFile(
        name=file, package="facexlib", package_path=f"weights/{file}", sha256=None,
        origin=f"facexlib release {release} (github.com/xinntao/facexlib)",
        fetch="mfhq models fetch --to DIR",
        licence="facexlib: Apache-2.0; trained on CelebAMask-HQ (non-commercial research only)",
        url=f"https://github.com/xinntao/facexlib/releases/download/{release}/{file}",
    )


PARSENET = _weight("parsing_parsenet.pth", "v0.2.2")
BISENET = _weight("parsing_bisenet.pth", "v0.2.0")


def face_mask(labels: np.ndarray) -> np.ndarray:
    """[..., H, W] label ids -> uint8 mask, 255 where the label is one of FACE_LABELS."""
    return np.where(np.isin(labels, FACE_IDS), 255, 0).astype(np.uint8)


class _FacexlibParsing(Backend):
    task = "parsing"
    model_name = ""
    weight: WeightFile
    mean = std = (0.5, 0.5, 0.5)

    def load(self) -> None:
        import torch
        from facexlib.parsing import init_parsing_model

        path = self.paths[self.weight.name]
        # init_parsing_model looks for <model_rootpath>/<file name> before downloading.
        net = init_parsing_model(model_name=self.model_name, device="cpu", model_rootpath=str(path.parent))
        self._torch = torch
        self._dev = torch_device(self.device)
        self._net = prepare_torch_module(net, self.device)
        self.batch_size = int(self.options.get("batch_size", 8))
        # Both networks are fully convolutional; they were trained at 512 px, which stays the default.
        self.size = int(self.options.get("parse_size", PARSE_SIZE))

    def labels(self, crops: np.ndarray) -> np.ndarray:
        """[N, S, S, 3] BGR uint8 -> [N, size, size] label ids (size 512 unless parse_size says)."""
        import cv2

        torch, out = self._torch, []
        mean, std = np.array(self.mean, np.float32), np.array(self.std, np.float32)
        for begin in range(0, len(crops), self.batch_size):
            chunk = [cv2.resize(c, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
                     for c in crops[begin:begin + self.batch_size]]
            rgb = (np.stack(chunk)[..., ::-1].astype(np.float32) / 255.0 - mean) / std
            x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).to(self._dev)
            with inference(self.device):
                logits = self._net(x)[0]  # both networks return (parsing logits, ...)
                out.append(logits.argmax(dim=1).to(torch.uint8).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.size, self.size), np.uint8)

    def masks(self, crops: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        import cv2

        size = crops.shape[1]
        masks = face_mask(self.labels(crops))
        if size != self.size:
            masks = np.stack([cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) for m in masks]) \
                if len(masks) else np.zeros((0, size, size), np.uint8)
        return masks


class ParseNetParsing(_FacexlibParsing):
    name = "facexlib-parsenet"
    model_name = "parsenet"
    weight = PARSENET
    weight_files = (PARSENET,)
    licence = PARSENET.licence


class BiSeNetParsing(_FacexlibParsing):
    name = "facexlib-bisenet"
    model_name = "bisenet"
    weight = BISENET
    weight_files = (BISENET,)
    licence = BISENET.licence
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet statistics, as facexlib's demo
