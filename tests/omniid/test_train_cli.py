"""omniid-train's command line: the grammar every entry point shares (-v/-q anywhere,
--version, help within 80 columns with each default shown, no torch import for --help) and a
quiet terminal (no library noise, no progress bar with -q)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from omniid.cli import main
from omniid.config import REPRESENTATION_NAMES, STAGES
from omniid_fixtures import kept_faces, one_torch_thread, sample_manifest, split_manifest  # noqa: F401  (pytest fixtures)


def test_the_names_offered_without_torch_are_the_registries():
    from omniid.objectives import OBJECTIVES
    from omniid.representations import REPRESENTATIONS

    assert set(STAGES) == set(OBJECTIVES) and set(REPRESENTATION_NAMES) == set(REPRESENTATIONS)


def test_help_fits_80_columns_shows_the_presets_defaults_and_imports_no_torch():
    code = ("import sys, contextlib, io\nfrom omniid.train_args import parse_args\nout = io.StringIO()\n"
            "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit): parse_args(['--help'])\n"
            "print(out.getvalue()); print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    text = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"COLUMNS": "200", "PATH": ""}).stdout
    assert text.rstrip().endswith("NO-TORCH")
    assert max(len(line) for line in text.splitlines()) <= 80
    flat = " ".join(text.split())
    assert "--lr X preset: paper 1e-05 (ours), tiny 0.001, tiny-swap 0.001" in flat  # the paper gives no lr
    assert "(default: tiny)" in flat and "(default: None)" not in flat and "--manifest PATH" in flat


def test_version_and_verbosity_flags_work_anywhere(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("omniid-train ")
    from omniid.train_args import parse_args

    assert parse_args(["--manifest", "m", "-q"]).quiet and parse_args(["-v", "--manifest", "m"]).verbose


def test_a_tiny_run_prints_no_library_warning_and_no_progress_bar_with_q(split_manifest, tmp_path):
    # a test set apart from the training identities, as cluster-sample's is (else the log says so)
    run = [sys.executable, "-m", "omniid", "--manifest", str(split_manifest), "--preset", "tiny", "--steps", "2",
           "--eval-every", "100"]
    loud = subprocess.run(run + ["--out", str(tmp_path / "a")], capture_output=True, text=True)
    assert loud.returncode == 0, loud.stderr
    assert "No pretrained weights loaded" not in loud.stderr and "omniid mtd" in loud.stderr
    quiet = subprocess.run(run + ["--out", str(tmp_path / "b"), "-q"], capture_output=True, text=True)
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    assert Path(tmp_path / "b" / "checkpoints" / "latest").is_file()


def test_an_optimizer_this_machine_lacks_is_one_line_before_the_run_folder_is_made(split_manifest, tmp_path,
                                                                                    caplog):
    """bitsandbytes is not among the requirements: --optimizer adamw_8bit is refused before any work,
    so the same command with another optimizer then starts (before: an ImportError traceback after
    preset.json was written, which then refused --optimizer adamw as a run of other options)."""
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    out = tmp_path / "run"
    args = ["--manifest", str(split_manifest), "--preset", "tiny", "--steps", "1", "--out", str(out)]
    assert main([*args, "--optimizer", "adamw_8bit"]) == 2
    assert "--optimizer adamw_8bit needs bitsandbytes" in caplog.text and not out.exists()
    assert main([*args, "--optimizer", "adamw"]) == 0


def test_init_from_another_presets_checkpoint_is_refused_saying_why(split_manifest, tmp_path, caplog):
    """tiny and tiny-swap build the same encoder: the refusal said 'encoder settings differ: none'."""
    mtd = tmp_path / "mtd"
    assert main(["--manifest", str(split_manifest), "--preset", "tiny", "--steps", "1", "--out", str(mtd)]) == 0
    assert main(["--manifest", str(split_manifest), "--preset", "tiny-swap", "--steps", "1", "--init-from", str(mtd),
                 "--out", str(tmp_path / "swap")]) == 2
    assert ("a checkpoint of preset tiny (another preset, with the same encoder shape); this run uses preset "
            "tiny-swap: --init-from takes a checkpoint of the same preset") in caplog.text


@pytest.mark.parametrize("module, function, prog", [
    ("omniid.cli", "main", "omniid-train"), ("omniid.eval_cli", "eval_main", "omniid-eval"),
    ("omniid.eval_cli", "generate_main", "omniid-generate"), ("omniid.flux.cli", "main", "python -m omniid.flux"),
    ("omniid.gpu_check", "main", "python -m omniid.gpu_check"), ("omniid.bench_data", "main", "omniid-bench-data"),
    ("omniid.bench_flow", "main", "python -m omniid.bench_flow"),
])
def test_every_entry_point_has_version_verbosity_and_an_80_column_help(module, function, prog, capsys, monkeypatch):
    import importlib

    entry = getattr(importlib.import_module(module), function)
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        entry(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith(prog)
    with pytest.raises(SystemExit):
        entry(["--help"])
    text = capsys.readouterr().out
    assert max(map(len, text.splitlines())) <= 80, text
    assert "(default: None)" not in text and "-q, --quiet" in text and "<" not in text.split("options:")[0]


def test_every_flag_of_the_preset_table_is_an_option_that_sets_its_field():
    """`omniid.preset_flags` both builds the preset and names flags in a refusal: each must be real."""
    from omniid.preset_flags import PRESET_FLAGS, flag_of
    from omniid.train_args import parse_args, preset_from_args

    base = preset_from_args(parse_args(["--manifest", "m", "--preset", "paper"])).to_dict()
    for field, flag, _ in PRESET_FLAGS:
        value = {"data.num_inputs": ["8-8"], "data.num_targets": ["3-1"], "optim.optimizer": ["adamw_8bit"],
                 "flow.timesteps": ["logit_normal"], "flow.latents": ["mean"], "optim.bf16": [],
                 "optim.grad_checkpointing": [], "model.mask_ratio": ["0.5"]}.get(field, ["2"])
        preset = preset_from_args(parse_args(["--manifest", "m", "--preset", "paper", flag, *value])).to_dict()
        section, _, leaf = field.rpartition(".")
        assert (preset[section] if section else preset)[leaf] != (base[section] if section else base)[leaf], flag
        assert flag_of(field) == flag
