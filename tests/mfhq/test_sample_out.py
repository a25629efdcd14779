"""`mfhq sample --out`: a re-run continues an interrupted sample or writes the same one again;
it never replaces another seed's sample (a run may have been extracted from its videos) nor
writes among files that are not the sample's. Refusals are one line, exit 2, nothing written."""
from __future__ import annotations

import shutil

from tests.conftest import run_cli


def _files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_sample_refuses_another_seeds_sample_and_a_folder_of_other_files(sample_dir, tmp_path):
    made = tmp_path / "sample"
    shutil.copytree(sample_dir, made)
    before = _files(made)
    result = run_cli("sample", "--out", str(made), "--seed", "1", check=False)
    assert result.returncode == 2, result.stderr
    assert (f"--out {made}: holds the sample of --seed 0; --seed 1 would replace its videos" in result.stderr
            and "Traceback" not in result.stderr), result.stderr
    assert _files(made) == before

    mixed = tmp_path / "mixed"  # a folder of the user's own videos beside the sample's names
    (mixed / "videos").mkdir(parents=True)
    shutil.copyfile(sample_dir / "videos" / "astronaut_motion.mp4", mixed / "videos" / "holiday.mp4")
    before = _files(mixed)
    result = run_cli("sample", "--out", str(mixed), check=False)
    assert result.returncode == 2, result.stderr
    assert f"--out {mixed}: holds files that are not the sample's (videos/holiday.mp4)" in result.stderr, result.stderr
    assert _files(mixed) == before


def test_an_interrupted_sample_is_written_again_whole(sample_dir, tmp_path):
    made = tmp_path / "sample"
    shutil.copytree(sample_dir, made)
    # as a kill leaves it: sample.json (written last) missing, one clip's temporary file beside the clips
    (made / "sample.json").unlink()
    (made / "videos" / "t1_intruder.mp4").unlink()
    (made / "videos" / ".t1_intruder.partial.mp4").write_bytes(b"\x00\x00\x00\x20ftyp")
    run_cli("sample", "--out", str(made))
    assert {k: v for k, v in _files(made).items() if ".partial." not in k} == _files(sample_dir)
