"""An --export-multiid stopped part way (the evaluation killed, a photo gone, a full disk) is never
read as a complete MultiID-Bench folder: `omniid-eval --bench` refuses its roots, naming the
export's omniid-export.json, until the evaluation is run again to finish it."""
from __future__ import annotations

import pytest
from PIL import Image

from omniid.errors import DataError, OutputError
from omniid.eval_export import check_export_dir, write_export
from omniid.multiid import read_bench


def _row(image, target: int, target_path) -> dict:
    return {"image_path": str(image), "identity_id": "x", "k": 1, "target": target, "sample": 0, "seed": 3,
            "target_path": str(target_path), "input_paths": [str(image)], "representation": "omniid"}


def test_bench_refuses_an_export_that_stopped_part_way_and_reads_it_once_finished(tmp_path):
    image = tmp_path / "face.jpg"
    Image.new("RGB", (8, 8), (120, 90, 60)).save(image)
    folder, out = tmp_path / "multiid", tmp_path / "eval"
    # the second entry's photo is missing: the write stops after the first entry is whole, as a
    # kill between two entries leaves the folder
    with pytest.raises(FileNotFoundError):
        write_export(folder, [_row(image, 0, image), _row(image, 1, tmp_path / "gone.jpg")], out, "a photo")
    assert (folder / "omniid" / "x_k1_t0_s0" / "ori.jpg").is_file()  # a readable entry is there
    for root in (folder / "omniid", folder / "omniid" / "."):
        with pytest.raises(DataError, match=r"an interrupted omniid-eval --export-multiid \(.*omniid-export\.json "
                                            r"says 'running', never 'complete'\)"):
            read_bench(root)
    with pytest.raises(OutputError, match=r"holds an earlier export of this evaluation \(interrupted: never completed\)"):
        check_export_dir(folder, out)

    write_export(folder, [_row(image, 0, image), _row(image, 1, image)], out, "a photo")  # the re-run, --force
    plans, _, skipped = read_bench(folder / "omniid")
    assert sorted(plans) == ["x_k1_t0_s0", "x_k1_t1_s0"] and not skipped
