"""The build report: resources used against what the device has, Fmax of every clock against
the target, and reading them out of nextpnr's ``--report`` JSON, nextpnr's log and Yosys's
``stat -json``."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field

from localsnn.errors import LocalsnnError

#: nextpnr resource names -> readable label, in the order of the table
RESOURCE_LABELS = {
    # iCE40
    "ICESTORM_LC": "logic cells (LUT4 + DFF)",
    "ICESTORM_RAM": "block RAM (4 kbit)",
    "ICESTORM_SPRAM": "SPRAM (256 kbit)",
    "ICESTORM_DSP": "DSP (SB_MAC16)",
    "SB_IO": "I/O pins",
    # ECP5
    "TRELLIS_COMB": "LUT4 (TRELLIS_COMB)",
    "TRELLIS_FF": "flip-flops",
    "TRELLIS_RAMW": "distributed RAM (TRELLIS_RAMW)",
    "DP16KD": "block RAM (DP16KD, 18 kbit)",
    "MULT18X18D": "DSP (MULT18X18D)",
    "TRELLIS_IO": "I/O pins",
}

#: resources shown even when unused (the ones a network can run out of)
MAIN_RESOURCES = ("ICESTORM_LC", "ICESTORM_RAM", "ICESTORM_SPRAM", "ICESTORM_DSP", "TRELLIS_COMB", "TRELLIS_FF", "DP16KD", "MULT18X18D")


STAGE_ORDER = ("elaborate", "synthesis", "place and route", "bitstream")

#: resources left out of the table (one per device, always used)
HIDDEN = ("GSR",)


class DoesNotFitError(LocalsnnError):
    """The design needs more of a resource than the device has."""

    def __init__(self, board: str, device: str, over: list[tuple[str, int, int]], util: dict[str, tuple[int, int]] | None = None, source: str = "nextpnr", hint: str = "") -> None:
        self.board = board
        self.device = device
        self.over = over  # (resource, needed, available)
        self.util = dict(util or {r: (n, a) for r, n, a in over})  # every resource counted: (needed, available)
        self.source = source  # who counted: nextpnr (after packing) or yosys (after synthesis)
        least = "at least " if source == "yosys" else ""
        parts = [f"{label(r)} [{r}]: needs {least}{n}, the {device} has {a}" + (f" ({n / a:.1f}x)" if a else "") for r, n, a in over]
        how = " (counted by Yosys after synthesis: every LUT4 takes a logic cell)" if source == "yosys" else " (counted by nextpnr after packing)"
        super().__init__(f"the design does not fit the {board} ({device}): " + "; ".join(parts) + how + (f"; {hint}" if hint else ""))


class BuildError(LocalsnnError):
    """A tool of the build failed for another reason than size; the message holds its log's tail."""


def label(resource: str) -> str:
    return RESOURCE_LABELS.get(resource, resource)


@dataclass
class Resource:
    name: str  # nextpnr's name (ICESTORM_LC), or yosys:<cell> for counts from Yosys
    label: str
    used: int
    available: int

    @property
    def fraction(self) -> float:
        return self.used / self.available if self.available else float("inf") if self.used else 0.0


@dataclass
class Clock:
    name: str
    fmax_mhz: float
    constraint_mhz: float


