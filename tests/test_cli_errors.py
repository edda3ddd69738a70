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
    "demo-cosim-samples-0": (["demo", "--cosim-samples", "0"], ["--cosim-samples", "allowed: 1 or more"]),
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


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path):
    args, words = CASES[case]
    (tmp_path / "bad.toml").write_text(BAD_NAME_SPEC)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out = _run(args, tmp_path)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert "error:" in lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before, f"{case} wrote {set(after) - set(before)}"


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
    before = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = _run(args, tmp_path)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    after = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before and not (tmp_path / "new").exists()
