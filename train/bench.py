"""``localsnn bench train``: training throughput and peak memory of every float learner, side by
side with SpikingJelly's and snnTorch's BPTT on the same net.

The issue's GPU benchmark: the net ``784-800-10`` (Ma et al.'s MNIST net: one hidden layer of
800 LIF neurons, a spiking classifier of 10), batch 100, ``T`` in 10, 50, 100, the direct code
(an input current at every step) of random MNIST-shaped images (pixels uniform on 0..255,
quantized as the spec quantizes them: throughput does not depend on what the pixels show).

Methods (``--rules``): the float learners of this package, each built from the shipped ``mnist``
spec with the benchmark's sizes and ``T`` (``train/registry.py``):

* ``bptt`` (global BPTT), ``ell``, ``fell``, ``bell`` (``train/lif.py``), ``decolle``
  (``train/decolle.py``, the paper's constants), ``tlbptt`` (``train/tlbptt.py``, ``k = 5``);
* the references, when importable: ``spikingjelly`` (``spikingjelly.activation_based``,
  multi-step mode: ``layer.Linear`` + ``neuron.LIFNode`` with ``step_mode="m"``, soft reset,
  ``decay_input=False`` and ``tau = 1/(1-d)`` so that its decay is the spec's ``d``) and
  ``snntorch`` (``snn.Leaky``, ``beta = d``, subtractive reset, a Python loop over ``T``), both
  trained by BPTT of Ma's loss ``L = sum_t 1/(2B) ||y - o^a[t]||^2`` through the whole window.
  A library that is not installed is reported in one line (how to install it), never an error.

Every method trains with Adam (lr 5e-4), one minibatch window of ``T`` steps per iteration, as
its rule says (ELL, FELL, DECOLLE: an optimizer step after every time step; truncated local
BPTT: every ``k`` steps; BPTT, BELL and the references: once per window).

**Throughput**: samples (windows of ``T`` steps) per second of training: the forward pass, the
rule's updates and the optimizer steps, timed over ``--iters`` iterations after ``warmup``
iterations (CUDA synchronised before the clock starts and before it stops).

**Memory** (MiB = 2**20 bytes), two parts:

* ``held``: what lives between training steps: weights, optimizer state, the encoded input
  ``[T, B, 784]`` and labels. On a GPU ``torch.cuda.memory_allocated`` before the timed
  iterations; on the CPU the sum of those tensors' sizes.
* ``step``: the peak of a training step above ``held``: activations, the autograd graph, FELL's
  traces, gradients. On a GPU ``torch.cuda.max_memory_allocated`` over the timed iterations
  minus ``held``. On the CPU (no allocator statistics there) one further iteration runs under
  ``torch.profiler`` with ``profile_memory=True``: the running sum of the CPU allocator's
  allocation and free events during the step, its maximum. This counts torch tensors only (not
  Python objects nor the allocator's slack), so it is the CPU counterpart of
  ``max_memory_allocated``, not of the process's RSS. It is taken after the optimizer's
  gradients were set to ``None``, so a free the profiler cannot see (a block allocated before it
  started) does not make it too high.

``peak = held + step``. The goal checks use ``step``: ELL's and DECOLLE's should not grow with
``T``, FELL's should be its eligibility traces (``B x synapses`` values, which grow with the
synapses) and not grow with ``T``; BPTT, BELL and the references keep the window's history and
grow with ``T``.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import io
import itertools
import json
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from localsnn.errors import LocalsnnError
from localsnn.train import registry

#: the float learners the benchmark runs, in its table's order (the registry's ``bench`` entries)
OURS = tuple(registry.names(bench=True))
#: reference libraries (BPTT), run when importable
REFERENCES = ("spikingjelly", "snntorch")
METHODS = OURS + REFERENCES
INSTALL_HINT = "pip install spikingjelly snntorch"
DEFAULT_NET = "784-800-10"
DEFAULT_TIMESTEPS = (10, 50, 100)
DEFAULT_BATCH = 100
#: (timed iterations, warm-up iterations) by device type
DEFAULT_ITERS = {"cuda": (20, 3), "cpu": (2, 1)}
LR = 5e-4
TLBPTT_K = 5
#: the issue's goal: ELL and DECOLLE at least this many times SpikingJelly's throughput at T = 10
GOAL_SPEEDUP = 2.0
GOAL_T = 10
#: "independent of T": the step memory at the largest T over that at the smallest, at most this
#: (or less than MEM_SLACK_MIB apart)
MEM_RATIO_OK = 1.10
MEM_SLACK_MIB = 1.0

MIB = float(1 << 20)


@dataclass
class Result:
    """One method at one ``T``. Memory in MiB (module docstring); ``seconds``: the timed
    iterations; ``note``: why a number is missing or what it means."""

    method: str
    timesteps: int
    batch: int
    iters: int
    seconds: float
    samples_per_s: float
    held_mib: float
    step_mib: float
    peak_mib: float
    memory: str  # how the memory was measured
    note: str = ""


@dataclass
class BenchReport:
    device: str
    net: str
    batch: int
    timesteps: list[int]
    iters: int
    warmup: int
    results: list[Result]
    missing: dict[str, str]  # reference library -> why it did not run
    checks: list[str]
    meta: dict

    def result(self, method: str, T: int) -> Result | None:
        return next((r for r in self.results if r.method == method and r.timesteps == T), None)

    def table(self) -> str:
        head = f"{'method':13s} {'T':>4s} {'samples/s':>10s} {'ms/iter':>9s} {'held MiB':>9s} {'step MiB':>9s} {'peak MiB':>9s}"
        lines = [head, "-" * len(head)]
        for r in self.results:
            ms = 1000 * r.seconds / r.iters if r.iters else float("nan")
            lines.append(f"{r.method:13s} {r.timesteps:4d} {r.samples_per_s:10.1f} {ms:9.1f} {r.held_mib:9.2f} {r.step_mib:9.2f} {r.peak_mib:9.2f}" + (f"  {r.note}" if r.note else ""))
        return "\n".join(lines)

    def to_json(self) -> dict:
        """As a dict for ``json.dumps``; a number not measured (NaN) is ``None``."""
        return _finite(asdict(self))


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_finite(x) for x in v]
    return v


# --------------------------------------------------------------------------------------------
# nets
# --------------------------------------------------------------------------------------------


def parse_net(net: str) -> tuple[int, list[int], int]:
    """``"784-800-10"`` -> (inputs, hidden sizes, classes)."""
    try:
        sizes = [int(v) for v in net.split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 3 or any(s < 1 for s in sizes):
        raise LocalsnnError(f"--net takes inputs-hidden...-classes, e.g. {DEFAULT_NET}, not {net!r}")
    return sizes[0], sizes[1:-1], sizes[-1]


def bench_spec(net: str, timesteps: int):
    """The shipped ``mnist`` spec (LIF neurons, tau 1, theta 1, direct code) with the sizes of
    ``net`` and ``timesteps`` steps."""
    from localsnn.train.loop import override_spec

    from localsnn import spec as specmod
    from localsnn.errors import SpecError

    inputs, hidden, classes = parse_net(net)
    base = specmod.load("mnist")
    try:
        spec = replace(base, name=f"bench-{net}", inputs=inputs, classes=classes, layers=tuple(replace(base.layers[0], size=s) for s in hidden))
    except SpecError as err:
        raise LocalsnnError(f"--net {net}: {err}") from None
    return override_spec(spec, timesteps=timesteps)


def available(name: str) -> tuple[bool, str]:
    """Whether a reference library imports; else why not (one line)."""
    mod = {"spikingjelly": "spikingjelly.activation_based", "snntorch": "snntorch"}[name]
    try:
        with _quiet_stdout(), _quiet_torch_logs():
            __import__(mod)
            if name == "spikingjelly":
                from spikingjelly.activation_based import (  # noqa: F401
                    functional,
                    layer,
                    neuron,
                    surrogate,
                )
    except Exception as err:  # noqa: BLE001 - any failure to import means: not usable here
        kind = "not installed" if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] == name else f"does not import ({type(err).__name__}: {err})"
        return False, kind
    return True, ""


@contextlib.contextmanager
def _quiet_torch_logs():
    """SpikingJelly's first forward makes torch log that Triton is absent (a CPU build): noise here."""
    import logging

    log = logging.getLogger("torch._library.triton")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


