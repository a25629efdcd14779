"""Random weights for the torch backends whose weight files are missing (ours: for timing only).

Each network is built by its own package as the backend builds it (sixdrepnet's RepVGG-B1g2
deployed, pyiqa's CFANet with TOPIQ-NR-face's options, facexlib's ParseNet and BiSeNet),
initialised at random, and saved under the backend's weight file name in a scratch folder. The
backend then loads that file through its own `load()`, so what is timed is the module the
pipeline runs, on the device and in the precision it runs there; only its outputs mean nothing.
Nothing is downloaded. An ONNX graph cannot be made this way (the graph is the file), so
those rows say which file is missing instead.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path


def _sixdrepnet():
    from mfhq.models.sixdrep_pose import import_sixdrepnet

    network, _ = import_sixdrepnet()
    return network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False).state_dict()


def _topiq_face():
    from mfhq.models.topiq_iqa import build_cfanet

    return {"params": build_cfanet(None).state_dict()}  # the key pyiqa's checkpoint loader reads


def _parsenet():
    from facexlib.parsing import ParseNet

    return ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict()  # as init_parsing_model builds it


def _bisenet():
    from facexlib.parsing import BiSeNet

    return BiSeNet(num_class=19).state_dict()


# backend name -> the state its weight file would hold, from a randomly initialised network
RANDOM_STATES = {
    "6drepnet": _sixdrepnet,
    "topiq-nr-face": _topiq_face,
    "facexlib-parsenet": _parsenet,
    "facexlib-bisenet": _bisenet,
}


def has_stand_in(backend_name: str) -> bool:
    return backend_name in RANDOM_STATES


def setup_with_random_weights(backend, scratch: Path, setup=None):
    """Set `backend` up on a random-weights file of its own architecture (see the module docstring)
    by `setup(backend)` (default: backend.setup()); returns what that returns."""
    import torch

    (weight,) = backend.weight_files
    folder = Path(scratch) / backend.name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / weight.name
    torch.manual_seed(0)
    torch.save(RANDOM_STATES[backend.name](), path)
    # The published hash names the real file, which a random one can never match.
    backend.weight_files = (dataclasses.replace(weight, sha256=None, sha256_prefix=None),)
    backend.models_dir = folder
    try:
        return setup(backend) if setup else backend.setup()
    finally:
        path.unlink()  # loaded into memory by now; a few hundred MB not left on disk
