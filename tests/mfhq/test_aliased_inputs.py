"""Inputs that are an output, lie inside one, or are given twice under two names: each refused
before any work, in one line naming the paths, and nothing of the input touched."""
from __future__ import annotations

import os

from conftest import SAMPLE_PRESET, run_cli


def test_bench_refuses_a_root_inside_the_scratch_folder_it_empties(tmp_path, sample_dir):
    """bench empties --out before each run: a --root inside it lost its videos, then read nothing."""
    out = tmp_path / "bench"
    (out / "clips").mkdir(parents=True)
    (out / ".mfhq-bench-scratch").write_text("")  # a scratch folder an earlier bench made
    video = out / "clips" / "mine.mp4"
    video.write_bytes((sample_dir / "videos" / "astronaut_motion.mp4").read_bytes())
    os.symlink(out, tmp_path / "link")
    for root, given in ((out / "clips", out), (tmp_path / "link" / "clips", tmp_path / "bench" / ".." / "bench")):
        result = run_cli("bench", "--root", str(root), "--out", str(given), "--pipeline", str(SAMPLE_PRESET),
                         check=False)
        assert result.returncode == 2, result.stderr
        assert f"--root {root} lies inside --out {given}, which bench empties before each run" in result.stderr
        assert video.is_file(), "bench deleted the video it was asked to read"
    result = run_cli("bench", "--root", str(out), "--out", str(out), check=False)
    assert result.returncode == 2 and f"--root {out} is --out {out}" in result.stderr and video.is_file()


def test_a_manifest_built_from_a_run_given_twice_is_refused_by_readers_and_rebuilt(manifests, sample_run, tmp_path):
    """cluster-sample took `--run R --run ./R` until it refused it: such a manifest holds every
    sampled face of R several times over, and split, stats and the trainer read them as faces."""
    import json
    import shutil

    doubled = tmp_path / "manifests"
    shutil.copytree(manifests, doubled)
    sidecar = json.loads((doubled / "manifest.json").read_text())
    (entry,) = sidecar["runs"]
    sidecar["runs"] = [entry, {**entry, "name": entry["name"] + "-2"}]  # as run_entries named the second
    (doubled / "manifest.json").write_text(json.dumps(sidecar))
    said = f"lists run {entry['run_dir']} 2 times (as {entry['name']}, {entry['name']}-2): it was built from a run given twice"
    for args in (("split", "--manifest", str(doubled), "--pipeline", str(SAMPLE_PRESET)),
                 ("stats", "--run", str(sample_run), "--manifest", str(doubled), "--out", str(tmp_path / "report"))):
        result = run_cli(*args, check=False)
        assert result.returncode == 2 and said in result.stderr, result.stderr
    # the same run given once rebuilds it, no --force: it is the same run (not "run ..., not given now")
    run_cli("cluster-sample", "--run", str(sample_run), "--manifest", str(doubled), "--pipeline", str(SAMPLE_PRESET))
    assert [r["name"] for r in json.loads((doubled / "manifest.json").read_text())["runs"]] == [entry["name"]]
    run_cli("split", "--manifest", str(doubled), "--pipeline", str(SAMPLE_PRESET))


def test_bench_models_refuses_an_out_that_is_the_preset_it_reads(tmp_path):
    """The results' JSON replaced the YAML preset (a packaged one too), found only when the next
    command failed to read it."""
    preset = tmp_path / "mine.yaml"
    preset.write_text(SAMPLE_PRESET.read_text())
    os.symlink(tmp_path, tmp_path / "link")
    for out in (preset, tmp_path / "link" / "mine.yaml"):
        result = run_cli("bench-models", "--pipeline", str(preset), "--out", str(out), "--batch-sizes", "1",
                         "--repeats", "1", "--warmup", "0", check=False)
        assert result.returncode == 2, result.stderr
        assert f"--out {out}: is the --pipeline file {preset}, which the results would overwrite" in result.stderr
        assert preset.read_text() == SAMPLE_PRESET.read_text()
    folder = run_cli("bench-models", "--pipeline", str(preset), "--out", str(tmp_path), check=False)
    assert folder.returncode == 2 and f"--out {tmp_path}: is a folder; --out takes the JSON file" in folder.stderr
    assert "Traceback" not in folder.stderr


def test_stats_refuses_an_out_that_is_a_run_or_the_manifest_folder(manifests, sample_run, tmp_path):
    """The report was written among the run's or the manifest's files; a manifest folder holding
    it could no longer be rebuilt by cluster-sample."""
    import shutil

    run, manifest = tmp_path / "run", tmp_path / "manifests"
    shutil.copytree(sample_run, run)
    shutil.copytree(manifests, manifest)
    before = sorted(p.name for p in manifest.iterdir())
    for out, said in ((run, f"--out {run}: is the run folder --run {run}"),
                      (manifest, f"--out {manifest}: is the manifest folder {manifest}"),
                      (manifest / "report", f"--out {manifest / 'report'}: lies inside the manifest folder {manifest}")):
        result = run_cli("stats", "--run", str(run), "--manifest", str(manifest), "--out", str(out), check=False)
        assert result.returncode == 2 and said in result.stderr, result.stderr
        assert not (out / "report.html").exists()
    assert sorted(p.name for p in manifest.iterdir()) == before
    run_cli("stats", "--run", str(run), "--out", str(run / "report"))  # inside a run folder: apart from its files


def test_bench_curate_refuses_a_workdir_it_did_not_make(tmp_path):
    """It deleted --workdir whole before each run: `--workdir runs/x` took a finished run with it."""
    run = tmp_path / "run"
    (run / "faces").mkdir(parents=True)
    (run / "run.json").write_text("{}")
    small = ("--identities", "20", "--faces", "400", "--merge-clips", "0")
    result = run_cli("bench-curate", *small, "--workdir", str(run), check=False)
    assert result.returncode == 2, result.stderr
    assert f"--workdir {run}: holds files bench-curate did not write (faces, run.json)" in result.stderr
    assert (run / "run.json").read_text() == "{}"
    for _ in range(2):  # its own scratch folder, new then made by it, is replaced
        run_cli("bench-curate", *small, "--workdir", str(tmp_path / "scratch"))