@contextlib.contextmanager
def _quiet_stdout():
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        yield


class _RefNet(torch.nn.Module):
    """A reference library's net of the benchmark's sizes, trained by BPTT of Ma's loss."""

    def __init__(self, lib: str, inputs: int, hidden: list[int], classes: int, decay: float, theta: float) -> None:
        super().__init__()
        self.lib = lib
        sizes = [inputs, *hidden, classes]
        if lib == "spikingjelly":
            from spikingjelly.activation_based import (
                functional,
                layer,
                neuron,
                surrogate,
            )

            self._reset = functional.reset_net
            tau = 1.0 / (1.0 - decay)  # v = (1 - 1/tau) v + x: decay d
            mods = []
            for a, b in itertools.pairwise(sizes):
                mods.append(layer.Linear(a, b, bias=False, step_mode="m"))
                mods.append(neuron.LIFNode(tau=float(tau), decay_input=False, v_threshold=theta, v_reset=None, surrogate_function=surrogate.Sigmoid(), step_mode="m"))
            self.net = torch.nn.Sequential(*mods)
        else:
            import snntorch as snn
            from snntorch import surrogate

            self.fcs = torch.nn.ModuleList(torch.nn.Linear(a, b, bias=False) for a, b in itertools.pairwise(sizes))
            self.lifs = torch.nn.ModuleList(snn.Leaky(beta=decay, threshold=theta, spike_grad=surrogate.atan(), reset_mechanism="subtract") for _ in self.fcs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Output spikes ``[T, B, classes]``."""
        if self.lib == "spikingjelly":
            self._reset(self.net)
            return self.net(x)
        mems = [lif.init_leaky() for lif in self.lifs]
        out = []
        for t in range(x.shape[0]):
            s = x[t]
            for i, (fc, lif) in enumerate(zip(self.fcs, self.lifs)):
                s, mems[i] = lif(fc(s), mems[i])
            out.append(s)
        return torch.stack(out)


def _make_method(method: str, net: str, timesteps: int, device: torch.device):
    """``(module, optimizer, step(x, y))`` for one method."""
    from localsnn.train.api import RuleOptions

    spec = bench_spec(net, timesteps)
    torch.manual_seed(0)
    if method in OURS:
        learner = registry.build(method, spec, RuleOptions(k=min(TLBPTT_K, timesteps))).to(device)
        opt = torch.optim.Adam([p for p in learner.parameters() if p.requires_grad], lr=LR)
        return learner, opt, lambda x, y: learner.train_step(x, y, opt)
    inputs, hidden, classes = parse_net(net)
    n0 = spec.layers[0].neuron
    model = _RefNet(method, inputs, hidden, classes, n0.alpha.value, n0.threshold).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=LR)

    def step(x, y):
        Y = torch.nn.functional.one_hot(y, classes).to(x.dtype)
        out = model(x)
        loss = 0.5 * (out - Y).pow(2).sum() / x.shape[1]  # sum over t of L_t (Ma eq. 4)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return {"loss": float(loss.detach()) / x.shape[0]}

    return model, opt, step


# --------------------------------------------------------------------------------------------
# measurement
# --------------------------------------------------------------------------------------------


def _tensor_bytes(module: torch.nn.Module, opt: torch.optim.Optimizer, *tensors: torch.Tensor) -> int:
    seen: set[int] = set()
    total = 0

    def add(t):
        nonlocal total
        if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
            seen.add(t.data_ptr())
            total += t.numel() * t.element_size()

    for t in module.parameters():
        add(t)
        add(t.grad)
    for t in module.buffers():
        add(t)
    for st in opt.state.values():
        for v in st.values():
            add(v)
    for t in tensors:
        add(t)
    return total


@contextlib.contextmanager
def _stderr_silenced():
    """The profiler's C++ side prints start/stop lines on file descriptor 2; hide them."""
    try:
        fd = os.dup(2)
    except OSError:  # pragma: no cover - no stderr
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(fd, 2)
        os.close(fd)


def cpu_step_peak(step: Callable[[], object]) -> int:
    """Bytes: the peak, during ``step()``, of the CPU allocator's allocations minus its frees
    (``torch.profiler`` memory events, in order)."""
    from torch.profiler import ProfilerActivity, profile

    with _stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == torch._C._autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return peak


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(method: str, net: str, timesteps: int, batch: int, iters: int, warmup: int, device: torch.device, seed: int = 0) -> Result:
    """Throughput and memory of one method at one ``T`` (module docstring)."""
    from localsnn.train.encode import Encoder

    spec = bench_spec(net, timesteps)
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 1 << spec.encoding.format.frac, (batch, spec.inputs), generator=g, dtype=torch.int32)
    x = Encoder(spec.encoding, timesteps)(pixels).to(device)
    y = torch.randint(0, spec.classes, (batch,), generator=g).to(device)
    module, opt, step = _make_method(method, net, timesteps, device)
    module.train()
    for _ in range(warmup):
        step(x, y)
    opt.zero_grad(set_to_none=True)
    gc.collect()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        held = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        step(x, y)
    _sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        extra = torch.cuda.max_memory_allocated(device) - held
        how = "torch.cuda.max_memory_allocated"
    else:
        opt.zero_grad(set_to_none=True)
        gc.collect()
        held = _tensor_bytes(module, opt, x, y)
        extra = cpu_step_peak(lambda: step(x, y))
        how = "torch.profiler CPU allocator events"
    rate = batch * iters / seconds if seconds > 0 else float("inf")
    return Result(method, timesteps, batch, iters, seconds, rate, held / MIB, extra / MIB, (held + extra) / MIB, how)


