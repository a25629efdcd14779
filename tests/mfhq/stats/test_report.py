"""`mfhq stats` on the real sample run: the report equals direct queries, --sql and its errors,
and a run without a manifest."""
from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from conftest import run_cli


def parts(out: Path) -> str:
    return f"read_parquet(['{out}/train.parquet', '{out}/test.parquet'])"


def test_stats_report_equals_direct_queries(manifests, sample_run, tmp_path):
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--out", str(tmp_path))
    assert "== face_outcomes" in result.stdout and "== pose_spread" in result.stdout
    tables = tmp_path / "tables"
    faces, clips = f"'{sample_run}/faces/*.parquet'", f"'{sample_run}/clips/*.parquet'"

    status = pd.read_csv(tables / "clip_status.csv").set_index("status").clips.to_dict()
    assert status == dict(duckdb.sql(f"SELECT status, count(*) FROM {clips} GROUP BY 1").fetchall())
    out = pd.read_csv(tables / "face_outcomes.csv").fillna("")
    direct = dict(duckdb.sql(f"SELECT coalesce(drop_reason, ''), count(*) FROM {faces} GROUP BY 1").fetchall())
    assert out.groupby("reason").faces.sum().to_dict() == direct
    assert set(out[out.reason == "other_identity"].stage) == {"identity"}
    per_source = pd.read_csv(tables / "identities_per_source.csv")
    direct = duckdb.sql(f"SELECT split, count(DISTINCT identity_id), count(*) FROM {parts(manifests)} GROUP BY 1").fetchall()
    assert {(r.split, r.identities, r.faces) for r in per_source.itertuples()} == set(direct)
    hist = pd.read_csv(tables / "pose_hist.csv")
    yaw = hist[(hist.faces_of == "kept") & (hist.axis == "yaw")].set_index("bin").faces.to_dict()
    assert yaw == {float(b): n for b, n in duckdb.sql(
        f"SELECT floor(yaw / 10) * 10, count(*) FROM {faces} WHERE kept GROUP BY 1").fetchall()}
    spread = pd.read_csv(tables / "pose_spread.csv").set_index("identity_id")
    direct = dict(duckdb.sql(f"SELECT identity_id, sqrt(var_pop(yaw) + var_pop(pitch) + var_pop(roll)) "
                             f"FROM {parts(manifests)} GROUP BY 1").fetchall())
    assert spread.spread_after.to_dict() == pytest.approx(direct)
    thr = pd.read_csv(tables / "stage_throughput.csv").set_index("stage").seconds.to_dict()
    direct = dict(duckdb.sql(f"SELECT k, round(sum(v), 3) FROM (SELECT unnest(map_keys(stage_seconds)) k, "
                             f"unnest(map_values(stage_seconds)) v FROM {clips}) GROUP BY 1").fetchall())
    assert thr == pytest.approx(direct)
    assert {p.name for p in tmp_path.glob("*.png")} >= {"pose_yaw.png", "pose_pitch.png", "quality.png", "pose_spread.png"}
    # the headline totals are direct queries' answers
    head = pd.read_csv(tables / "headline.csv").set_index("metric").value.to_dict()
    q = lambda sql: duckdb.sql(sql).fetchall()[0][0]  # noqa: E731
    assert head["source videos"] == q(f"SELECT count(DISTINCT video_key) FROM {clips}")
    assert head["source videos with a clip decoded"] == q(
        f"SELECT count(DISTINCT video_key) FROM {clips} WHERE n_frames_read > 0")
    assert head["clips"] == sum(status.values()) and head["clips ok"] == status["ok"]
    assert head["clips decode_error"] == status["decode_error"]
    assert head["faces kept"] == q(f"SELECT count(*) FROM {faces} WHERE kept")
    assert head["identities"] == q(f"SELECT count(DISTINCT identity_id) FROM {parts(manifests)}")
    for split in ("train", "test"):
        assert head[f"{split} faces"] == q(f"SELECT count(*) FROM '{manifests}/{split}.parquet'")
        assert head[f"{split} identities"] == q(f"SELECT count(DISTINCT identity_id) FROM '{manifests}/{split}.parquet'")
    # the page parses, shows the headline first, and every image it references exists
    page = ReportPage.read(tmp_path / "report.html")
    assert page.text.index("faces kept") < page.text.index("Plots") < page.text.index("Sampled faces")
    assert "<h2>Why clips failed <code>clip_reasons</code></h2>" in page.html  # a title, and the view for --sql
    assert {"pose_yaw.png", "quality.png"} <= set(page.images)
    strips = [src for src in page.images if src.startswith("strips/")]
    assert len(strips) == 8 * head["identities"]  # all identities (few), 8 crops each
    assert all((tmp_path / src).is_file() for src in page.images), page.images
    assert "y " in page.text and "q 0." in page.text  # pose and quality under each crop


