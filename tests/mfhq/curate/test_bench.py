"""`mfhq bench-curate`: the merge of the preset, as configured (the paper's: by source video only),
and the merge's fitted exponent over three sizes."""
from __future__ import annotations

import numpy as np

from conftest import run_cli
from mfhq.config import CurateConfig, load_pipeline
from mfhq.curate.bench import run_bench_preset_merge, synthetic_clip_means


def test_the_paper_presets_merge_is_by_source_video_and_finds_the_people():
    cfg = load_pipeline("paper").curate
    assert cfg.merge_by_video_key and not cfg.merge_by_embedding
    lines, result = run_bench_preset_merge(3000, cfg)
    people = len(np.unique(synthetic_clip_means(3000)[1]))
    assert result["identities"] == people  # one video per synthetic person, the guard passes them
    assert "by source video)" in lines[0]


def test_bench_curate_adds_the_presets_merge_to_cluster_sample(tmp_path):
    out = run_cli("bench-curate", "--identities", "300", "--faces", "20000", "--workdir", str(tmp_path / "b"),
                  "--pipeline", "paper", "--skip-embedding-fit").stdout
    total = [line for line in out.splitlines() if line.startswith("cluster-sample with the preset's merge of 300 clips")]
    assert total and "x the full scan in wall time" in total[0], out
    assert "the embedding merge" not in out


def test_bench_curate_merge_fits_an_exponent_over_three_sizes():
    from mfhq.curate.bench import run_bench_merge

    lines, result = run_bench_merge(600, CurateConfig())
    assert result["sizes"] == [150, 300, 600] and len(result["cpu_s"]) == 3
    assert result["same_as_all_pairs"] is True
    assert np.isfinite(result["exponent_cpu"]) and any("clips^" in line for line in lines)
    assert f"filtered in {result['arithmetic']}" in lines[-1]


def test_the_sample_presets_merge_finds_the_people():
    cfg = load_pipeline("sample").curate
    assert cfg.merge_by_video_key and cfg.merge_by_embedding
    lines, result = run_bench_preset_merge(2000, cfg, dim=128)
    assert result["identities"] == len(np.unique(synthetic_clip_means(2000, 128)[1]))
    assert "by source video + embedding; 128-d clip means" in lines[0]
