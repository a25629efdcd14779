"""`mfhq bench-curate`'s cluster-sample totals that add the clip means: by default the clip means
are made from about 1 GiB of embeddings and their time scaled to --faces; a total holding that
scaled part says so, as the clip means' own line does, and a total measured whole does not."""
from __future__ import annotations

from conftest import run_cli


def _totals(out: str) -> list[str]:
    return [line for line in out.splitlines() if "x the full scan in wall time" in line and "clip means from" in line
            or line.startswith("  ... from every face's embedding instead")]


def test_a_total_with_a_scaled_part_says_it_was_scaled(tmp_path):
    out = run_cli("bench-curate", "--identities", "200", "--faces", "20000", "--embedding-faces", "5000",
                  "--workdir", str(tmp_path / "b"), "--pipeline", "paper", "--skip-embedding-fit").stdout
    means = next(line for line in out.splitlines() if line.startswith("clip means ("))
    assert "scaled linearly from 5000 faces" in means, out  # the part, labelled where it is made
    totals = _totals(out)
    assert len(totals) == 2, out
    assert all("scaled from 5000 faces, not measured at 20000" in line for line in totals), totals


def test_a_total_measured_whole_does_not_say_scaled(tmp_path):
    out = run_cli("bench-curate", "--identities", "200", "--faces", "20000", "--embedding-faces", "20000",
                  "--workdir", str(tmp_path / "b"), "--pipeline", "paper", "--skip-embedding-fit").stdout
    totals = _totals(out)
    assert len(totals) == 2 and not any("scaled" in line for line in totals), out