@dataclass
class BuildReport:
    """What a board build produced. ``met`` is true when every clock reaches ``target_mhz``."""

    spec: str
    board: str
    platform: str
    device: str
    package: str
    family: str
    lanes: int
    board_clock_mhz: float
    target_mhz: float
    resources: list[Resource]
    clocks: list[Clock]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)  # Yosys cell counts after synthesis
    toolchain: dict[str, str] = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    key: str = ""
    files: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    critical_paths: list[dict] = field(default_factory=list)  # per clock pair: from, to, ns, logic_ns, routing_ns

    # -- derived ----------------------------------------------------------------------------
    @property
    def fmax_mhz(self) -> float | None:
        """The lowest Fmax over the clocks (the design's speed)."""
        return min((c.fmax_mhz for c in self.clocks), default=None)

    @property
    def met(self) -> bool:
        return bool(self.clocks) and all(c.fmax_mhz >= self.target_mhz for c in self.clocks)

    @property
    def build_seconds(self) -> float:
        return sum(self.stage_seconds.values())

    def resource(self, name: str) -> Resource | None:
        return next((r for r in self.resources if r.name == name), None)

    @property
    def runs_on_board_clock(self) -> bool:
        """Whether every clock's Fmax reaches the board clock the design runs on."""
        return bool(self.clocks) and all(c.fmax_mhz >= self.board_clock_mhz for c in self.clocks)

    def timing_summary(self) -> str:
        f = self.fmax_mhz
        if f is None:
            return "no clock in the timing report"
        if self.met:
            text = f"timing met: Fmax {f:.1f} MHz >= target {self.target_mhz:g} MHz (+{f - self.target_mhz:.1f} MHz)"
        else:
            text = f"timing MISSED: Fmax {f:.1f} MHz < target {self.target_mhz:g} MHz (short by {self.target_mhz - f:.1f} MHz)"
        if not self.runs_on_board_clock:
            text += f"; WARNING: below the board clock of {self.board_clock_mhz:g} MHz, so the bitstream will not run reliably on it"
        return text

    # -- in and out -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["fmax_mhz"] = self.fmax_mhz
        d["met"] = self.met
        d["timing"] = self.timing_summary()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BuildReport:
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["resources"] = [Resource(**r) for r in d["resources"]]
        d["clocks"] = [Clock(**c) for c in d["clocks"]]
        return cls(**d)

    def table(self) -> str:
        return format_table(self)


def format_table(rep: BuildReport) -> str:
    """The report as a readable text table."""
    lines = [
        f"{rep.spec}, lanes {rep.lanes}" + (f", {rep.options['pipeline']} pipeline" if rep.options.get("pipeline") else "") + f", on {rep.board} ({rep.platform}: {rep.device}-{rep.package})" + ("  [cached]" if rep.cached else ""),
        "",
    ]
    w = max([len("resource")] + [len(r.label) for r in rep.resources])
    lines.append(f"{'resource':<{w}}  {'used':>7}  {'available':>9}  {'use':>6}")
    for r in rep.resources:
        pct = f"{100 * r.fraction:5.1f}%" if r.available else "    -"
        lines.append(f"{r.label:<{w}}  {r.used:>7}  {r.available:>9}  {pct:>6}")
    lines.append("")
    cw = max([len("clock")] + [len(c.name) for c in rep.clocks])
    lines.append(f"{'clock':<{cw}}  {'Fmax MHz':>8}  {'target MHz':>10}  result")
    for c in rep.clocks:
        d = c.fmax_mhz - rep.target_mhz
        res = f"met (+{d:.1f} MHz)" if d >= 0 else f"MISSED by {-d:.1f} MHz"
        lines.append(f"{c.name:<{cw}}  {c.fmax_mhz:>8.1f}  {rep.target_mhz:>10g}  {res}")
    if not rep.clocks:
        lines.append("(no clock in the timing report)")
    for cp in rep.critical_paths[:1]:
        lines.append(f"critical path {cp['ns']:.1f} ns (logic {cp['logic_ns']:.1f} ns, routing {cp['routing_ns']:.1f} ns): {cp['from']} -> {cp['to']}")
    if rep.clocks and not rep.runs_on_board_clock:
        lines.append(f"WARNING: Fmax below the board clock ({rep.board_clock_mhz:g} MHz): the bitstream will not run reliably on it")
    lines.append("")
    if rep.options.get("dsp_fallback"):
        lines.append(f"note: {rep.options['dsp_fallback']}")
    if rep.options.get("spram_auto"):
        lines.append(f"note: {rep.options['spram_auto']}")
    elif rep.options.get("spram"):
        lines.append("note: the weights are in SPRAM, which starts empty: the host writes them ('localsnn board run' does)")
    lines.append(f"board clock {rep.board_clock_mhz:g} MHz (the design runs on it); place and route constrained to {rep.options.get('constraint_mhz', rep.target_mhz):g} MHz")
    if rep.stage_seconds:
        order = [k for k in STAGE_ORDER if k in rep.stage_seconds] + [k for k in rep.stage_seconds if k not in STAGE_ORDER]
        stages = ", ".join(f"{k} {rep.stage_seconds[k]:.0f} s" for k in order)
        lines.append(f"build time {rep.build_seconds:.0f} s ({stages})" + (", taken from the cache" if rep.cached else ""))
    return "\n".join(lines) + "\n"


