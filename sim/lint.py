"""Verilator lint of generated Verilog: ``verilator --lint-only -Wall`` with explicit waivers.

    from localsnn.sim.lint import AMARANTH_WAIVERS, lint
    cmd = lint("build/top.v", "top", waivers=AMARANTH_WAIVERS)

Every waiver is a ``(CODE, reason)`` pair and becomes ``-Wno-CODE``; the reason is required so
that each silenced warning class is justified where it is used. ``lint`` raises
:class:`LintError` listing each remaining warning, and returns the command line it ran.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from localsnn.errors import BadValueError
from localsnn.sim.runner import verilator_env, verilator_info

__all__ = ["AMARANTH_WAIVERS", "LintError", "lint", "lint_command", "lint_flags", "warnings_in"]

#: Warning classes that Amaranth 0.5 (through its Yosys Verilog backend) produces in every
#: design, whatever the design does, with why each is harmless there. Callers opt in; a design
#: that needs fewer waivers should pass fewer.
AMARANTH_WAIVERS: tuple[tuple[str, str], ...] = (
    ("DECLFILENAME",
     "Amaranth writes the whole hierarchy into one file and names submodules `top.sub`"),
    ("PROCASSINIT",
     "Amaranth declares each sync signal with its reset value as initialiser (the FPGA "
     "power-on state) and also assigns it in the clocked process; intended"),
    ("WIDTHEXPAND",
     "the Yosys backend relies on Verilog's implicit zero-extension (e.g. `state == 1'h1`, "
     "`a + b` into a wider wire); widths were already fixed by Amaranth's shape rules"),
    ("WIDTHTRUNC",
     "the Yosys backend relies on implicit truncation (e.g. `! state` on a 2-bit state); "
     "widths were already fixed by Amaranth's shape rules"),
    ("UNUSEDSIGNAL",
     "the backend keeps intermediate wires (carry bits of `x + 1`, unused FIFO ports, the "
     "FSM's decoded states); unused bits are dropped by synthesis"),
    ("CASEINCOMPLETE",
     "Amaranth `Switch`/FSM without a default emits `casez` with a default assignment in "
     "front, so there is no latch"),
)

_WARN_RE = re.compile(r"^%(Warning|Error)-?([A-Z0-9_]*)?:\s*(.*)$")


class LintError(AssertionError):
    """Verilator reported warnings (or errors); ``.warnings`` lists them as (code, text)."""

    def __init__(self, message: str, warnings: list[tuple[str, str]], command: list[str]):
        super().__init__(message)
        self.warnings = warnings
        self.command = command


def lint_flags(waivers: Iterable[tuple[str, str]] = ()) -> list[str]:
    """``-Wall`` and ``-Wno-<CODE>`` for each (justified) waiver: the checks of :func:`lint`,
    also given to a simulation build (``cosimulate(lint=True)``), which then fails on the
    same warnings without parsing the design a second time."""
    flags = ["-Wall"]
    for item in waivers:
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(f"waiver must be a (CODE, reason) pair, got {item!r}")
        code, reason = item
        if not re.fullmatch(r"[A-Z0-9_]+", str(code)):
            raise BadValueError(f"waiver code must be a Verilator warning code, got {code!r}")
        if not str(reason).strip():
            raise BadValueError(f"waiver {code} needs a reason")
        flags.append(f"-Wno-{code}")
    return flags


def lint_command(verilog_path: str | os.PathLike, toplevel: str,
                 waivers: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The verilator command line that :func:`lint` runs."""
    flags = lint_flags(waivers)
    return [str(verilator_info().executable), "--lint-only", flags[0], "--top-module", toplevel, *flags[1:], str(Path(verilog_path).resolve())]


def warnings_in(output: str) -> list[tuple[str, str]]:
    """The (code, text) of every warning or error in Verilator's output."""
    found = []
    for line in output.splitlines():
        m = _WARN_RE.match(line.strip())
        if m and not m.group(3).startswith("Exiting due to"):
            found.append((m.group(2) or m.group(1).upper(), m.group(3)))
    return found


def lint(verilog_path: str | os.PathLike, toplevel: str,
         waivers: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Run ``verilator --lint-only -Wall`` with ``-Wno-<CODE>`` for each waiver.

    Returns the command line (a list) when the file is clean; raises :class:`LintError` with
    every warning otherwise. Prints the command line.
    """
    cmd = lint_command(verilog_path, toplevel, waivers)
    print("lint:", shlex.join(cmd))
    env = {**os.environ, **verilator_env()}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    out = proc.stderr + proc.stdout
    found = warnings_in(out)
    if proc.returncode != 0 or found:
        listing = "\n".join(f"  {code}: {text}" for code, text in found) or out.strip()
        raise LintError(
            f"verilator lint of {verilog_path} ({toplevel}) failed with {len(found)} "
            f"warning(s)/error(s):\n{listing}\ncommand: {shlex.join(cmd)}\n"
            f"(waive a warning class with waivers=[(CODE, reason)] only if it is harmless)",
            found, cmd,
        )
    return cmd
