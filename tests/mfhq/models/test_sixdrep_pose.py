"""6DRepNet (the paper preset's pose; our choice) with its real architecture and random weights: the angle and roll
conventions, the backend, and an import clear of modules named utils and model."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from mfhq.align import arcface_template
from mfhq.models import create_backend
from mfhq.models.pnp_pose import PnPPose
from mfhq.models.sixdrep_pose import SIXDREPNET, import_sixdrepnet, inplane_rotation, to_project_angles

REPO = Path(__file__).resolve().parents[3]


def _rotated_template(degrees_ccw: float) -> np.ndarray:
    points = arcface_template(448).astype(np.float64) + 300
    centre, theta = points.mean(0), np.radians(degrees_ccw)
    d = points - centre
    # Counter-clockwise on screen, where y points down.
    return np.stack([centre[0] + d[:, 0] * np.cos(theta) + d[:, 1] * np.sin(theta),
                     centre[1] - d[:, 0] * np.sin(theta) + d[:, 1] * np.cos(theta)], axis=1)


def test_inplane_rotation_agrees_with_the_roll_convention():
    landmarks = np.stack([_rotated_template(a) for a in (-25.0, 0.0, 20.0)])
    np.testing.assert_allclose(inplane_rotation(landmarks), [-25, 0, 20], atol=0.5)
    pnp = PnPPose()
    pnp.setup()
    rolls = pnp.estimate(landmarks, np.tile([1000, 1000], (3, 1)))[:, 2]
    np.testing.assert_allclose(rolls, [-25, 0, 20], atol=2.0)  # the same convention as pnp5


def test_sixdrepnet_angles_convert_to_the_project_convention():
    _, utils = import_sixdrepnet()
    pitch, yaw, roll = np.radians([10.0, 30.0, -15.0])
    rotation = torch.tensor(utils.get_R(pitch, yaw, roll), dtype=torch.float32)[None]
    sixd = np.degrees(utils.compute_euler_angles_from_rotation_matrices(rotation).numpy())
    ours = to_project_angles(sixd, np.array([5.0]))[0]
    # sixdrepnet's draw_axis: yaw > 0 points the nose to the image's left, roll > 0 is clockwise.
    np.testing.assert_allclose(ours, [-30.0, 10.0, 15.0 + 5.0], atol=1e-3)


def test_sixdrepnet_random_weights_through_the_backend(tmp_path):
    network, _ = import_sixdrepnet()
    torch.manual_seed(0)
    model = network(backbone_name="RepVGG-B1g2", backbone_file="", deploy=True, pretrained=False)
    torch.save(model.state_dict(), tmp_path / SIXDREPNET.name)
    pose = create_backend("pose", "6drepnet", models_dir=tmp_path)
    pose.setup()
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 256, (2, 448, 448, 3), dtype=np.uint8)
    landmarks = np.stack([_rotated_template(0.0), _rotated_template(30.0)])
    angles = pose.estimate(landmarks, np.tile([1000, 1000], (2, 1)), crops)
    assert angles.shape == (2, 3) and np.isfinite(angles).all()
    assert (np.abs(angles[:, :2]) <= 180).all() and (np.abs(angles[:, 2]) <= 180).all()
    # Same crop, landmarks rolled by 30 degrees more: roll moves by 30, yaw and pitch do not.
    same = pose.estimate(landmarks, np.tile([1000, 1000], (2, 1)), crops[[0, 0]])
    np.testing.assert_allclose(same[1, :2], same[0, :2], atol=1e-3)
    assert abs(((same[1, 2] - same[0, 2] + 180) % 360 - 180) - 30) < 0.5


def test_sixdrepnet_is_imported_clear_of_modules_named_utils_and_model(tmp_path):
    (tmp_path / "utils.py").write_text("MARK = 'a project module named utils'\n")
    (tmp_path / "model.py").write_text("MARK = 'a project module named model'\n")
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import utils, model\n"
        "from mfhq.models.sixdrep_pose import import_sixdrepnet\n"
        "network, sixd_utils = import_sixdrepnet()\n"
        "assert 'sixdrepnet' in sixd_utils.__file__, sixd_utils.__file__\n"
        "assert sys.modules['utils'].MARK.startswith('a project') and sys.modules['model'].MARK.startswith('a project')\n"
        "assert not any(p.rstrip('/').endswith('sixdrepnet') for p in sys.path), sys.path\n"
        "network(backbone_name='RepVGG-B1g2', backbone_file='', deploy=True, pretrained=False)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
