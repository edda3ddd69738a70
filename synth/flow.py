"""Board builds: the network with its UART bridge through Yosys, nextpnr and the bitstream
packer (the YoWASP builds of them unless the user chose others), with a resource and timing
report and a cache.

The flow is Amaranth's own (``platform.build(..., do_build=False)`` gives the plan: RTLIL,
constraints, Yosys script, the tool commands); localsnn runs the commands one by one so that it
can say which stage is running, tell a design that does not fit from other failures, and skip
the whole build when an identical one is in the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from localsnn.synth.boards import YOWASP_TOOLS, Board, resolve_board
from localsnn.synth.report import (
    BuildError,
    BuildReport,
    DoesNotFitError,
    clocks_from,
    critical_paths_from,
    overflowing,
    parse_utilisation_log,
    resources_from,
    yosys_cells,
)

from localsnn.chip import PIPELINES
from localsnn.errors import LocalsnnError
from localsnn.rtl.generate import strip_host_init
from localsnn.spec import NetworkSpec

NAME = "localsnn"  # the design's name in every tool file
BAUD = 115200
FORMAT = 3  # bump when the report or the cached files change meaning (2: critical paths; 3: spram, clock net names)
HEARTBEAT_S = 60.0

STAGES = {"yosys": "synthesis", "nextpnr-ice40": "place and route", "nextpnr-ecp5": "place and route", "icepack": "bitstream", "ecppack": "bitstream"}


def cache_root() -> Path:
    """``$LOCALSNN_CACHE`` or ``~/.cache/localsnn/synth``."""
    env = os.environ.get("LOCALSNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "localsnn" / "synth"


def find_tool(command: str) -> str:
    """The path of ``command`` (a YoWASP tool): first in the scripts folder of the running
    interpreter's environment (a venv's ``bin/``, where pip put it, even when that venv is not
    on ``PATH``), then on ``PATH``; else ``command`` itself (running it then fails with
    :data:`MISSING_TOOLS`)."""
    for folder in dict.fromkeys([Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]):
        for name in (command, command + ".exe"):
            if (folder / name).is_file() and os.access(folder / name, os.X_OK):
                return str(folder / name)
    return shutil.which(command) or command


#: what to do when a tool cannot be run
MISSING_TOOLS = "install the YoWASP tools with localsnn's synth extra (pip install 'localsnn[synth]'; from the repository: pip install '.[synth]') or set its environment variable (YOSYS, NEXTPNR_ICE40, ...) to a tool of your own"


def tool_env() -> dict[str, str]:
    """The environment of the tools: the YoWASP tools (:func:`find_tool`) wherever the user
    has not chosen others through the environment variable."""
    env = dict(os.environ)
    for var, tool in YOWASP_TOOLS.items():
        if not env.get(var):
            env[var] = find_tool(tool)
    return env


def _tool_var(name: str) -> str:
    return name.upper().replace("-", "_").replace("+", "X")


_versions: dict[str, str] = {}


def tool_version(command: str, flag: str) -> str:
    """``command flag``'s first output line (memoised), or a message saying it cannot run."""
    key = f"{command} {flag}"
    if key not in _versions:
        try:
            res = subprocess.run([command, flag], check=False, capture_output=True, text=True, timeout=120)
            lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip() and not ln.startswith("Preparing to run")]
            _versions[key] = lines[0].strip() if lines else f"exit status {res.returncode}"
        except FileNotFoundError:
            raise LocalsnnError(f"the tool {command!r} was not found; {MISSING_TOOLS}") from None
        except subprocess.TimeoutExpired:
            _versions[key] = "timed out"
        name = Path(command).name.removesuffix(".exe")
        if name.startswith("yowasp-"):
            try:  # the YoWASP commands are named like their pip packages
                _versions[key] += f" (pip {name} {importlib.metadata.version(name)})"
            except importlib.metadata.PackageNotFoundError:
                pass
    return _versions[key]


def toolchain_versions(board: Board, env: dict[str, str]) -> dict[str, str]:
    pnr = "NEXTPNR_ICE40" if board.family == "ice40" else "NEXTPNR_ECP5"
    pack = "ICEPACK" if board.family == "ice40" else "ECPPACK"
    return {
        "yosys": tool_version(env["YOSYS"], "-V"),
        "nextpnr": tool_version(env[pnr], "--version"),
        "packer": Path(env[pack]).name,
    }