# -- parsing the tools' output -------------------------------------------------------------------


_UTIL_LINE = re.compile(r"^Info:\s+([A-Za-z0-9_$.]+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def parse_utilisation_log(text: str) -> dict[str, tuple[int, int]]:
    """``Device utilisation`` of a nextpnr log: resource -> (used, available). The last block
    counts (nextpnr prints it after packing, before placement)."""
    out: dict[str, tuple[int, int]] = {}
    blocks = text.split("Device utilisation:")
    if len(blocks) < 2:
        return out
    for m in _UTIL_LINE.finditer(blocks[-1].split("\n\n")[0]):
        out[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return out


def overflowing(util: dict[str, tuple[int, int]]) -> list[tuple[str, int, int]]:
    return [(r, u, a) for r, (u, a) in util.items() if u > a]


def yosys_cells(stat_json: str) -> dict[str, int]:
    """Cell counts of the whole (flattened) design from Yosys ``stat -json``."""
    d = json.loads(stat_json)
    design = d.get("design") or next(iter(d.get("modules", {}).values()), {})
    cells = design.get("num_cells_by_type", {})
    return {k: int(v) for k, v in cells.items() if not k.startswith("$scopeinfo")}


def resources_from(family: str, util: dict[str, tuple[int, int]], cells: dict[str, int]) -> list[Resource]:
    """The table's rows: the main resources first, LUTs and flip-flops as Yosys counted them on
    iCE40 (where a logic cell holds one LUT4 and one DFF), then whatever else is used."""
    rows: list[Resource] = []
    order = [r for r in MAIN_RESOURCES if r in util] + sorted(r for r in util if r not in MAIN_RESOURCES and util[r][0] > 0 and r not in HIDDEN)
    for r in order:
        used, avail = util[r]
        rows.append(Resource(r, label(r), used, avail))
        if r == "ICESTORM_LC":
            luts = cells.get("SB_LUT4", 0)
            ffs = sum(v for k, v in cells.items() if k.startswith("SB_DFF"))
            carries = cells.get("SB_CARRY", 0)
            rows.append(Resource("yosys:SB_LUT4", "  LUT4", luts, avail))
            rows.append(Resource("yosys:SB_DFF", "  flip-flops", ffs, avail))
            rows.append(Resource("yosys:SB_CARRY", "  carry cells", carries, avail))
    return rows


def _cell(name: str) -> str:
    """A cell's name without the suffixes technology mapping appended (``_TRELLIS_FF_Q``...)."""
    for cut in ("_TRELLIS", "_LUT4", "_CCU2C", "_SB_", "_MULT18X18D", "_DP16KD", "$"):
        i = name.find(cut, 1)
        if i > 0:
            name = name[:i]
    return name


def critical_paths_from(report: dict) -> list[dict]:
    """One summary per critical path of nextpnr's report: where it starts and ends (the signal
    names), its delay and how much of it is logic and routing."""
    out = []
    for cp in report.get("critical_paths", []):
        path = cp.get("path", [])
        if not path:
            continue
        logic = sum(s["delay"] for s in path if s.get("type") != "routing")
        routing = sum(s["delay"] for s in path if s.get("type") == "routing")
        out.append({
            "clocks": f"{cp.get('from', '?')} -> {cp.get('to', '?')}",
            "from": _cell(path[0]["from"]["cell"]), "to": _cell(path[-1]["to"]["cell"]),
            "ns": round(logic + routing, 3), "logic_ns": round(logic, 3), "routing_ns": round(routing, 3),
        })
    return sorted(out, key=lambda c: -c["ns"])


#: nets nextpnr's iCE40 packer puts on a global buffer and then times as if they were clocks:
#: the constant 0 and 1 (``$PACKER_GND_NET_$glb_clk``); they clock nothing
PACKER_CONSTANT_NETS = ("$PACKER_GND_NET", "$PACKER_VCC_NET")


def clocks_from(report: dict) -> list[Clock]:
    """The design's clocks with their Fmax from nextpnr's JSON report (constant nets left out)."""
    return [
        Clock(name, float(v["achieved"]), float(v.get("constraint", 0.0)))
        for name, v in sorted(report.get("fmax", {}).items())
        if not name.startswith(PACKER_CONSTANT_NETS)
    ]