# --------------------------------------------------------------------------------------------
# goal checks
# --------------------------------------------------------------------------------------------


def _trace_mib(net: str, batch: int) -> float:
    """FELL's traces: ``B x (fan_in x size + size x classes)`` float32 per hidden layer."""
    inputs, hidden, classes = parse_net(net)
    fan_ins = [inputs, *hidden[:-1]]
    return sum(batch * (f * s + s * classes) * 4 for f, s in zip(fan_ins, hidden)) / MIB


def goal_checks(rep: BenchReport) -> list[str]:
    """The issue's goals as figures (one line each)."""
    out: list[str] = []
    Ts = sorted(rep.timesteps)
    t_speed = GOAL_T if GOAL_T in Ts else Ts[0]
    sj = rep.result("spikingjelly", t_speed)
    where = f"T = {t_speed}" + ("" if t_speed == GOAL_T else f" (T = {GOAL_T} was not run)")
    for m in registry.names(throughput_goal=True):
        r = rep.result(m, t_speed)
        if r is None:
            continue
        if sj is None or not (math.isfinite(sj.samples_per_s) and math.isfinite(r.samples_per_s)):
            why = rep.missing.get("spikingjelly", "not in --rules") if sj is None else f"did not run ({sj.note or r.note})"
            out.append(f"{m.upper()} throughput / SpikingJelly's at {where}: cannot be checked, spikingjelly {why}")
        else:
            ratio = r.samples_per_s / sj.samples_per_s
            out.append(f"{m.upper()} throughput / SpikingJelly's at {where}: {r.samples_per_s:.1f} / {sj.samples_per_s:.1f} = {ratio:.2f}x (goal >= {GOAL_SPEEDUP:g}x: {'met' if ratio >= GOAL_SPEEDUP else 'NOT met'})")
    if len(Ts) < 2:
        out.append("step memory against T: needs two or more --timesteps")
        return out
    lo, hi = Ts[0], Ts[-1]
    for m in [m for m in METHODS if rep.result(m, lo) and rep.result(m, hi)]:
        a, b = rep.result(m, lo).step_mib, rep.result(m, hi).step_mib
        if not (math.isfinite(a) and math.isfinite(b)):
            out.append(f"step memory of {m:12s} T = {hi} / T = {lo}: not measured ({rep.result(m, lo).note or rep.result(m, hi).note})")
            continue
        ratio = f"{b / a:5.2f}x" if a > 0 else "    -"
        flat = (a > 0 and b / a <= MEM_RATIO_OK) or abs(b - a) < MEM_SLACK_MIB
        line = f"step memory of {m:12s} T = {hi} / T = {lo}: {b:8.2f} / {a:8.2f} MiB = {ratio}"
        memory = registry.ENTRIES[m].memory if m in registry.ENTRIES else "window"  # the references: BPTT
        if memory != "window":
            goal = "independent of T" if memory == "online" else f"independent of T (k = {TLBPTT_K} steps kept)"
            line += f"  (goal {goal}: {'yes' if flat else 'NO'})"
        else:
            line += "  (keeps the window's history: " + ("grows with T)" if not flat else f"less than {MEM_SLACK_MIB:g} MiB apart at these sizes)")
        out.append(line)
    for m in registry.names(traces=True):
        kept = [rep.result(m, T) for T in Ts if rep.result(m, T)]
        if kept:
            tr = _trace_mib(rep.net, rep.batch)
            ratios = ", ".join(f"T = {r.timesteps}: {r.step_mib / tr:.2f}x" for r in kept)
            out.append(f"{m.upper()} step memory / its eligibility traces (batch {rep.batch} x synapses x 4 B = {tr:.3g} MiB, grows with the synapses): {ratios}")
    return out


