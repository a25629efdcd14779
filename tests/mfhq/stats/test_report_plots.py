"""The report's plots draw what their labels say: each bar spans exactly its bin, the sampled
faces' bar stays in its bin, tables carry titles (issue 25, item 11)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mfhq.stats.report import _binned  # noqa: E402


def test_each_bar_spans_its_own_bin():
    frame = pd.DataFrame({"faces_of": ["kept", "kept", "sampled"], "axis": "pitch",
                          "bin": [-10.0, 0.0, -10.0], "faces": [3, 1, 2]})
    fig, ax = plt.subplots()
    _binned(ax, frame, 10.0)
    spans = sorted((round(p.get_x(), 6), round(p.get_x() + p.get_width(), 6)) for p in ax.patches)
    assert spans == [(-10.0, 0.0), (-10.0, 0.0), (0.0, 10.0)]  # the sampled bar shares its bin, not the next
    assert list(ax.get_xticks()) == [-10.0, 0.0, 10.0]  # ticks on the bin edges
    plt.close(fig)


def test_a_run_alone_report_says_its_state_and_titles_its_tables(sample_run, tmp_path):
    from mfhq.stats.report import write_report

    texts = dict(write_report([sample_run], None, tmp_path))
    assert texts["state"] == f"run {sample_run}: complete (6 clips, 3 of 3 shards done)"
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Clips by status <code>clip_status</code></h2>" in page and "<h2>clip_status</h2>" not in page
