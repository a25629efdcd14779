"""TOPIQ-NR-face (pyiqa `topiq_nr-face`: CFANet, ResNet-50, trained on CGFIQA), batched.

pyiqa's metric of that name aligns every input itself: it builds a facexlib RetinaFace and a
parsing network when constructed (two more downloads) and then runs them one image at a time,
refusing batches. Our crops are already aligned, so we build the same network (pyiqa's
`CFANet` with the metric's options) under a model name without that face step, and load the
same checkpoint ourselves: pyiqa's loader for a given path loads with strict=False (a key
renamed in another pyiqa version would leave its layer randomly initialised, silently) and
with weights_only=False (a file could run code). Every key must match. The network resizes
its input to 512 px as the metric does.

Scores are the network's MOS, about 0..1, higher is better; clipped to [0, 1].
"""
from __future__ import annotations

import numpy as np

from mfhq.models.base import Backend
from mfhq.models.runtime import inference, prepare_torch_module, torch_device
from mfhq.models.weights import WeightFile

_FILE = "topiq_nr_cgfiqa_res50-0a8b8e4f.pth"
TOPIQ_FACE = WeightFile(
    name=_FILE, package=None, package_path=None, sha256=None, sha256_prefix="0a8b8e4f",
    origin="pyiqa topiq_nr-face checkpoint (huggingface.co/chaofengc/IQA-PyTorch-Weights)",
    fetch="mfhq models fetch --to DIR",
    licence="non-commercial (pyiqa 0.1.16: PolyForm-Noncommercial-1.0.0 and NTU S-Lab licence)",
    url=f"https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main/{_FILE}",
    library_cache=("{torch_hub}/pyiqa/" + _FILE,),
)
# pyiqa's DEFAULT_CONFIGS['topiq_nr-face'] metric options, less the face-alignment switch.
CFANET_OPTIONS = dict(semantic_model_name="resnet50", use_ref=False, test_img_size=512)


def build_cfanet(weights: str | None):
    """pyiqa's CFANet as `topiq_nr-face` builds it; random weights when weights is None (tests).
    A checkpoint whose keys or shapes differ from the network's raises (Backend.setup names the file)."""
    import torch
    from pyiqa.archs.topiq_arch import CFANet

    net = CFANet(model_name="topiq_nr_face_prealigned", backbone_pretrain=False,
                 pretrained=False, pretrained_model_path=None, **CFANET_OPTIONS)
    if weights is not None:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        if not isinstance(checkpoint, dict) or "params" not in checkpoint:
            raise ValueError("not a pyiqa checkpoint: it has no 'params' state dict")
        # As pyiqa's clean_state_dict: a checkpoint saved from DataParallel prefixes "module.".
        state = {key.removeprefix("module."): value for key, value in checkpoint["params"].items()}
        net.load_state_dict(state, strict=True)
    return net


class TopiqFaceQuality(Backend):
    name = "topiq-nr-face"
    task = "quality"
    licence = TOPIQ_FACE.licence
    weight_files = (TOPIQ_FACE,)

    def load(self) -> None:
        import torch

        self._torch = torch
        self._dev = torch_device(self.device)
        self._net = prepare_torch_module(build_cfanet(str(self.paths[TOPIQ_FACE.name])), self.device)
        self.batch_size = int(self.options.get("batch_size", 16))

    def score(self, crops: np.ndarray) -> np.ndarray:
        """crops: [N, S, S, 3] BGR uint8, aligned -> [N] in [0, 1]."""
        torch = self._torch
        out = []
        for begin in range(0, len(crops), self.batch_size):
            rgb = np.ascontiguousarray(crops[begin:begin + self.batch_size, :, :, ::-1].transpose(0, 3, 1, 2))
            x = torch.from_numpy(rgb).to(self._dev).float().div_(255.0)
            with inference(self.device):
                out.append(self._net(x).float().reshape(-1).cpu().numpy())
        if not out:
            return np.zeros(0, np.float32)
        return np.clip(np.concatenate(out), 0.0, 1.0).astype(np.float32)
