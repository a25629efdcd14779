"""Presets by name from an installed wheel (carried byte for byte), and by path; an unknown name
lists the presets."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package as `pip install` leaves it: a real wheel, installed (without dependencies)
    into its own folder, away from the source tree."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(root / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((root / "dist").glob("mfhq-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(root / "site"),
                    str(wheel)], check=True, capture_output=True)
    return root


def test_the_wheel_carries_the_presets_byte_for_byte(installed):
    wheel = next((installed / "dist").glob("mfhq-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for name in ("sample", "paper"):
            assert archive.read(f"mfhq/pipelines/{name}.yaml") == (REPO / "pipelines" / f"{name}.yaml").read_bytes()


def test_presets_resolve_by_name_from_the_installed_package(installed, tmp_path):
    site = installed / "site"
    code = ("import mfhq.presets as p, mfhq.config as c; print(p.resolve_preset('paper')); "
            "print(c.load_pipeline('sample').pose.backend)")
    # Run from an empty folder, with only the installed copy of mfhq on the path ahead of the rest.
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         check=True).stdout.split("\n")
    assert Path(out[0]).resolve() == (site / "mfhq" / "pipelines" / "paper.yaml").resolve()
    assert out[1] == "pnp68"


def test_a_path_still_works_and_an_unknown_name_lists_the_presets(tmp_path, monkeypatch):
    from mfhq.config import ConfigError, load_pipeline

    assert load_pipeline(REPO / "pipelines" / "paper.yaml").name == "paper"
    assert load_pipeline("paper") == load_pipeline(REPO / "pipelines" / "paper.yaml")
    (tmp_path / "sample").mkdir()  # `make demo` writes a folder named sample/: still the preset
    monkeypatch.chdir(tmp_path)
    assert load_pipeline("sample").name == "sample"
    with pytest.raises(ConfigError, match=r"papr.*paper, sample"):
        load_pipeline("papr")
    with pytest.raises(ConfigError, match=r"did you mean --pipeline paper"):
        load_pipeline("paper.yaml")
