"""The per-process memo of intact step folders (`omniid.checkpoint_trust`) never vouches for a
file changed since it was checked: a step folder cut short after one load is refused at the next."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from omniid.checkpoint import FILES_KEY, STATE_FILE, CheckpointError, file_records
from omniid.checkpoint_trust import check_intact


def test_a_file_cut_after_the_folder_was_found_intact_is_refused(tmp_path):
    step = tmp_path / "checkpoints" / "step-00000002"
    step.mkdir(parents=True)
    weights = step / "encoder.safetensors"
    save_file({"w": torch.arange(4096, dtype=torch.float32)}, str(weights))
    (step / STATE_FILE).write_text(json.dumps({"step": 2, FILES_KEY: file_records(step)}))
    check_intact(step)  # as saved: loads, and is remembered as intact
    weights.write_bytes(weights.read_bytes()[:-1000])  # e.g. a copy of the run interrupted, in place
    with pytest.raises(CheckpointError, match=r"a damaged checkpoint \(encoder.safetensors has \d+ bytes, "):
        check_intact(step)
