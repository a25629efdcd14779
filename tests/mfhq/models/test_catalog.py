"""Fetching weight files: archives unpacked and hashes recorded, damage caught by verify, a partial
download resumed, and a failed one named with its partial kept."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from mfhq.models.catalog import fetch, verify
from mfhq.models.insightface_onnx import ARCFACE_R50, SCRFD_10G
from mfhq.models.sixdrep_pose import SIXDREPNET
from mfhq.models.weights import LOCK_NAME, WeightsCorrupt, resolve


def _buffalo_zip(folder: Path) -> str:
    archive = folder / "buffalo_l.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("det_10g.onnx", b"detector bytes")
        zf.writestr("w600k_r50.onnx", b"recognition bytes")
        zf.writestr("1k3d68.onnx", b"not needed")
    return archive.as_uri()


def test_fetch_unpacks_records_hashes_and_verify_catches_damage(tmp_path):
    url = _buffalo_zip(tmp_path)
    # The fake archive's bytes cannot match buffalo_l's pinned hashes: test the recording path.
    files = [dataclasses.replace(SCRFD_10G, url=url, sha256=None), dataclasses.replace(ARCFACE_R50, url=url, sha256=None)]
    target = tmp_path / "models"
    fetch(target, files=files)
    assert (target / "det_10g.onnx").read_bytes() == b"detector bytes"
    assert not (target / "1k3d68.onnx").exists()
    assert "det_10g.onnx" in (target / LOCK_NAME).read_text()
    # Where no hash is published, the recorded one guards the file from then on.
    assert resolve(files, target)[SCRFD_10G.name] == target / "det_10g.onnx"
    (target / "det_10g.onnx").write_bytes(b"detector bytes, damaged")
    with pytest.raises(WeightsCorrupt, match="det_10g.onnx"):
        resolve(files, target)
    assert resolve(files[1:], target)[ARCFACE_R50.name] == target / "w600k_r50.onnx"
    # Where one is published (buffalo_l), `verify` holds the files to it: these bytes are not buffalo_l's.
    statuses = {e.weight.name: s for e, s in verify(target, ["scrfd", "arcface"])}
    assert statuses["det_10g.onnx"].startswith("CORRUPT") and SCRFD_10G.sha256 in statuses["det_10g.onnx"]
    assert statuses["w600k_r50.onnx"].startswith("CORRUPT") and ARCFACE_R50.sha256 in statuses["w600k_r50.onnx"]


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


def test_a_mirror_copy_cut_short_is_copied_again_not_stored(tmp_path):
    """A fetch from a file:// mirror stopped part way (here by a file-size limit, as a full disk
    stops it) left its copy under the name that means complete, and the next fetch stored the
    truncated file (no published hash to catch it) and recorded its hash."""
    import resource
    import signal

    data = os.urandom(300_000)
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "model.pth").write_bytes(data)
    url, target = (tmp_path / "mirror" / "model.pth").as_uri(), tmp_path / "models"
    code = ("import sys, dataclasses; from pathlib import Path; from mfhq.models.catalog import fetch; "
            "from mfhq.models.sixdrep_pose import SIXDREPNET as W; "
            "fetch(Path(sys.argv[2]), files=[dataclasses.replace(W, name='model.pth', url=sys.argv[1], sha256=None)])")

    def limit_file_size():  # writes past 100 kB fail with EFBIG (the signal ignored, as a full disk fails)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    cut = subprocess.run([sys.executable, "-c", code, url, str(target)], capture_output=True, text=True,
                         preexec_fn=limit_file_size)
    assert cut.returncode != 0 and not (target / "model.pth").exists(), cut.stderr
    fetch(target, files=[dataclasses.replace(SIXDREPNET, name="model.pth", url=url, sha256=None)])
    assert (target / "model.pth").read_bytes() == data
    assert not list((target / ".partial").iterdir())
