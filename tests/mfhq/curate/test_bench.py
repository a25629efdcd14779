"""`mfhq bench-curate`: the merge of the preset, as configured (the paper's: by source video only),
and the merge's fitted exponent over three sizes."""
from __future__ import annotations

import duckdb
import pytest
import numpy as np

from conftest import run_cli
from mfhq.config import CurateConfig, load_pipeline
from mfhq.curate.bench import run_bench_preset_merge, synthetic_clip_means


def test_the_paper_presets_merge_is_by_source_video_and_finds_the_people():
    cfg = load_pipeline("paper").curate
    assert cfg.merge_by_video_key and not cfg.merge_by_embedding
    lines, result = run_bench_preset_merge(3000, cfg)
    people = len(np.unique(synthetic_clip_means(3000)[1])) + result["planted"]
    # One video per synthetic person, the guard passes them all (recall 1); of the look-alikes
    # planted in a person's video at the guard +- 0.05 some pass it too: wrong merges.
    assert result["recall"] == 1.0 and 0.95 < result["precision"] < 1.0
    assert people - 30 < result["identities"] < people and result["planted"] == 30
    assert "by source video) of 3000 clips + 30 planted look-alikes" in lines[0]
    assert lines[1] == f"  clip pairs against the synthetic people: precision {result['precision']:.4f}, recall 1.0000"
    assert result["same_as_every_clip_pair"] is True  # every pair of one video, by a plain product of all clips


def test_the_bench_scores_clip_pairs_against_the_people():
    """Pair precision and recall: of the pairs put in one identity, the share of one person; of
    one person's pairs, the share put in one identity."""
    import pyarrow as pa

    from mfhq.curate.bench import pair_scores

    ident = pa.table({"identity_id": ["x", "x", "x", "y", "z"]})
    person = np.array([0, 0, 1, 2, 2])
    assert pair_scores(ident, person) == (1 / 3, 1 / 2)  # 3 pairs in identities, 1 right; 2 same-person pairs


def test_bench_curate_adds_the_presets_merge_to_cluster_sample(tmp_path):
    out = run_cli("bench-curate", "--identities", "300", "--faces", "20000", "--workdir", str(tmp_path / "b"),
                  "--pipeline", "paper", "--skip-embedding-fit").stdout
    total = [line for line in out.splitlines() if line.startswith("cluster-sample with the preset's merge of 300 clips")]
    # The paper's video-key merge is guarded by clip means: the first figure says it was given
    # them, the next adds them as cluster-sample makes them, from the clip rows' sums; the last,
    # from every face's embedding. All measured here on the whole 20000 faces.
    assert len(total) == 2 and "(clip means given)" in total[0] and "from the clip rows" in total[1], out
    assert "x the full scan in wall time" in total[1]
    assert "  ... from every face's embedding instead" in out
    means = next(line for line in out.splitlines() if line.startswith("clip means (512-d, every face embedded; 20000 faces"))
    assert "(measured); the two agree to" in means and "the embedding merge" not in out


def test_the_benchs_synthetic_run_sums_each_embedder_output_once(tmp_path):
    """The synthetic face files copy each embedded face's vector to the next faces as embed.every
    does; their clip rows' sums and the read of every face both count each output once."""
    from mfhq.curate.bench_means import CLIP_FACES, write_synthetic_embeddings
    from mfhq.curate.merge import clip_means

    shards = write_synthetic_embeddings(tmp_path / "f", 3 * CLIP_FACES, 8, every=4)
    faces = f"read_parquet('{tmp_path}/f/faces/*.parquet')"
    table = duckdb.sql(f"SELECT * FROM {faces} ORDER BY clip_id, frame_index").to_arrow_table()
    emb = np.asarray(table.column("embedding").to_pylist(), np.float32)
    frame = table.column("frame_index").to_numpy()
    assert shards == 1 and (emb[1:4] == emb[0]).all() and (emb[4] != emb[0]).any()  # copies, then the next output
    con = duckdb.connect()
    con.execute(f"CREATE VIEW usable_faces AS SELECT * FROM {faces}")
    con.execute(f"CREATE VIEW clips AS SELECT * FROM read_parquet('{tmp_path}/f/clips/*.parquet')")
    con.execute("CREATE TABLE clip_codes AS SELECT (row_number() OVER (ORDER BY clip_id) - 1)::BIGINT AS clip_code, "
                "source, clip_id FROM (SELECT DISTINCT source, clip_id FROM usable_faces)")
    for narrowed in (False, True):
        got = clip_means(con, 3, narrowed)
        for clip in range(3):
            rows = slice(clip * CLIP_FACES, (clip + 1) * CLIP_FACES)
            outputs = emb[rows][frame[rows] % 4 == 0]
            want = outputs.sum(0) / np.linalg.norm(outputs.sum(0))
            assert np.allclose(got[clip], want, atol=1e-6)
            everyone = emb[rows].sum(0) / np.linalg.norm(emb[rows].sum(0))
            assert not np.allclose(got[clip], everyone, atol=1e-3)  # counting copies would weigh outputs unevenly


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
    # look-alikes at the threshold +- 0.05 in their own video: some join the person they resemble
    assert result["recall"] == 1.0 and 0.95 < result["precision"] < 1.0
    assert "by source video + embedding; 128-d clip means" in lines[0]


def test_the_sample_presets_merge_has_the_identities_of_every_clip_pair_compared():
    """The preset compares video groups by their pooled means; on the planted people it finds
    what comparing every clip pair finds (the check the benchmark prints)."""
    lines, result = run_bench_preset_merge(2000, load_pipeline("sample").curate, dim=128)
    assert result["same_as_every_clip_pair"] is True
    assert any("same identities as the exact search of every clip pair" in line and line.endswith(": True")
               for line in lines)


def test_the_overlapped_first_steps_run_in_a_fresh_interpreter(tmp_path):
    """The benchmark times cluster-sample's steps before the merge with the merge's setup started
    first, in a spawned interpreter (where torch is not imported yet): the child must import and
    run on its own."""
    from mfhq.curate.bench_means import CLIP_FACES, _in_fresh_interpreter, codes_means_and_setup, write_synthetic_embeddings

    write_synthetic_embeddings(tmp_path / "f", 2 * CLIP_FACES, 8, every=4)
    seconds = _in_fresh_interpreter(codes_means_and_setup, tmp_path / "f", load_pipeline("sample").curate, 8, True)
    assert isinstance(seconds, float) and seconds > 0


@pytest.mark.parametrize("option, value, minimum", [
    ("--identities", "0", 1), ("--faces", "-3", 1), ("--workers", "0", 1), ("--merge-clips", "-2", 0),
    ("--embedding-faces", "-2", 0)])
def test_bench_curate_refuses_a_count_below_its_least_before_any_work(tmp_path, option, value, minimum):
    """Each count is checked as it is parsed: before, --identities 0 ran as 1 identity, --faces -3
    as none, --merge-clips -2 ended in numpy's traceback. The other counts are small, so the old
    code finishes fast."""
    small = {"--identities": "10", "--faces": "100", "--merge-clips": "0"}
    small[option] = value
    workdir = tmp_path / "work"
    result = run_cli("bench-curate", "--workdir", str(workdir), "--skip-embedding-fit",
                     *[part for item in small.items() for part in item], check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"Invalid value for '{option}': Input should be greater than or equal to {minimum}" in result.stderr
    assert not workdir.exists()  # refused before the synthetic table is written
