"""One grammar for every `mfhq` command: -v/-q before or after any subcommand, one name for the
manifest folder, real metavars, help within 80 columns, --version; and the install's options
(issue 25, items 9 and 12)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import REPO, run_cli

COMMANDS = [[], ["sample"], ["extract"], ["sources"], ["summary"], ["bench"], ["cluster-sample"], ["split"],
            ["stats"], ["bench-curate"], ["models"], ["models", "list"], ["models", "fetch"], ["models", "verify"], ["bench-models"], ["materialize"]]


def test_global_flags_work_before_or_after_every_subcommand(sample_run):
    for args in (["sources"], ["summary", "--run", str(sample_run)], ["models", "list"]):
        for flag in ("-v", "-q"):
            for line in (args + [flag], [flag] + args):
                result = run_cli(*line, check=False)
                assert result.returncode == 0, (line, result.stderr)
    verbose = run_cli("stats", "--run", str(sample_run), "--sql", "SELECT 1 AS one", "-v")
    assert verbose.stdout.split() == ["one", "1"]
    quiet = run_cli("split", "--manifest", str(sample_run.parent / "none"), "-q", check=False)
    assert quiet.returncode == 2 and "No such option" not in quiet.stderr


def test_help_fits_80_columns_with_real_metavars_and_states_the_default_preset():
    for args in COMMANDS:
        text = run_cli(*args, "--help").stdout
        assert max(len(line) for line in text.splitlines()) <= 80, args
        assert not re.search(r"<(bool|path|str|int|float|list\[\w+\])>", text), (args, text)
        assert "…" not in text, args  # nothing cut
    extract = run_cli("extract", "--help").stdout
    assert "--out PATH" in extract and "--workers N" in extract and "--retry LIST" in extract
    pipeline = " ".join(extract.split("--pipeline NAME|PATH")[1].split("--workers")[0].split())
    assert "sample, paper" in pipeline and "Default: sample" in pipeline
    top = " ".join(run_cli("--help").stdout.split())
    assert "Without --pipeline every command uses the packaged 'sample' preset" in top
    assert run_cli("--version").stdout.startswith("mfhq ")


def test_the_manifest_folder_is_called_manifest_everywhere_old_names_still_work(sample_run, tmp_path):
    for command in ("cluster-sample", "split", "stats"):
        text = run_cli(command, "--help").stdout
        assert "--manifest PATH" in text and "--manifests" not in text, command
    assert "--out" not in run_cli("cluster-sample", "--help").stdout  # hidden alias
    old = run_cli("cluster-sample", "--run", str(sample_run), "--out", str(tmp_path / "m"))
    assert (tmp_path / "m" / "train.parquet").is_file()
    assert "--out (and --manifests) is now called --manifest" in old.stderr
    again = run_cli("split", "--manifests", str(tmp_path / "m"))
    assert again.stdout.startswith("train: ") and "is now called --manifest" in again.stderr


def test_make_install_takes_a_python_and_an_opt_in_cpu_torch(tmp_path):
    def dry_run(*args: str) -> str:
        return subprocess.run(["make", "-n", "install", f"VENV={tmp_path / 'venv'}", *args], cwd=REPO,
                              capture_output=True, text=True, check=True).stdout

    default = dry_run()
    assert "download.pytorch.org" not in default  # unchanged: the registry's build
    cpu = dry_run("TORCH=cpu")
    torch_line = next(line for line in cpu.splitlines() if "requirements-torch.txt" in line and "-r" in line)
    assert "--index-url https://download.pytorch.org/whl/cpu" in torch_line
    assert "python3.11 -m venv" in dry_run("PYTHON=python3.11")
    readme = (REPO / "README.md").read_text()
    assert "make install TORCH=cpu" in readme and "PYTHON=python3.11" in readme and "7.5 GB" in readme
    assert "about 6 GB" not in readme  # the size stated before it was measured
