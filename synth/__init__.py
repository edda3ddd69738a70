"""localsnn.synth: FPGA board builds with the YoWASP toolchain (Yosys, nextpnr, icepack /
ecppack), with resource and timing reports, a build cache and sweeps (docs/synth.md)."""

from localsnn.synth.boards import (
    Board,
    UnknownBoardError,
    UnsupportedBoardError,
    known_boards,
    resolve_board,
)
from localsnn.synth.flow import build, cache_root
from localsnn.synth.report import BuildError, BuildReport, DoesNotFitError

__all__ = ["Board", "BuildError", "BuildReport", "DoesNotFitError", "UnknownBoardError", "UnsupportedBoardError", "build", "cache_root", "known_boards", "resolve_board"]
