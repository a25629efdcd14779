"""6DRepNet head pose (sixdrepnet, RepVGG-B1g2 deployed), batched on the aligned crops.

sixdrepnet appends its own folder to sys.path and imports `utils`, `model` and `backbone` by
bare name, so any other module of those names (ours, a user's, another library's) would be
picked up instead, or be replaced by sixdrepnet's. `import_sixdrepnet` imports it with its
folder first on sys.path and those names cleared, then puts sys.path and sys.modules back.

The crops are aligned, so the in-plane rotation of the face is gone from them; the network's
roll is the residual, and the rotation the alignment removed (measured from the 5 landmarks
against the ArcFace template) is added back. That is exact for roll because sixdrepnet's
Euler angles put roll outermost (R = Rz(roll) Ry(yaw) Rx(pitch)).

Angles follow the project's convention (README): sixdrepnet's yaw and roll have the opposite
sign (checked against its own `draw_axis`), its pitch the same.
"""
from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager

import numpy as np

from mfhq.models.base import Backend
from mfhq.models.runtime import inference, prepare_torch_module, torch_device
from mfhq.models.weights import WeightFile

SIXDREPNET = WeightFile(
    name="6DRepNet_300W_LP_AFLW2000.pth", package=None, package_path=None, sha256=None,
    origin="6DRepNet (Hempel et al.) fine-tuned on 300W-LP, the file sixdrepnet downloads",
    fetch="mfhq models fetch --to DIR", licence="MIT (code and weights); 300W-LP is research-only",
    url="https://cloud.ovgu.de/s/Q67RnLDy6JKLRWm/download/6DRepNet_300W_LP_AFLW2000.pth",
    library_cache=("{torch_hub}/checkpoints/6DRepNet_300W_LP_AFLW2000.pth",),
)
BARE_NAMES = ("utils", "model", "backbone", "backbone.repvgg", "backbone.se_block", "datasets", "loss")
INPUT_SIZE = 224
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


@contextmanager
def _own_bare_names(folder: str):
    saved_path = list(sys.path)
    saved = {name: sys.modules.pop(name) for name in BARE_NAMES if name in sys.modules}
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        for name in BARE_NAMES:  # sixdrepnet's modules stay bound inside its own modules
            sys.modules.pop(name, None)
        sys.modules.update(saved)
        sys.path[:] = saved_path


def import_sixdrepnet():
    """(SixDRepNet network class, sixdrepnet's utils module), imported without name collisions."""
    if "sixdrepnet.regressor" not in sys.modules:
        spec = importlib.util.find_spec("sixdrepnet")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("the 6drepnet pose backend needs sixdrepnet: pip install --no-deps sixdrepnet==0.1.6")
        with _own_bare_names(list(spec.submodule_search_locations)[0]):
            importlib.import_module("sixdrepnet")
    regressor = sys.modules["sixdrepnet.regressor"]
    return regressor.SixDRepNet, regressor.utils


def to_project_angles(sixd_degrees: np.ndarray, inplane_degrees: np.ndarray) -> np.ndarray:
    """[N, 3] sixdrepnet (pitch, yaw, roll) on the aligned crop -> [N, 3] our (yaw, pitch, roll)."""
    pitch, yaw, roll = sixd_degrees[:, 0], sixd_degrees[:, 1], sixd_degrees[:, 2]
    roll = (-roll + inplane_degrees + 180.0) % 360.0 - 180.0
    return np.stack([-yaw, pitch, roll], axis=1).astype(np.float32)


def inplane_rotation(landmarks: np.ndarray) -> np.ndarray:
    """[N] counter-clockwise angle (deg) that aligning the 5 points to the ArcFace template undoes."""
    from mfhq.align import arcface_template, similarity_transform

    template = arcface_template(112)
    angles = []
    for points in landmarks:
        matrix = similarity_transform(np.asarray(points, np.float64), template)
        angles.append(np.degrees(np.arctan2(matrix[1, 0], matrix[0, 0])))
    return np.array(angles, np.float32)


class SixDRepNetPose(Backend):
    name = "6drepnet"
    task = "pose"
    licence = SIXDREPNET.licence
    weight_files = (SIXDREPNET,)

    def load(self) -> None:
        import torch

        network, self._utils = import_sixdrepnet()
        model = network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False)
        state = torch.load(self.paths[SIXDREPNET.name], map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        self._torch = torch
        self._dev = torch_device(self.device)
        self._model = prepare_torch_module(model, self.device)

    def estimate(self, landmarks: np.ndarray, frame_sizes: np.ndarray, crops=None) -> np.ndarray:
        if crops is None or len(crops) == 0:
            return np.zeros((0, 3), np.float32)
        import cv2

        torch = self._torch
        # The ArcFace-template crop is about as loose as sixdrepnet's detector box plus margin.
        small = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        rgb = (small[..., ::-1].astype(np.float32) / 255.0 - _MEAN) / _STD
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))).to(self._dev)
        with inference(self.device):
            rotation = self._model(x).float()
            euler = self._utils.compute_euler_angles_from_rotation_matrices(rotation)
        degrees = np.degrees(euler.cpu().numpy())
        return to_project_angles(degrees, inplane_rotation(landmarks))