def make_top(spec: NetworkSpec, lanes: int, params, spram: bool = False, pipeline: str = "full"):
    """The design that goes on the board: the network with its UART host bridge."""
    from localsnn.rtl.bridge import BoardTop

    return BoardTop(spec, lanes=lanes, params=params, baud=BAUD, spram=spram, pipeline=pipeline)


def pipeline_for(board: Board) -> str:  # noqa: D401
    """The phases' pipeline for a board's FPGA (rtl/loop.py, PIPELINES): an iCE40 is too small
    for a register between every two stages (the digits net at one lane would need about 5,900
    of the UP5K's 5,280 logic cells), so it gets the compact one; the others the full one."""
    return "compact" if board.family == "ice40" else "full"


SPRAM_CHOICES = ("auto", "on", "off")
PIPELINE_CHOICES = ("auto", *PIPELINES)


def has_spram(board: Board) -> bool:
    """The iCE40UP devices have four 256 kbit single-port RAMs (SPRAM)."""
    return board.family == "ice40" and board.device.lower().startswith("ice40up")


def _synth_opts(board: Board) -> list[str]:
    dev = board.device.lower()
    if board.family == "ice40":
        opts = []
        if dev.startswith(("ice40up", "ice5lp")):
            opts.append("-dsp")  # multipliers into SB_MAC16
        if dev.startswith("ice40up"):
            opts.append("-spram")  # large single-port memories into SPRAM
        return opts
    return []


def _clock_port(platform) -> str:
    res = platform.lookup(platform.default_clk)
    return f"{res.name}_{res.number}__io"


def _overrides(board: Board, platform, constraint_mhz: float) -> dict:
    port = _clock_port(platform)
    ov = {
        "synth_opts": _synth_opts(board),
        # Yosys 0.70's synth_ecp5 aborts in ABC9's reintegration (rtlil.cc:3091, "GetSize(conn.first)
        # == GetSize(conn.second)") on some designs read from Amaranth's RTLIL (the full pipeline's
        # digits nets, FELL's at every build, ELL's at some); with the processes converted and the
        # unused wires and cells of each module removed before synth_ecp5 flattens the design
        # (what its own passes do after flattening) they synthesise (docs/synth.md)
        "script_after_read": "proc; opt_clean" if board.family == "ecp5" else "",
        "script_after_synth": f"tee -q -o {NAME}.stat.json stat -json",
        "nextpnr_opts": ["--report", f"{NAME}.report.json", "--timing-allow-fail", "--seed", "1"],
        "emit_src": False,
    }
    # the last clock constraint wins: place and route aims at the target, not the board clock
    if board.family == "ice40":
        ov["add_constraints"] = f"set_frequency {port} {constraint_mhz:g}"
    else:
        ov["add_preferences"] = f'FREQUENCY PORT "{port}" {constraint_mhz * 1e6:.0f} HZ;'
    return ov


#: SB_MAC16 blocks per iCE40 device (Yosys's -dsp maps every large enough multiplier, with no
#: budget; when they outnumber these the design is synthesised again with multipliers in LUTs)
ICE40_DSPS = {"ice40up5k": 8, "ice40up3k": 4, "ice5lp4k": 4, "ice5lp2k": 4, "ice5lp1k": 4}
ICE40_LCS = {"ice40up5k": 5280, "ice40up3k": 3520, "ice5lp4k": 3520, "ice5lp2k": 2048, "ice5lp1k": 1100}
ICE40_BRAMS = {"ice40up5k": 30, "ice40up3k": 20, "ice5lp4k": 20, "ice5lp2k": 20, "ice5lp1k": 16}


class _NeedsSpram(Exception):
    """Synthesis put more memories into block RAM than the device has (``--spram auto``)."""

    def __init__(self, note: str) -> None:
        super().__init__(note)
        self.note = note


def _bram_check(b: Board, work: Path, spram: str) -> None:
    """After synthesis, with ``--spram auto`` on a device with SPRAM and the weights still in
    block RAM: if Yosys used more SB_RAM40_4K than the device has, ask for a build with the
    weights in SPRAM."""
    if spram != "auto" or not has_spram(b):
        return
    have = ICE40_BRAMS.get(b.device.lower(), 0)
    used = yosys_cells((work / f"{NAME}.stat.json").read_text()).get("SB_RAM40_4K", 0)
    if have and used > have:
        raise _NeedsSpram(f"{used} block RAMs needed, the {b.device} has {have}: the weights went into SPRAM (the host writes them; 'localsnn board run' does)")


