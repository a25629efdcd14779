"""What a user types first: presets by name from an installed wheel, --version, -q/-v, the exit
codes of `models fetch` / `models verify`, and a summary that never cuts a reason mid-word."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, run_cli


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


def test_extract_without_pipeline_says_it_uses_sample_first(tmp_path):
    (tmp_path / "videos").mkdir()
    result = run_cli("extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"), check=False)
    first = result.stderr.strip().splitlines()[0]
    assert "no --pipeline given: using the packaged preset 'sample'" in first and "paper" in first


def test_version_and_log_levels(tmp_path):
    from mfhq import __version__

    assert run_cli("--version").stdout.strip() == f"mfhq {__version__}"
    (tmp_path / "videos").mkdir()
    quiet = run_cli("-q", "extract", "--root", str(tmp_path / "videos"), "--out", str(tmp_path / "run"), check=False)
    assert "INFO" not in quiet.stderr
    verbose = run_cli("--verbose", "models", "verify", "yunet")
    assert verbose.returncode == 0 and "setPreferableTarget" not in verbose.stderr


def test_models_fetch_an_unknown_name_exits_nonzero_listing_names(tmp_path):
    result = run_cli("models", "fetch", "scrfdd", "--to", str(tmp_path), check=False)
    assert result.returncode == 2
    assert "scrfdd" in result.stderr and "scrfd" in result.stderr and "6drepnet" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing was downloaded


def test_models_verify_exits_nonzero_when_a_file_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = run_cli("models", "verify", "6drepnet", "--models-dir", str(tmp_path), check=False,
                     env={**os.environ})
    assert result.returncode == 1
    assert "6DRepNet_300W_LP_AFLW2000.pth: missing" in result.stdout and "1 missing file" in result.stderr
    assert run_cli("models", "verify", "--pipeline", "sample").returncode == 0  # ships in packages


@pytest.fixture
def weights_server():
    """A local HTTP server with Range support (as release hosts have), recording the ranges asked."""
    import http.server
    import threading

    data, asked = os.urandom(300_000), []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.endswith("/model.pth"):
                self.send_error(404)
                return
            wanted = self.headers.get("Range")
            asked.append(wanted)
            start = int(wanted.split("=")[1].split("-")[0]) if wanted else 0
            self.send_response(206 if wanted else 200)
            if wanted:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self.wfile.write(data[start:])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", data, asked
    server.shutdown()


def _fetch_in_subprocess(url: str, sha256: str, target: Path) -> subprocess.CompletedProcess:
    # huggingface_hub honours HF_HUB_OFFLINE (which the tests set) for every address: this
    # download goes to the local server only, so the child runs without it.
    code = ("import sys, dataclasses; from pathlib import Path; from mfhq.models.catalog import fetch; "
            "from mfhq.models.sixdrep_pose import SIXDREPNET as W; "
            "fetch(Path(sys.argv[3]), files=[dataclasses.replace(W, name='model.pth', url=sys.argv[1], sha256=sys.argv[2])])")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    return subprocess.run([sys.executable, "-c", code, url, sha256, str(target)], env=env, capture_output=True, text=True)


def test_fetch_resumes_a_partial_download(weights_server, tmp_path):
    import hashlib

    base, data, asked = weights_server
    (tmp_path / ".partial").mkdir()
    (tmp_path / ".partial" / "model.pth.part").write_bytes(data[:100_000])  # an interrupted fetch
    result = _fetch_in_subprocess(f"{base}/model.pth", hashlib.sha256(data).hexdigest(), tmp_path)
    assert result.returncode == 0, result.stderr
    assert asked == ["bytes=100000-"]  # only the rest was asked for
    assert (tmp_path / "model.pth").read_bytes() == data
    assert not (tmp_path / ".partial" / "model.pth.part").exists()


def test_a_failed_download_names_the_file_and_keeps_the_partial(weights_server, tmp_path):
    base, _, _ = weights_server
    (tmp_path / ".partial").mkdir()
    (tmp_path / ".partial" / "missing.pth.part").write_bytes(b"first half")
    result = _fetch_in_subprocess(f"{base}/missing.pth", "0" * 64, tmp_path)
    assert result.returncode != 0
    assert "DownloadError: model.pth: download from " + base + "/missing.pth failed" in result.stderr
    assert "resume" in result.stderr
    assert (tmp_path / ".partial" / "missing.pth.part").read_bytes() == b"first half"


def test_summary_wraps_long_reasons_at_word_boundaries(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mfhq.run_summary import summary_text
    from synthetic_runs import ClipSpec, write_run

    run = write_run(tmp_path / "run", [ClipSpec("folder", "c1", "v1", 1, faces=2)])
    shard = next((run / "clips").glob("*.parquet"))
    table = pq.read_table(shard)
    reason = ("decode_error: the container reports 9000 frames but the stream ends after 212; "
              "decord gave up at frame 213 and PyAV could not seek past the damaged keyframe")
    table = table.set_column(table.schema.get_field_index("status"), "status", pa.array(["decode_error"]))
    table = table.set_column(table.schema.get_field_index("reason"), "reason", pa.array([reason]))
    pq.write_table(table, shard)
    wrapped = summary_text(run, width=100)
    assert all(len(line) <= 100 for line in wrapped.splitlines())
    words = " ".join(line.strip() for line in wrapped.splitlines()[1:-1]).split()
    for word in reason.split():  # every word whole, none cut at a column edge
        assert word in words, word
    full = run_cli("summary", "--run", str(run), "--full").stdout
    assert reason in full


def test_paper_preset_builds_identities_per_video_never_across_videos_by_face():
    import numpy as np
    import pyarrow as pa

    from mfhq.config import load_pipeline
    from mfhq.curate.merge import assign_identities

    cfg = load_pipeline("paper").curate
    # Three clips with the same face: two cut from one video (one YouTube id, two sources), one
    # from another video. The paper's identities are per video: the other video stays apart.
    clips = pa.table({"clip_key": ["celebvhq/a", "celebvtext/a2", "vfhq/b"], "video_key": ["yt1", "yt1", "yt2"],
                      "n_usable": [10, 12, 9]})
    emb = np.tile(np.eye(4, dtype=np.float32)[:1], (3, 1))
    ids = dict(zip(*assign_identities(clips, emb, cfg).select(["clip_key", "identity_id"]).to_pydict().values()))
    assert ids["celebvhq/a"] == ids["celebvtext/a2"] != ids["vfhq/b"]
    # Cross-video merging stays an option.
    import dataclasses

    merged = assign_identities(clips, emb, dataclasses.replace(cfg, merge_by_embedding=True))
    assert len(set(merged.column("identity_id").to_pylist())) == 1
