"""`mfhq stats`' time per stage: the sample run was extracted with decode-ahead (the sample preset's
`auto`, one worker on a machine with a core to spare), so its `decode` seconds are the time the
models waited for frames, not decoding's cost; the report's heading for the view says so (the
labels audit)."""
from __future__ import annotations

import json
import re

import pandas as pd

from conftest import run_cli


def test_the_time_per_stage_heading_says_decode_is_the_wait_for_frames(sample_run, tmp_path):
    assert json.loads((sample_run / "run.json").read_text())["config"]["run"]["decode_ahead"] == "auto"
    run_cli("stats", "--run", str(sample_run), "--out", str(tmp_path))
    stages = pd.read_csv(tmp_path / "tables" / "stage_throughput.csv")
    assert "decode" in set(stages.stage)
    page = (tmp_path / "report.html").read_text()
    heading = next(h for h in re.findall(r"<h2>(.*?)</h2>", page) if "<code>stage_throughput</code>" in h)
    assert "summed over clips" in heading and "decode: the time the other stages waited for frames" in heading