def _dsp_fallback(b: Board, work: Path, progress: Callable[[str], None]) -> str:
    """After synthesis: if Yosys used more SB_MAC16 than the device has, drop ``-dsp`` from the
    script and say so; returns the note ("" when nothing changes)."""
    if b.family != "ice40":
        return ""
    have = ICE40_DSPS.get(b.device.lower(), 0)
    used = yosys_cells((work / f"{NAME}.stat.json").read_text()).get("SB_MAC16", 0)
    if used <= have:
        return ""
    cells = yosys_cells((work / f"{NAME}.stat.json").read_text())
    luts, lcs = cells.get("SB_LUT4", 0), ICE40_LCS.get(b.device.lower(), 0)
    if lcs and luts > lcs:  # one LUT4 per logic cell: without the DSPs it would only grow
        over = [("ICESTORM_LC", luts, lcs), ("ICESTORM_DSP", used, have)]
        raise DoesNotFitError(b.name, b.device, over, source="yosys")
    ys = work / f"{NAME}.ys"
    text = ys.read_text()
    ys.write_text("\n".join(line.replace(" -dsp", "") if line.strip().startswith("synth_ice40") else line for line in text.splitlines()) + "\n")
    note = f"{used} multipliers need SB_MAC16 blocks but the {b.device} has {have}: synthesised again without -dsp (multipliers in LUTs)"
    progress(f"  {note}")
    return note


def _bitstream(board: Board) -> str:
    return f"{NAME}.bin" if board.family == "ice40" else f"{NAME}.bit"


def _design_key(plan, board: Board, options: dict, versions: dict[str, str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"format": FORMAT, "board": board.name, "platform": board.platform_class.__name__, "options": options, "toolchain": versions}, sort_keys=True).encode())
    for name in sorted(plan.files):
        if name.endswith(".bat"):
            continue
        content = plan.files[name]
        h.update(name.encode() + b"\0")
        h.update(content.encode() if isinstance(content, str) else content)
        h.update(b"\0")
    return h.hexdigest()


def _run_stage(argv: list[str], cwd: Path, env: dict[str, str], stage: str, progress: Callable[[str], None], log: Path) -> float:
    t0 = time.perf_counter()
    progress(f"  {stage} ({Path(argv[0]).name}) ...")
    stop = threading.Event()

    def beat():
        while not stop.wait(HEARTBEAT_S):
            progress(f"  {stage} still running, {time.perf_counter() - t0:.0f} s")

    th = threading.Thread(target=beat, daemon=True)
    th.start()
    try:
        with open(log, "w") as fh:
            rc = subprocess.run(argv, check=False, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    except FileNotFoundError:
        raise LocalsnnError(f"the tool {argv[0]!r} was not found; {MISSING_TOOLS}") from None
    finally:
        stop.set()
    dt = time.perf_counter() - t0
    if rc != 0:
        raise _StageFailed(rc)
    progress(f"  {stage} done in {dt:.0f} s")
    return dt


class _StageFailed(Exception):
    def __init__(self, rc: int) -> None:
        self.rc = rc


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


OUTPUTS = ("bitstream", "verilog", "rtlil", "yosys_log", "nextpnr_log", "nextpnr_report", "report_json", "report_txt")


def build(
    spec: NetworkSpec,
    board: str,
    out_dir: str | Path,
    *,
    lanes: int = 1,
    params=None,
    target_mhz: float | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] = print,
    spram: str = "auto",
    pipeline: str = "auto",
) -> BuildReport:
    """Build ``spec`` (its network behind the UART bridge, ``lanes`` datapaths per layer,
    initial weights ``params``) for ``board``; write the bitstream, the Verilog, the logs,
    ``report.json`` and ``report.txt`` into ``out_dir`` and return the report.

    ``pipeline``: the phases' pipeline (``full`` or ``compact``, rtl/loop.py), or ``auto``:
    the board's (:func:`pipeline_for`).

    ``spram``: ``on`` keeps every layer's weights in an iCE40UP's SPRAM (single-port, no initial
    contents: the host writes the weights, see :class:`~localsnn.rtl.top.Network`), ``off`` in
    block RAM with the weights in the bitstream, ``auto`` in block RAM unless synthesis needs
    more block RAMs than the device has (then the design is built again with ``on``).

    Raises :class:`DoesNotFitError` when the design needs more of a resource than the device
    has, :class:`BuildError` when a tool fails otherwise.
    """
    b = resolve_board(board)
    b.check_supported()
    if spram not in SPRAM_CHOICES:
        raise LocalsnnError(f"spram {spram!r}: choose one of {', '.join(SPRAM_CHOICES)}")
    if spram == "on" and not has_spram(b):
        raise LocalsnnError(f"--spram on: the {b.name}'s {b.device} has no SPRAM (the iCE40UP devices have); use auto or off")
    if pipeline not in PIPELINE_CHOICES:
        raise LocalsnnError(f"pipeline {pipeline!r}: choose one of {', '.join(PIPELINE_CHOICES)}")
    args = dict(lanes=lanes, params=params, target_mhz=target_mhz, use_cache=use_cache, progress=progress, pipeline=pipeline_for(b) if pipeline == "auto" else pipeline)
    try:
        return _build(spec, b, Path(out_dir), spram=spram, **args)
    except _NeedsSpram as need:
        progress(f"  {need.note}")
        rep = _build(spec, b, Path(out_dir), spram="on", **args)
        rep.options["spram_auto"] = need.note
        _write_report(rep, Path(out_dir))
        return rep