# --------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # pragma: no cover - imported but not installed as a distribution
        return getattr(__import__(dist), "__version__", "?")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def bench_train(
    *,
    net: str = DEFAULT_NET,
    timesteps=DEFAULT_TIMESTEPS,
    batch: int = DEFAULT_BATCH,
    device: str | None = None,
    rules=None,
    iters: int | None = None,
    warmup: int | None = None,
    out: str | Path | None = None,
    echo: Callable[[str], None] = print,
) -> BenchReport:
    """Run the benchmark, print its table and goal checks through ``echo``, write
    ``bench_train.csv`` and ``bench_train.json`` into ``out`` when given."""
    from localsnn.train.loop import check_device

    dev = check_device(device or default_device())
    methods = list(rules) if rules else list(METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LocalsnnError(f"unknown method(s) {', '.join(unknown)} for 'bench train'; allowed: {', '.join(METHODS)}")
    Ts = [int(T) for T in timesteps]
    if not Ts or any(T < 1 for T in Ts):
        raise LocalsnnError(f"--timesteps takes positive integers, not {timesteps!r}")
    if batch < 1:
        raise LocalsnnError(f"--batch must be at least 1, not {batch}")
    d_iters, d_warm = DEFAULT_ITERS["cuda" if dev.type == "cuda" else "cpu"]
    iters = d_iters if iters is None else iters
    warmup = d_warm if warmup is None else warmup
    if iters < 1 or warmup < 0:
        raise LocalsnnError(f"--iters must be at least 1 (and the warm-up at least 0), not {iters} ({warmup})")
    parse_net(net)
    for T in Ts:
        bench_spec(net, T)  # a bad net fails before anything runs

    missing: dict[str, str] = {}
    for m in [m for m in methods if m in REFERENCES]:
        ok, why = available(m)
        if not ok:
            missing[m] = why
            methods.remove(m)
    versions = {"torch": torch.__version__}
    for m in REFERENCES:
        if m in methods:
            versions[m] = _version(m)
    if dev.type == "cuda":
        where = f"{torch.cuda.get_device_name(dev)} ({dev})"
    else:
        where = f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    meta = {"device_name": where, "versions": versions, "lr": LR, "optimizer": "adam", "tlbptt_k": TLBPTT_K, "input": "direct code of random pixels 0..255 (u8.8)"}
    echo(f"float training benchmark: net {net}, batch {batch}, T in {', '.join(map(str, Ts))}, direct input (random MNIST-shaped pixels), Adam; {where}; " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    echo(f"{iters} timed iteration(s) of one minibatch window after {warmup} warm-up; samples/s = batch x iterations / seconds (forward, the rule's updates, optimizer steps)")
    mem_how = "torch.cuda.memory_allocated / max_memory_allocated" if dev.type == "cuda" else "on the CPU: held = the tensors' sizes, step = torch.profiler's CPU allocator events, tensors only, not RSS"
    echo(f"memory: held = weights, optimizer state and the input between steps; step = peak of a training step above that; peak = held + step ({mem_how})")
    for m, why in missing.items():
        echo(f"{m}: {why}; the comparison with it is skipped (install: {INSTALL_HINT})")

    results: list[Result] = []
    for T in Ts:
        for m in methods:
            try:
                with _quiet_torch_logs():
                    r = measure(m, net, T, batch, iters, warmup, dev)
                gc.collect()  # the method's net, optimizer and input, before the next one
            except torch.OutOfMemoryError:
                gc.collect()
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                r = Result(m, T, batch, 0, 0.0, float("nan"), float("nan"), float("nan"), float("nan"), "", "out of memory")
            except LocalsnnError as err:  # e.g. FELL's traces do not fit the GPU
                r = Result(m, T, batch, 0, 0.0, float("nan"), float("nan"), float("nan"), float("nan"), "", f"skipped: {err}")
            except Exception as err:  # a reference library that fails here (a kernel it cannot build) is reported, not fatal
                if m not in REFERENCES:
                    raise
                r = Result(m, T, batch, 0, 0.0, float("nan"), float("nan"), float("nan"), float("nan"), "", f"failed: {type(err).__name__}: {err}".splitlines()[0][:200])
            results.append(r)
    rep = BenchReport(str(dev), net, batch, Ts, iters, warmup, results, missing, [], meta)
    rep.checks = goal_checks(rep)
    echo("")
    echo(rep.table())
    echo("")
    echo("goal checks:")
    for line in rep.checks:
        echo("  " + line)
    if out is not None:
        write(rep, Path(out))
        echo(f"results in {Path(out) / 'bench_train.csv'} and {Path(out) / 'bench_train.json'}")
    return rep


def write(rep: BenchReport, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = ["method", "timesteps", "batch", "iters", "seconds", "samples_per_s", "held_mib", "step_mib", "peak_mib", "memory", "note"]
    w.writerow(["device", *cols])
    for r in rep.results:
        d = asdict(r)
        w.writerow([rep.device, *(f"{d[c]:.6g}" if isinstance(d[c], float) and math.isfinite(d[c]) else d[c] for c in cols)])
    (folder / "bench_train.csv").write_text(buf.getvalue(), encoding="utf-8")
    (folder / "bench_train.json").write_text(json.dumps(rep.to_json(), indent=1, allow_nan=False), encoding="utf-8")


__all__ = ["METHODS", "OURS", "REFERENCES", "BenchReport", "Result", "bench_train", "cpu_step_peak", "goal_checks", "measure"]
