"""What is checked before any work: --out (a file, under a file, read-only), --device, --limit
and --workers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_cli
from mfhq.checks import check_device, cuda_devices
from mfhq.manifest.io import OutputError, check_output_dir
from mfhq.models.runtime import DeviceError

REPO = Path(__file__).resolve().parents[2]


def test_out_that_is_a_file_or_under_a_file_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    for out, needle in ((a_file, f"--out {a_file}: is a file, not a folder"),
                        (a_file / "runs" / "r1", f"--out {a_file}/runs/r1: {a_file} is a file, so no folder can be made under it")):
        result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(out), check=False)
        assert result.returncode == 2 and needle in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_out_in_a_read_only_folder_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match=f"--out {locked}/run: {locked}, where it would be made, is not writable"):
            check_output_dir(locked / "run")
    finally:
        locked.chmod(0o755)
    check_output_dir(tmp_path / "new" / "run")  # missing folders on the way are fine


def test_cluster_sample_out_that_is_a_file_is_refused(tmp_path):
    a_file = tmp_path / "manifests"
    a_file.write_text("mine")
    result = run_cli("cluster-sample", "--run", str(tmp_path / "no-run"), "--manifest", str(a_file / "sub"), check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--manifest {a_file}/sub: {a_file} is a file, so no folder can be made under it" in result.stderr


def test_devices_that_are_not_here_are_refused():
    check_device("cpu")
    with pytest.raises(DeviceError, match="--device 'banana': not a device; use cpu, cuda or cuda:N"):
        check_device("banana")
    count = cuda_devices() or 0
    with pytest.raises(DeviceError, match=rf"--device 'cuda:{count}': .*"):
        check_device(f"cuda:{count}")


@pytest.mark.parametrize("args,needle", [
    (["--device", "banana"], "run.device is 'banana'; allowed: one of cpu, cuda or cuda:N"),
    (["--limit", "-1"], "Invalid value for '--limit'"),
    (["--limit", "0"], "Invalid value for '--limit'"),
    (["--workers", "0"], "run.workers is 0; allowed: an integer >= 1"),
])
def test_extract_refuses_bad_flags_before_any_work(tmp_path, args, needle):
    (tmp_path / "videos").mkdir()
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(run), *args, check=False)
    assert result.returncode == 2, result.stderr
    assert needle in " ".join(result.stderr.split())  # rich may wrap the usage box
    assert "Traceback" not in result.stderr
    assert not run.exists()  # nothing was planned or written


@pytest.mark.skipif(bool(cuda_devices()), reason="this machine has CUDA")
def test_extract_with_cuda_on_a_machine_without_it_is_refused(tmp_path):
    (tmp_path / "videos").mkdir()
    run = tmp_path / "run"
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(run), "--device", "cuda", check=False)
    assert result.returncode == 2
    assert "--device 'cuda': no CUDA GPU is available on this machine" in result.stderr
    assert "run with --device cpu" in result.stderr and not run.exists()
    # The paper preset asks for cuda itself: the message names the preset's option.
    preset = REPO / "pipelines" / "paper.yaml"
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(run), "--pipeline", str(preset), check=False)
    assert result.returncode == 2 and f"{preset}: run.device 'cuda': no CUDA GPU" in result.stderr
    assert not run.exists()