def _build(spec: NetworkSpec, b: Board, out: Path, *, lanes: int, params, target_mhz: float | None, use_cache: bool, progress: Callable[[str], None], spram: str, pipeline: str) -> BuildReport:
    t_start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    env = tool_env()
    platform = b.platform()
    board_mhz = float(platform.default_clk_frequency) / 1e6
    target = float(target_mhz) if target_mhz is not None else b.goal_mhz()
    if target <= 0:
        raise LocalsnnError(f"target frequency must be positive, not {target_mhz}")
    constraint = max(target, board_mhz)
    overrides = _overrides(b, platform, constraint)

    in_spram = spram == "on"
    progress(f"{spec.name}, lanes {lanes}, {pipeline} pipeline, for {b.name} ({b.device}){', weights in SPRAM' if in_spram else ''}: elaborating ...")
    top = make_top(spec, lanes, params, spram=in_spram, pipeline=pipeline)
    plan = platform.build(top, name=NAME, do_build=False, **overrides)
    plan.files[f"{NAME}.il"] = strip_host_init(plan.files[f"{NAME}.il"])  # SPRAM has no initial contents
    versions = toolchain_versions(b, env)
    options = {"lanes": lanes, "spram": in_spram, "pipeline": pipeline, "target_mhz": target, "constraint_mhz": constraint, **{k: v for k, v in overrides.items() if k != "emit_src"}}
    key = _design_key(plan, b, options, versions)
    cdir = cache_root() / key[:40]
    files = {"bitstream": _bitstream(b), "verilog": f"{NAME}.v", "rtlil": f"{NAME}.il", "yosys_log": "yosys.log", "nextpnr_log": "nextpnr.log", "nextpnr_report": "nextpnr-report.json", "report_json": "report.json", "report_txt": "report.txt"}

    marker = cdir / "needs_spram.txt"  # an earlier --spram auto found the block RAMs too few
    if use_cache and spram == "auto" and marker.is_file():
        raise _NeedsSpram(marker.read_text())
    if use_cache and (cdir / "report.json").is_file():
        rep = BuildReport.from_dict(json.loads((cdir / "report.json").read_text()))
        for f in files.values():
            if (cdir / f).is_file():
                shutil.copyfile(cdir / f, out / f)
        rep.cached = True
        _write_report(rep, out)
        progress(f"  cached build {key[:12]} ({cdir}), {time.perf_counter() - t_start:.1f} s")
        progress(f"  {rep.timing_summary()}")
        return rep

    work = out / "build"
    if work.exists():
        shutil.rmtree(work)
    for f in files.values():  # nothing of an earlier build may pass for this one's
        (out / f).unlink(missing_ok=True)
    plan.extract(work)
    (out / files["rtlil"]).write_text(plan.files[f"{NAME}.il"])
    _write_verilog(plan.files[f"{NAME}.il"], out / files["verilog"])
    commands = json.loads(plan.files[f"build_{NAME}.json"])["commands"]
    stages: dict[str, float] = {}
    elapsed0 = time.perf_counter() - t_start
    stages["elaborate"] = elapsed0
    for argv in commands:
        tool = argv[0]
        stage = STAGES.get(tool, tool)
        argv = [env.get(_tool_var(tool), tool)] + argv[1:]
        log = work / f"{tool}.out"
        try:
            stages[stage] = _run_stage(argv, work, env, stage, progress, log)
            if tool == "yosys":
                try:
                    _bram_check(b, work, spram)
                except _NeedsSpram as need:
                    cdir.mkdir(parents=True, exist_ok=True)
                    marker.write_text(need.note)
                    raise
                retry = _dsp_fallback(b, work, progress)
                if retry:
                    options["dsp_fallback"] = retry
                    stages[stage] += _run_stage(argv, work, env, stage + " without -dsp", progress, log)
        except _StageFailed as err:
            _fail(b, tool, err.rc, work, log, spram)
    for src, dst in ((f"{NAME}.rpt", files["yosys_log"]), (f"{NAME}.tim", files["nextpnr_log"]), (f"{NAME}.report.json", files["nextpnr_report"]), (files["bitstream"], files["bitstream"])):
        shutil.copyfile(work / src, out / dst)

    nreport = json.loads((work / f"{NAME}.report.json").read_text())
    util = {k: (int(v["used"]), int(v["available"])) for k, v in nreport.get("utilization", {}).items()}
    cells = yosys_cells((work / f"{NAME}.stat.json").read_text())
    rep = BuildReport(
        spec=spec.name, board=b.name, platform=b.platform_class.__name__, device=b.device, package=b.package, family=b.family,
        lanes=lanes, board_clock_mhz=board_mhz, target_mhz=target, resources=resources_from(b.family, util, cells),
        clocks=clocks_from(nreport), stage_seconds={k: round(v, 1) for k, v in stages.items()}, cells=cells,
        toolchain=versions, options=options, key=key, files=files, critical_paths=critical_paths_from(nreport),
    )
    _write_report(rep, out)
    _store(cdir, out, files)  # with use_cache=False too: the entry is refreshed
    progress(f"  built in {time.perf_counter() - t_start:.0f} s; {rep.timing_summary()}")
    return rep