class ReportPage(HTMLParser):
    """A strict-enough parse: every non-void element closed in order; collects img sources."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.chunks = [], [], []

    @classmethod
    def read(cls, path: Path) -> "ReportPage":
        page = cls()
        page.html = path.read_text()
        page.feed(page.html)
        page.close()
        assert page.stack == [], f"unclosed elements: {page.stack}"
        page.text = " ".join(page.chunks)
        return page

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.chunks.append(data)


def test_stats_sql_and_errors(manifests, sample_run, tmp_path):
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests),
                     "--sql", "SELECT sum(faces)::BIGINT AS n FROM face_outcomes WHERE outcome = 'kept'")
    kept = duckdb.sql(f"SELECT count(*) FROM '{sample_run}/faces/*.parquet' WHERE kept").fetchall()[0][0]
    assert result.stdout.split() == ["n", str(kept)]
    bad = run_cli("stats", "--run", str(tmp_path / "missing"), check=False)
    assert bad.returncode == 2 and "no such run folder" in bad.stderr
    bad = run_cli("cluster-sample", "--run", str(tmp_path), "--out", str(tmp_path / "m"), check=False)
    assert bad.returncode == 2 and "run.json: missing" in bad.stderr
    bad = run_cli("stats", "--run", str(sample_run), "--sql", "SELECT * FROM no_such_view", check=False)
    assert bad.returncode == 2 and "query failed" in bad.stderr


def test_stats_without_manifest_treats_each_clip_as_an_identity(sample_run, tmp_path):
    run_cli("stats", "--run", str(sample_run), "--out", str(tmp_path))
    spread = pd.read_csv(tmp_path / "tables" / "pose_spread.csv").set_index("identity_id")
    direct = dict(duckdb.sql(f"SELECT source || '/' || clip_id, count(*) FROM '{sample_run}/faces/*.parquet' "
                             "WHERE kept GROUP BY 1").fetchall())
    assert spread.faces_before.to_dict() == direct and spread.spread_after.isna().all()
    assert not (tmp_path / "tables" / "identities_per_source.csv").exists()


def test_stats_warns_when_the_manifest_was_built_from_other_runs(manifests, sample_run, tmp_path):
    other = tmp_path / "other"  # another run (here a copy under another name): not the manifest's
    shutil.copytree(sample_run, other)
    result = run_cli("stats", "--run", str(other), "--manifest", str(manifests), "--out", str(tmp_path / "r"))
    warning = next(line for line in result.stdout.splitlines() if "built from other runs" in line)
    assert warning.startswith(f"WARNING: manifest {manifests.resolve()} was built from other runs than those given")
    assert f"built from {sample_run.resolve()}; given with --run: {other.resolve()}" in warning
    headline = result.stdout.split("== headline\n")[1].split("==")[0]
    assert "manifest (built from other runs than those given)" in headline
    page = ReportPage.read(tmp_path / "r" / "report.html")
    assert page.html.index("class='state warn'") < page.html.index("id='headline'")
    assert f"was built from other runs than those given: it was built from {sample_run.resolve()}" in page.text
    # its own run: no such warning, and the manifest's numbers in the plain section
    own = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--sql", "SELECT 1 AS one")
    assert "other runs" not in own.stdout + own.stderr


def test_a_report_replaces_the_earlier_one_in_its_folder(manifests, sample_run, tmp_path):
    run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests), "--out", str(tmp_path))
    assert (tmp_path / "tables" / "identities_per_source.csv").is_file() and list((tmp_path / "strips").glob("*.jpg"))
    (tmp_path / "notes.txt").write_text("mine")  # files stats did not write stay
    (tmp_path / "strips" / "cover.jpg").write_bytes(b"mine")
    run_cli("stats", "--run", str(sample_run), "--out", str(tmp_path))  # no manifest this time
    tables = {p.stem for p in (tmp_path / "tables").glob("*.csv")}
    assert "identities_per_source" not in tables and "identity_status" not in tables and "headline" in tables
    assert [p.name for p in (tmp_path / "strips").iterdir()] == ["cover.jpg"]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    page = ReportPage.read(tmp_path / "report.html")
    assert "Sampled faces" not in page.text
    assert "identities" not in pd.read_csv(tmp_path / "tables" / "headline.csv").metric.values
    assert {p.name for p in tmp_path.glob("*.png")} == set(page.images)  # every plot on disk is this report's
    assert not list(tmp_path.glob(".*"))  # the page was written in place by a rename, no temp file left


UPSCALED = "sampled faces upscaled (face_size < align.size)"


def test_manifest_rows_carry_face_size_and_stats_counts_the_upscaled(manifests, sample_run):
    # the sample preset keeps faces from 128 px of source extent up, so its 448 px crops are upscaled
    rows = duckdb.sql(f"SELECT m.face_size, f.face_size FROM {parts(manifests)} m JOIN "
                      f"'{sample_run}/faces/*.parquet' f USING (source, clip_id, frame_index, face_index)").fetchall()
    total = duckdb.sql(f"SELECT count(*) FROM {parts(manifests)}").fetchall()[0][0]
    assert len(rows) == total and all(m is not None and m == f for m, f in rows)
    upscaled = sum(m < 448 for m, _ in rows)
    assert upscaled > 0
    result = run_cli("stats", "--run", str(sample_run), "--manifest", str(manifests),
                     "--sql", f"SELECT value FROM headline WHERE metric = '{UPSCALED}'")
    assert result.stdout.split() == ["value", str(upscaled)]


def test_an_out_holding_another_commands_report_html_is_refused(sample_run, tmp_path):
    """An omniid-eval output folder (its marker, table and report.html): before, stats deleted its
    report.html and wrote its own in its place, beside a marker still saying the eval was complete."""
    out = tmp_path / "eval"
    out.mkdir()
    (out / "omniid-eval.json").write_text('{"state": "complete", "written_by": "omniid-eval"}')
    (out / "table.md").write_text("| Representation | setting |\n")
    (out / "report.html").write_text("<!doctype html><html><head><title>omniid-eval</title></head></html>")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("stats", "--run", str(sample_run), "--out", str(out), check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"--out {out}: holds a report.html that mfhq stats did not write" in result.stderr, result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