def _write_verilog(rtlil_text: str, path: Path) -> None:
    """The top as Verilog (the same conversion Amaranth's own ``verilog.convert`` does)."""
    from amaranth.back import verilog

    path.write_text(verilog._convert_rtlil_text(rtlil_text, strip_internal_attrs=True))


def _write_report(rep: BuildReport, out: Path) -> None:
    (out / "report.json").write_text(json.dumps(rep.to_dict(), indent=1, sort_keys=True) + "\n")
    (out / "report.txt").write_text(rep.table())


def _store(cdir: Path, out: Path, files: dict[str, str]) -> None:
    cdir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cdir.parent, prefix=".tmp-"))
    try:
        for f in files.values():
            if (out / f).is_file():
                shutil.copyfile(out / f, tmp / f)
        if cdir.exists():
            shutil.rmtree(cdir)
        os.replace(tmp, cdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _fail(b: Board, tool: str, rc: int, work: Path, out_log: Path, spram: str = "auto") -> None:
    if tool.startswith("nextpnr"):
        log = work / f"{NAME}.tim"
        text = (log.read_text(errors="replace") if log.is_file() else "") + "\n" + (out_log.read_text(errors="replace") if out_log.is_file() else "")
        util = parse_utilisation_log(text)
        over = overflowing(util)
        if over:
            short_of_bram = any(r == "ICESTORM_RAM" for r, _, _ in over)
            hint = "--spram on puts the weights into the device's SPRAM" if short_of_bram and spram == "off" and has_spram(b) else ""
            raise DoesNotFitError(b.name, b.device, over, util, hint=hint)
        raise BuildError(f"{tool} failed (exit status {rc}); log {log}:\n{_tail(log if log.is_file() else out_log)}")
    log = work / f"{NAME}.rpt"
    raise BuildError(f"{tool} failed (exit status {rc}); log {log if log.is_file() else out_log}:\n{_tail(log if log.is_file() else out_log)}")
