"""The accuracy runs of the papers as one plan, run in batches on a GPU within a time budget.

``python tools/train_suite.py --plan paper --device cuda --budget-s 480 --parallel 4 -o DIR``

A *plan* is a list of named runs (:class:`Run`: spec or architecture, rule, dataset, encoding,
epochs, the optimizer and its schedule, rule options, an accuracy goal). Each run is the real
``localsnn train`` command, started as a subprocess in its own folder ``DIR/<name>`` (with
``--resume`` when that folder already holds a checkpoint), up to ``--parallel`` at once. The
training loop checkpoints after every epoch, so a run loses at most the epoch in progress when it
is stopped; the suite does not start an epoch that cannot finish: each run times its epochs
(checkpoint to checkpoint, evaluation included) and, right after a checkpoint after which the next
epoch would end past the budget, stops itself (``localsnn train`` says "interrupted" and exits
with status 130, the checkpoint just written intact). At the end of the budget the suite stops
whatever still runs with SIGINT (an epoch then in progress is lost: only an epoch much slower than
the one before lets that happen) and, ``--grace-s`` later, kills it. A run that fails never stops
the others: the table shows its last lines of stderr. New runs start only while the budget left
holds their startup and one epoch as timed in an earlier call (``--min-start-s`` for a run never
timed).

Per run the suite records, in ``DIR/suite.json`` and the table ``DIR/suite.md`` (also printed):
epochs done and planned, the best and the last test accuracy of every layer (from the run's
``metrics.json``), the goal and whether it is met, peak memory and wall time. ``localsnn
train`` does not record memory, so the suite runs it in a thin wrapper (``_child`` below: the
same ``localsnn.cli.main`` with the same arguments) that reads torch's allocator statistics
around the loop's training epochs and evaluations, and the process's peak RSS, into
``DIR/<name>/memory.json`` (kept as the maximum over every call).

The GPU machine of this project is lent in calls of at most 10 minutes, with 64 MiB carried in
and at most 8 files (64 MiB) brought back. ``--pack-data DIR`` writes what the runs need there
that the machine lacks (the MNIST IDX files gzipped, about 11 MB, which ``--data-dir`` reads as
they are; the pure-Python ``tomli_w``), ``--state-limit-mb`` bounds the checkpoints of unfinished
runs (what must travel back and forth), ``--bundle OUT`` packs the suite folder without the
checkpoints of finished runs into at most a few 15 MiB parts, and ``--unbundle SRC`` puts it back.
docs/gpu-runs.md says how a session runs the plan.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

try:  # the installed localsnn (an install of the checkout this tool sits in: docs/gpu-runs.md)
    import localsnn  # noqa: F401 - only whether it is installed
except ImportError:  # pragma: no cover - depends on the machine
    sys.exit("tools/train_suite.py: localsnn is not installed; in the checkout run "
             "`python3 -m pip install --no-deps --no-build-isolation .` first (docs/gpu-runs.md)")

from localsnn.errors import LocalsnnError

PLAN_NAMES = ("paper", "smoke")
DATASETS = ("digits", "mnist", "fashion")
CHECKPOINT = "checkpoint.pt"  # loop.CHECKPOINT (not imported: that module needs torch)
METRICS = "metrics.json"
MEMORY = "memory.json"
SUITE_JSON = "suite.json"
SUITE_MD = "suite.md"
STDOUT_LOG = "suite-stdout.log"
STDERR_LOG = "suite-stderr.log"
SPECS_DIR = "specs"
BUNDLE_PREFIX = "suite-bundle.tgz."
BUNDLE_PART = 15 << 20  # the device tool brings back files of at most 16 MiB
BUNDLE_WARN = 56 << 20  # ... and 64 MiB in all, suite.md and suite.json beside the parts
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
MIB = 1 << 20
#: the child stops after a checkpoint when its next epoch would end after this time (time.time())
DEADLINE_ENV = "LOCALSNN_SUITE_DEADLINE"


class SuiteError(LocalsnnError):
    """A mistake in the suite's arguments or plan: one message, exit status 2."""


# --------------------------------------------------------------------------------------------
# runs and plans
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One training run of a plan: the options of ``localsnn train`` it is made of.

    ``config``: a shipped spec name, a TOML file, or the name of a spec this module generates
    (:data:`GENERATED_SPECS`, written to ``DIR/specs/<name>.toml``). ``goal``: the lowest best
    test accuracy of the network's decision (a fraction) that reproduces the paper, or None.
    ``source``: where the hyperparameters and the goal come from. ``state_mb``: the size of the
    run's checkpoint (model and Adam's two moments) when the spec cannot say (``--arch``).
    """

    name: str
    rule: str
    dataset: str
    epochs: int
    config: str = "mnist"
    arch: str | None = None
    encoding: str | None = None
    tau: float | None = None
    timesteps: int | None = None
    batch: int = 100
    optimizer: str = "adam"
    lr: float = 5e-4
    lr_step: int = 15
    lr_gamma: float = 0.2
    update: str | None = None
    k: int | None = None
    n: int | None = None
    random_classifiers: bool = False
    eval_train: bool = False
    limit: int | None = None
    seed: int = 0
    goal: float | None = None
    source: str = ""
    state_mb: float | None = None

    def train_args(self, *, device: str, epochs: int | None = None, config: str | None = None, data_dir: str | None = None, resume: bool = False) -> list[str]:
        """The arguments of ``localsnn train`` (without the program name), run in the suite
        folder: the run's folder is ``-o <name>``."""
        a = ["train", "--config", config or self.config, "--rule", self.rule, "--dataset", self.dataset, "--epochs", str(epochs or self.epochs), "--device", device]
        if self.arch:
            a += ["--arch", self.arch]
        if self.encoding:
            a += ["--encoding", self.encoding]
        if self.tau is not None:
            a += ["--tau", f"{self.tau:g}"]
        if self.timesteps is not None:
            a += ["--timesteps", str(self.timesteps)]
        a += ["--batch", str(self.batch), "--optimizer", self.optimizer, "--lr", f"{self.lr:g}", "--lr-step", str(self.lr_step), "--lr-gamma", f"{self.lr_gamma:g}"]
        if self.update:
            a += ["--update", self.update]
        if self.k is not None:
            a += ["--k", str(self.k)]
        if self.n is not None:
            a += ["--n", str(self.n)]
        if self.random_classifiers:
            a.append("--random-classifiers")
        if self.limit is not None:
            a += ["--limit", str(self.limit)]
        if self.seed:
            a += ["--seed", str(self.seed)]
        if not self.eval_train:
            a.append("--no-eval-train")
        if data_dir and self.dataset != "digits":
            a += ["--data-dir", data_dir]
        a += ["--quiet", "-o", self.name]
        if resume:
            a.append("--resume")
        return a


@dataclass(frozen=True)
class Relation:
    """A claim across runs: their best accuracies in this (descending) order."""

    title: str
    runs: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    name: str
    runs: tuple[Run, ...]
    relations: tuple[Relation, ...] = ()
    about: str = ""

    def run(self, name: str) -> Run:
        for r in self.runs:
            if r.name == name:
                return r
        raise SuiteError(f"no run {name!r} in plan {self.name!r}; its runs: {', '.join(r.name for r in self.runs)}")


MA = "Ma et al. 2023, Table IV (T = 10, tau = 1, theta = 1, Adam 5e-4 / 5 every 15 epochs, batch 100)"


def paper_plan() -> Plan:
    """Issue 4: the papers' MNIST runs, with their hyperparameters."""
    runs = [
        Run("mnist-ell", "ell", "mnist", 50, goal=0.984, source=f"{MA}; paper 98.61 %"),
        Run("mnist-fell", "fell", "mnist", 50, goal=0.984, source=f"{MA}; paper 98.62 %"),
        Run("mnist-bell", "bell", "mnist", 150, goal=0.984, source=f"{MA}; BELL up to 150 epochs"),
        Run("mnist-bptt", "bptt", "mnist", 150, source=f"{MA}; Ma's global BPTT* baseline, beside the local rules"),
        Run("mnist-cnn-ell", "ell", "mnist", 50, arch="12c5-p2-64c5-p2-10", goal=0.992, state_mb=0.6, source=f"{MA}; Ma Table II CNN"),
        Run("mnist-latency-ell", "ell", "mnist", 50, encoding="latency", tau=40.0, source="Ma eq. 17 latency code, tau = 40 (Table IV)"),
        Run("mnist-latency-fell", "fell", "mnist", 50, encoding="latency", tau=40.0, source="Ma eq. 17 latency code, tau = 40 (Table IV)"),
        Run("mnist-latency-bell", "bell", "mnist", 50, encoding="latency", tau=40.0, source="Ma eq. 17 latency code, tau = 40 (Table IV)"),
        Run("mnist-decolle", "decolle", "mnist", 30, config="mnist-decolle", source="Kaiser et al. 2020 rule; net and epochs ours (digits-decolle's constants, 784-800-10)"),
    ]
    for n in (1, 2):
        for k in (10, 5, 2, 1):
            runs.append(Run(f"mnist-tlbptt-k{k}-n{n}", "tlbptt", "mnist", 30, config="mnist-800-800", k=k, n=n, source=f"Guo et al. 2023 rule, k = {k}, n = {n}; net 784-800-800-10 and epochs ours"))
    rel = (Relation("latency code: BELL > FELL > ELL (Ma et al.)", ("mnist-latency-bell", "mnist-latency-fell", "mnist-latency-ell")),)
    return Plan("paper", tuple(runs), rel, "issue 4: Ma et al. MNIST 800-10 (ELL, FELL, BELL, BPTT), the CNN, the latency code; DECOLLE and truncated local BPTT with their memory")


def smoke_plan() -> Plan:
    """Three rules on the 8x8 digits, one epoch each: a check of the suite itself (CPU)."""
    runs = (
        Run("digits-ell", "ell", "digits", 1, config="digits", goal=0.5, source="smoke test"),
        Run("digits-fell", "fell", "digits", 1, config="digits", source="smoke test"),
        Run("digits-decolle", "decolle", "digits", 1, config="digits-decolle", source="smoke test"),
    )
    return Plan("smoke", runs, (Relation("smoke: ELL > DECOLLE after one epoch", ("digits-ell", "digits-decolle")),), "the suite's own check: digits, 1 epoch, 3 rules")


def _spec_two_layer_mnist():
    """784-800-800-10: the shipped mnist spec's layer twice (truncated local BPTT with n = 2
    needs two layers to put in one block)."""
    from dataclasses import replace

    from localsnn import spec as specmod

    m = specmod.load("mnist")
    return replace(m, name="mnist-800-800", layers=(m.layers[0], m.layers[0]))


def _spec_decolle_mnist():
    """784-800-10 DECOLLE: digits-decolle's neurons and formats, the init bounds scaled by
    sqrt(fan-in) (W) and sqrt(size) (readout G) from its 64-64, the accumulators widened."""
    from dataclasses import replace

    from localsnn import spec as specmod

    d = specmod.load("digits-decolle")
    layer = d.layers[0]
    size, inputs = 800, 784
    w_scale = round(layer.init.scale * math.sqrt(d.inputs / inputs), 4)
    g_scale = round(layer.classifier.init.scale * math.sqrt(layer.size / size), 4)
    clf = replace(layer.classifier, init=replace(layer.classifier.init, scale=g_scale), accumulator=24)
    layer = replace(layer, size=size, accumulator=41, init=replace(layer.init, scale=w_scale), classifier=clf)
    return replace(d, name="mnist-decolle", inputs=inputs, layers=(layer,))


#: specs the suite writes into DIR/specs/ (no shipped spec has them)
GENERATED_SPECS = {"mnist-800-800": _spec_two_layer_mnist, "mnist-decolle": _spec_decolle_mnist}


def builtin_plan(name: str) -> Plan:
    if name == "paper":
        return paper_plan()
    if name == "smoke":
        return smoke_plan()
    raise SuiteError(f"unknown plan {name!r}; plans: {', '.join(PLAN_NAMES)}, or a TOML plan file")


def load_plan(name_or_path: str) -> Plan:
    """A built-in plan by name, or a TOML file: ``name``, ``[[runs]]`` with :class:`Run`'s
    fields, optional ``[[relations]]`` with ``title`` and ``runs``."""
    if name_or_path in PLAN_NAMES:
        return builtin_plan(name_or_path)
    path = Path(name_or_path)
    if not (path.suffix == ".toml" or path.is_file()):
        return builtin_plan(name_or_path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SuiteError(f"plan file {path} does not exist; plans: {', '.join(PLAN_NAMES)}, or a TOML plan file") from None
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise SuiteError(f"plan file {path} is not readable TOML: {err}") from None
    allowed = {f.name: f for f in fields(Run)}
    runs = []
    for i, entry in enumerate(doc.get("runs", [])):
        if not isinstance(entry, dict):
            raise SuiteError(f"{path}: runs[{i}] is not a table")
        unknown = sorted(set(entry) - set(allowed))
        if unknown:
            raise SuiteError(f"{path}: runs[{i}] has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
        missing = [k for k in ("name", "rule", "dataset", "epochs") if k not in entry]
        if missing:
            raise SuiteError(f"{path}: runs[{i}] lacks {', '.join(missing)}")
        runs.append(Run(**entry))
    rels = []
    for i, entry in enumerate(doc.get("relations", [])):
        try:
            rels.append(Relation(str(entry["title"]), tuple(entry["runs"])))
        except (KeyError, TypeError):
            raise SuiteError(f"{path}: relations[{i}] needs title and runs") from None
    return Plan(str(doc.get("name", path.stem)), tuple(runs), tuple(rels), str(doc.get("about", "")))


def check_plan(plan: Plan) -> None:
    """Names, datasets, epochs, goals and rules of every run; clear messages."""
    if not plan.runs:
        raise SuiteError(f"plan {plan.name!r} has no runs")
    seen: set[str] = set()
    try:
        from localsnn.train import registry

        rules = registry.names()
    except ImportError:  # pragma: no cover - torch missing: the runs say so themselves
        rules = None
    for r in plan.runs:
        if not isinstance(r.name, str) or not _NAME_RE.match(r.name):
            raise SuiteError(f"plan {plan.name!r}: run name {r.name!r} must be letters, digits, '.', '_', '-' (it names a folder)")
        if r.name in seen or r.name == SPECS_DIR:
            raise SuiteError(f"plan {plan.name!r}: run name {r.name!r} is used twice (or reserved)")
        seen.add(r.name)
        if r.dataset not in DATASETS:
            raise SuiteError(f"run {r.name!r}: unknown dataset {r.dataset!r}; allowed: {', '.join(DATASETS)}")
        if isinstance(r.epochs, bool) or not isinstance(r.epochs, int) or r.epochs < 1:
            raise SuiteError(f"run {r.name!r}: epochs must be a positive integer, not {r.epochs!r}")
        if r.goal is not None and not (0 < r.goal <= 1):
            raise SuiteError(f"run {r.name!r}: goal is a fraction of the test set (0.984 for 98.4 %), not {r.goal!r}")
        if rules is not None and r.rule not in rules:
            raise SuiteError(f"run {r.name!r}: unknown rule {r.rule!r}; allowed: {', '.join(rules)}")
    for rel in plan.relations:
        for name in rel.runs:
            if name not in seen:
                raise SuiteError(f"plan {plan.name!r}: relation {rel.title!r} names no run {name!r}")


def select(plan: Plan, only: str | None) -> list[Run]:
    if not only:
        return list(plan.runs)
    names = [s.strip() for s in only.split(",") if s.strip()]
    known = {r.name for r in plan.runs}
    bad = [n for n in names if n not in known]
    if bad:
        raise SuiteError(f"--only: no run {', '.join(map(repr, bad))} in plan {plan.name!r}; its runs: {', '.join(r.name for r in plan.runs)}")
    return [r for r in plan.runs if r.name in names]


def config_path(run: Run) -> str:
    """What ``--config`` says, relative to the suite folder (generated specs live in specs/)."""
    return f"{SPECS_DIR}/{run.config}.toml" if run.config in GENERATED_SPECS else run.config


def write_specs(runs: list[Run], folder: Path) -> None:
    from localsnn import spec as specmod

    for key in sorted({r.config for r in runs if r.config in GENERATED_SPECS}):
        path = folder / SPECS_DIR / f"{key}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        text = f"# written by tools/train_suite.py ({GENERATED_SPECS[key].__doc__.split(':')[0].strip()})\n" + specmod.dumps(GENERATED_SPECS[key]())
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")


def state_bytes(run: Run, folder: Path) -> int:
    """The size of the run's checkpoint: the file when it exists, else an estimate (weights and
    Adam's two moments, float32, from the spec's layer sizes)."""
    ck = folder / run.name / CHECKPOINT
    if ck.exists():
        return ck.stat().st_size
    if run.state_mb is not None:
        return int(run.state_mb * MIB)
    try:
        from localsnn import spec as specmod

        s = GENERATED_SPECS[run.config]() if run.config in GENERATED_SPECS else specmod.load(run.config)
    except Exception:  # noqa: BLE001 - the run reports a bad config itself
        return 0
    params = sum(s.fan_in(i) * ls.size + ls.size * s.classes for i, ls in enumerate(s.layers))
    return int(12 * params * 1.03) + 65536


# --------------------------------------------------------------------------------------------
# what a run folder holds
# --------------------------------------------------------------------------------------------


def checkpoint_epoch(folder: Path) -> int | None:
    """The epoch of ``folder/checkpoint.pt``, None without one (or an unreadable one)."""
    path = folder / CHECKPOINT
    if not path.exists():
        return None
    try:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
        return int(state["epoch"])
    except Exception:  # noqa: BLE001 - a damaged file: treated as none, the run says why
        return None


def read_json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


@dataclass
class Progress:
    """A run folder as found on disk."""

    epochs: int  # finished epochs (the checkpoint's, else metrics.json's when the checkpoint was dropped)
    checkpoint: bool
    metrics: list[dict]
    lost: bool  # metrics of unfinished epochs but no checkpoint to continue from


def progress(folder: Path, planned: int) -> Progress:
    metrics = read_json(folder / METRICS, [])
    if not isinstance(metrics, list):
        metrics = []
    ep = checkpoint_epoch(folder)
    if ep is not None:
        return Progress(ep, True, metrics[:ep] if len(metrics) >= ep else metrics, False)
    n = len(metrics)
    return Progress(n, False, metrics, 0 < n < planned)


def accuracies(metrics: list[dict]) -> tuple[list[float], list[float]]:
    """Best (over epochs) and last test accuracy of every layer."""
    if not metrics:
        return [], []
    layers = len(metrics[-1]["test_acc"])
    best = [max(m["test_acc"][i] for m in metrics if len(m["test_acc"]) > i) for i in range(layers)]
    return best, list(metrics[-1]["test_acc"])


# --------------------------------------------------------------------------------------------
# the child: localsnn train with memory statistics
# --------------------------------------------------------------------------------------------


class MemoryRecorder:
    """Peak memory of one ``localsnn train`` process, merged into ``memory.json`` with the
    figures of earlier calls (the maximum of each). On CUDA: the allocator's peak while the
    loop trains (``train_peak``: data, model, optimizer state and the learning step's tensors),
    while it evaluates (``eval_peak``), what is allocated when the first epoch starts
    (``resident``: the dataset on the device, the model, the optimizer before its state), and
    the allocator's reserved peak; everywhere the process's peak resident set size."""

    KEYS = ("train_peak", "eval_peak", "resident", "reserved_peak", "rss_peak")

    def __init__(self, path: Path, device: str, deadline: float | None = None, target: int | None = None) -> None:
        self.path = path
        self.device = device
        self.deadline, self.target = deadline, target
        self.mark = 0.0
        self.stopped: str | None = None
        prev = read_json(path, {})
        self.prev = prev if isinstance(prev, dict) else {}
        self.now = {k: 0 for k in self.KEYS}
        self.phase = "setup"
        self.train_started: float | None = None
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _cuda(self):
        import torch

        if not self.device.startswith("cuda") or not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        return torch.cuda, torch.device(self.device)

    def fold(self, reset: bool) -> None:
        """Add the peak since the last reset to the current phase's figure."""
        with self.lock:
            c = self._cuda()
            if c is not None:
                cuda, dev = c
                peak = cuda.max_memory_allocated(dev)
                key = {"train": "train_peak", "eval": "eval_peak"}.get(self.phase)
                if key:
                    self.now[key] = max(self.now[key], peak)
                self.now["reserved_peak"] = max(self.now["reserved_peak"], cuda.max_memory_reserved(dev))
                if reset:
                    cuda.reset_peak_memory_stats(dev)
            import resource

            self.now["rss_peak"] = max(self.now["rss_peak"], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)

    def write(self) -> None:
        self.fold(reset=False)
        with self.lock:
            out = {k: max(int(self.prev.get(k) or 0), int(self.now[k])) for k in self.KEYS}
            out["device"] = self.prev.get("device", "")
            c = self._cuda()
            if c is not None:
                out["device"] = c[0].get_device_name(c[1])
            elif not out["device"]:
                out["device"] = self.device
            out["pid"] = os.getpid()
            out["train_started"] = self.train_started
            out["stopped"] = self.stopped
            out["updated"] = time.time()
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                tmp.write_text(json.dumps(out, indent=1), encoding="utf-8")
                os.replace(tmp, self.path)
            except OSError:  # the folder may not exist yet (a failing run)
                pass

    # -- a loop observer (localsnn.train.loop.add_observer) ---------------------------------

    def on_train_start(self) -> None:
        c = self._cuda()
        with self.lock:
            if c is not None:
                c[0].synchronize(c[1])
                self.now["resident"] = max(self.now["resident"], c[0].memory_allocated(c[1]))
                c[0].reset_peak_memory_stats(c[1])
            self.phase = "train"
            self.train_started = self.mark = time.time()
        self.write()

    def on_evaluate(self, begin: bool) -> None:
        self.fold(reset=True)
        if begin:
            self._before_eval, self.phase = self.phase, "eval"
        else:
            prev = getattr(self, "_before_eval", "eval")
            self.phase = prev if prev != "setup" else "eval"

    def on_checkpoint(self, epoch: int, epochs: int) -> bool:
        """With a deadline: when the next epoch (timed as the last one, checkpoint to
        checkpoint, evaluation included) would end after it, stop the run here (``localsnn
        train`` says "interrupted" and exits with 130; the next call resumes it)."""
        now = time.time()
        wall, self.mark = now - self.mark, now
        target = self.target if self.target is not None else epochs
        if self.deadline is not None and epoch < target:
            need = 1.15 * wall + 2.0 + (0.5 * wall + 3.0 if epoch + 1 == target else 0.0)
            left = self.deadline - now
            if need > left:
                self.stopped = f"after epoch {epoch}: the next would need ~{need:.0f} s, {max(left, 0.0):.0f} s of the budget were left"
                self.write()
                print(f"suite: stopped {self.stopped}", file=sys.stderr, flush=True)
                return True
        return False

    def watch(self, every_s: float = 2.0) -> None:
        def run():
            while not self.stop.wait(every_s):
                self.write()

        threading.Thread(target=run, daemon=True).start()


def _child(argv: list[str]) -> int:
    """``_child MEMORY.json -- train ARGS...``: ``localsnn.cli.main(ARGS)`` with memory figures."""
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python tools/train_suite.py _child MEMORY.json -- train ARGS...", file=sys.stderr)
        return 2
    mem, args = Path(argv[0]), argv[2:]
    device = args[args.index("--device") + 1] if "--device" in args else "cpu"
    target = int(args[args.index("--epochs") + 1]) if "--epochs" in args else None
    deadline = float(os.environ[DEADLINE_ENV]) if os.environ.get(DEADLINE_ENV) else None
    rec = MemoryRecorder(mem, device, deadline, target)
    rc = 1
    try:
        from localsnn.train import loop

        from localsnn import cli

        loop.add_observer(rec)
        rec.watch()
        rc = cli.main(args)
    except KeyboardInterrupt:  # before cli.main caught it (imports)
        print("localsnn: interrupted (before the run started)", file=sys.stderr)
        rc = 130
    finally:
        rec.stop.set()
        rec.write()
    return rc


# --------------------------------------------------------------------------------------------
# the scheduler
# --------------------------------------------------------------------------------------------


@dataclass
class State:
    """A run during one call of the suite."""

    run: Run
    folder: Path
    before: int = 0  # epochs finished before this call
    epochs: int = 0  # epochs finished now
    status: str = "pending"  # pending, running, done, stopped, failed, not started
    reason: str = ""
    proc: subprocess.Popen | None = None
    target: int = 0  # --epochs of this call's process
    argv: list[str] = field(default_factory=list)
    launched: float = 0.0
    ended: float = 0.0
    ck_sig: tuple | None = None
    ck_time: float = 0.0
    epoch_s: float | None = None  # the last epoch's wall time seen (this call or a previous one)
    startup_s: float | None = None
    signalled: float | None = None
    rc: int | None = None
    wall_s: float = 0.0  # this call's
    stderr_tail: list[str] = field(default_factory=list)
    stdout: object = None
    stderr: object = None

    @property
    def planned(self) -> int:
        return self.run.epochs


def _sig(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class Suite:
    """Runs the selected runs of a plan into one folder (see the module docstring)."""

    def __init__(self, plan: Plan, runs: list[Run], out: Path, *, device: str = "cpu", budget_s: float = 480, parallel: int = 1, data_dir: str | None = None,
                 epochs_per_call: int | None = None, state_limit_mb: float = 40, min_start_s: float = 60, grace_s: float = 20, threads: int | None = None,
                 restart_lost: bool = False, poll_s: float = 0.2, log=print) -> None:
        self.plan, self.runs, self.out = plan, runs, out
        self.device, self.budget_s, self.parallel = device, float(budget_s), max(1, int(parallel))
        self.data_dir = str(Path(data_dir).resolve()) if data_dir else None
        self.epochs_per_call = epochs_per_call
        self.state_limit = float(state_limit_mb) * MIB if state_limit_mb else 0.0
        self.min_start_s, self.grace_s, self.poll_s = float(min_start_s), float(grace_s), float(poll_s)
        self.threads = threads if threads else max(1, (os.cpu_count() or 1) // self.parallel)
        self.restart_lost = restart_lost
        self.log = log
        self.record = read_json(out / SUITE_JSON, {})
        if not isinstance(self.record, dict):
            self.record = {}
        self.stop_requested = False
        self.t0 = time.time()
        self.deadline = self.t0 + self.budget_s
        self.states: dict[str, State] = {}

    # -- bookkeeping ------------------------------------------------------------------------

    def _prev(self, name: str) -> dict:
        r = self.record.get("runs", {}).get(name, {})
        return r if isinstance(r, dict) else {}

    def _load_states(self) -> None:
        for run in self.plan.runs:
            folder = self.out / run.name
            p = progress(folder, run.epochs)
            st = State(run, folder, before=p.epochs, epochs=p.epochs)
            prev = self._prev(run.name)
            st.epoch_s = prev.get("epoch_s")
            st.startup_s = prev.get("startup_s")
            if p.epochs >= run.epochs:
                st.status, st.reason = "done", "already finished" if p.epochs else ""
            self.states[run.name] = st

    def _open_bytes(self, extra: State | None = None) -> int:
        """Bytes of checkpoints of unfinished runs (all of the plan's runs in the folder)."""
        total = 0
        for st in self.states.values():
            unfinished = st.epochs < st.planned
            if unfinished and ((st.folder / CHECKPOINT).exists() or st.status == "running" or st is extra):
                total += state_bytes(st.run, self.out)
        return total

    def _need_s(self, st: State) -> float | None:
        if st.epoch_s is None:
            return None
        return (st.startup_s or 20.0) + 1.15 * st.epoch_s + 5.0

    # -- processes ----------------------------------------------------------------------------

    def _launch(self, st: State) -> None:
        run = st.run
        resume = (st.folder / CHECKPOINT).exists()
        target = run.epochs if not self.epochs_per_call else min(run.epochs, st.epochs + self.epochs_per_call)
        st.target = target
        st.reason = ""
        st.argv = run.train_args(device=self.device, epochs=target, config=config_path(run), data_dir=self._data_dir(run), resume=resume)
        st.folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for name in (STDOUT_LOG, STDERR_LOG):
            with open(st.folder / name, "a", encoding="utf-8") as f:
                f.write(f"\n=== {stamp} localsnn {' '.join(st.argv)}\n")
        env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        env[DEADLINE_ENV] = f"{self.deadline - 1.0:.3f}"  # the run stops itself after a checkpoint (MemoryRecorder)
        cmd = [sys.executable, str(Path(__file__).resolve()), "_child", str(Path(run.name) / MEMORY), "--", *st.argv]
        st.stdout = open(st.folder / STDOUT_LOG, "a", encoding="utf-8")  # noqa: SIM115 - open while the run runs, closed in _ended
        st.stderr = open(st.folder / STDERR_LOG, "a", encoding="utf-8")  # noqa: SIM115
        # its own process group: a Ctrl-C at the terminal reaches the suite alone, which then stops
        # the runs itself (SIGINT: the epoch in progress is lost, the checkpoints before it kept);
        # not a new session: the device tool leaves those running until the machine goes back
        st.proc = subprocess.Popen(cmd, cwd=self.out, env=env, stdout=st.stdout, stderr=st.stderr, stdin=subprocess.DEVNULL, process_group=0)
        st.launched = st.ck_time = time.time()
        st.ck_sig = _sig(st.folder / CHECKPOINT)
        st.status = "running"
        self.log(f"[{self._t()}] start {run.name}: epochs {st.epochs} -> {target} of {run.epochs}" + (" (resume)" if resume else ""))

    def _data_dir(self, run: Run) -> str | None:
        if not self.data_dir or run.dataset == "digits":
            return None
        return str(Path(self.data_dir) / run.dataset)

    def _t(self) -> str:
        return f"{time.time() - self.t0:6.1f}s"

    def _signal(self, st: State, sig=signal.SIGINT) -> None:
        if st.proc is not None and st.proc.poll() is None:
            try:
                os.kill(st.proc.pid, sig)
            except ProcessLookupError:
                pass

    def _stop(self, st: State, reason: str) -> None:
        if st.signalled is None:
            st.signalled = time.time()
            st.reason = reason
            self._signal(st)
            self.log(f"[{self._t()}] stop {st.run.name}: {reason}")

    def _saw_checkpoint(self, st: State, now: float) -> None:
        sig = _sig(st.folder / CHECKPOINT)
        if sig is None or sig == st.ck_sig:
            return
        ep = checkpoint_epoch(st.folder)
        if ep is None or ep <= st.epochs:
            return
        mem = read_json(st.folder / MEMORY, {})
        started = mem.get("train_started") if isinstance(mem, dict) and mem.get("pid") == st.proc.pid else None
        first = st.epochs == st.before
        since = (started if first and started and started >= st.launched else st.ck_time)
        if first and started and started >= st.launched:
            st.startup_s = started - st.launched
        st.epoch_s = max(1e-3, (now - since) / (ep - st.epochs))
        st.ck_sig, st.ck_time, st.epochs = sig, now, ep
        metrics = read_json(st.folder / METRICS, [])
        acc = metrics[ep - 1]["test_acc"] if isinstance(metrics, list) and len(metrics) >= ep else []
        self.log(f"[{self._t()}] {st.run.name}: epoch {ep}/{st.planned} ({st.epoch_s:.1f} s/epoch), test " + " ".join(f"{100 * a:.2f}%" for a in acc))

    def _ended(self, st: State, now: float) -> None:
        st.rc = st.proc.returncode
        st.ended = now
        st.wall_s = now - st.launched
        for f in (st.stdout, st.stderr):
            f.close()
        self._saw_checkpoint(st, now)
        p = progress(st.folder, st.planned)
        st.epochs = p.epochs
        mem = read_json(st.folder / MEMORY, {})
        own = mem.get("stopped") if isinstance(mem, dict) and mem.get("pid") == st.proc.pid else None
        if st.rc == 0:
            st.status = "done" if st.epochs >= st.planned else "stopped"
            if st.status == "stopped" and not st.reason:
                st.reason = f"--epochs-per-call {self.epochs_per_call}"
        elif own and st.signalled is None:
            st.status, st.reason = "stopped", own
        elif st.signalled is not None:
            st.status = "stopped"
        else:
            st.status = "failed"
            st.reason = f"exit status {st.rc}"
            st.stderr_tail = _tail(st.folder / STDERR_LOG, 6)
        self.log(f"[{self._t()}] {st.run.name}: {st.status} at epoch {st.epochs}/{st.planned}" + (f" ({st.reason})" if st.reason else ""))

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict[str, State]:
        self.out.mkdir(parents=True, exist_ok=True)
        write_specs(list(self.plan.runs), self.out)
        self._load_states()
        selected = [self.states[r.name] for r in self.runs]
        pending: list[State] = []
        for st in selected:
            if st.status == "done":
                continue
            lost = progress(st.folder, st.planned).lost
            if lost and not self.restart_lost:
                st.status, st.reason = "not started", f"its checkpoint is missing ({st.epochs} epochs in metrics.json): --restart-lost starts it over"
                continue
            if lost:
                for f in (METRICS, "metrics.csv"):
                    if (st.folder / f).exists():
                        os.replace(st.folder / f, st.folder / f"{f}.lost")
                st.epochs = st.before = 0
            pending.append(st)
        # open runs first (their checkpoints travel until they finish), then the plan's order
        pending.sort(key=lambda s: 0 if (s.folder / CHECKPOINT).exists() else 1)
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def request_stop(signum, frame):
            self.stop_requested = True

        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in old:
                signal.signal(sig, request_stop)
        try:
            self._schedule(pending)
        finally:
            if in_main:
                for sig, h in old.items():
                    signal.signal(sig, h)
        return self.states

    def _schedule(self, pending: list[State]) -> None:
        running: list[State] = []
        try:
            self._loop(pending, running)
        finally:  # an error in the suite itself: no run goes on without it
            for st in running:
                if st.proc.poll() is None:
                    self._signal(st, signal.SIGKILL)
                    st.proc.wait()

    def _loop(self, pending: list[State], running: list[State]) -> None:
        while pending or running:
            now = time.time()
            for st in list(running):
                self._saw_checkpoint(st, now)
                if st.proc.poll() is not None:
                    self._ended(st, now)
                    running.remove(st)
            over = now >= self.deadline or self.stop_requested
            if over:
                why = "the budget ended" if not self.stop_requested else "the suite was interrupted"
                for st in running:
                    self._stop(st, f"{why} during epoch {st.epochs + 1} (lost; resumes after epoch {st.epochs})")
                    if st.signalled is not None and now - st.signalled > self.grace_s:
                        self._signal(st, signal.SIGKILL)
                for st in pending:
                    st.status, st.reason = "not started", why
                pending.clear()
            while not over and pending and len(running) < self.parallel:
                st = self._next(pending, running)
                if st is None:
                    break
                pending.remove(st)
                if st.status == "pending":
                    self._launch(st)
                    running.append(st)
            if not running and pending:  # nothing can start: say why for each
                for st in pending:
                    if st.status == "pending":
                        st.status = "not started"
                pending.clear()
            time.sleep(self.poll_s)

    def _next(self, pending: list[State], running: list[State]) -> State | None:
        """The next run to start, or None to wait; runs that cannot start this call are marked."""
        now = time.time()
        left = self.deadline - now
        for st in pending:
            need = self._need_s(st)
            if need is not None and need > left:
                st.status, st.reason = "not started", f"one epoch needs ~{need:.0f} s (startup and the last epoch seen), {left:.0f} s were left"
                return st
            if need is None and left < self.min_start_s:
                st.status, st.reason = "not started", f"{left:.0f} s were left, under --min-start-s {self.min_start_s:g} for a run never timed"
                return st
            data = self._data_dir(st.run)
            if data and not Path(data).is_dir():
                st.status, st.reason = "failed", f"no {data} (python tools/train_suite.py --pack-data DIR, then --data-dir DIR)"
                return st
            if self.state_limit and not (st.folder / CHECKPOINT).exists() and self._open_bytes(extra=st) > self.state_limit:
                st.reason = f"waits: the checkpoints of unfinished runs would pass --state-limit-mb {self.state_limit / MIB:g}"
                continue
            return st
        if not running:
            for st in pending:
                st.status = "not started"
        return None


def _tail(path: Path, n: int) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = text.rsplit("\n=== ", 1)[-1]
    lines = [ln for ln in text.splitlines()[1:] if ln.strip()]
    return lines[-n:]


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def _pct(a: float | None) -> str:
    return "-" if a is None else f"{100 * a:.2f}"


def _mib(b) -> str:
    return f"{b / MIB:,.0f} MiB" if b else "n/a"


def run_record(st: State, prev: dict, device: str) -> dict:
    run = st.run
    p = progress(st.folder, run.epochs)
    best, last = accuracies(p.metrics)
    mem = read_json(st.folder / MEMORY, {})
    mem = mem if isinstance(mem, dict) else {}
    decision = best[-1] if best else None
    finished = p.epochs >= run.epochs
    if run.goal is None:
        met = None
    elif decision is not None and decision >= run.goal:
        met = "yes"
    else:
        met = "no" if finished else "not yet"
    calls = list(prev.get("calls", []))
    if st.argv:
        calls.append({"started": st.launched, "wall_s": round(st.wall_s, 1), "epochs": [st.before, st.epochs], "status": st.status, "reason": st.reason, "rc": st.rc, "argv": ["localsnn", *st.argv]})
    return {
        "name": run.name,
        "run": asdict(run),
        "command": "localsnn " + " ".join(run.train_args(device=_device_of(prev, st, device), config=config_path(run))),
        "epochs_done": p.epochs,
        "epochs_planned": run.epochs,
        "finished": finished,
        "checkpoint": p.checkpoint,
        "best_test_acc": best,
        "last_test_acc": last,
        "test_acc_history": [m["test_acc"] for m in p.metrics],
        "epoch_seconds": [round(m.get("seconds", 0.0), 2) for m in p.metrics],
        "goal": run.goal,
        "met": met,
        "memory": mem,
        "epoch_s": round(st.epoch_s, 2) if st.epoch_s else prev.get("epoch_s"),
        "startup_s": round(st.startup_s, 2) if st.startup_s else prev.get("startup_s"),
        "wall_s": round(float(prev.get("wall_s", 0.0)) + st.wall_s, 1),
        "status": st.status,
        "reason": st.reason,
        "stderr_tail": st.stderr_tail,
        "calls": calls,
    }


def _device_of(prev: dict, st: State, default: str) -> str:
    if st.argv and "--device" in st.argv:
        return st.argv[st.argv.index("--device") + 1]
    return prev.get("device") or default


def relation_lines(plan: Plan, recs: dict[str, dict]) -> list[str]:
    out = []
    for rel in plan.relations:
        vals = [(n, recs.get(n, {}).get("best_test_acc") or [None]) for n in rel.runs]
        accs = [v[-1] for _, v in vals]
        done = all(recs.get(n, {}).get("finished") for n in rel.runs)
        if any(a is None for a in accs):
            verdict = "pending (not every run has an epoch)"
        else:
            holds = all(a > b for a, b in itertools.pairwise(accs))
            verdict = ("holds" if holds else "does not hold") + ("" if done else " so far (runs unfinished)")
        shown = " > ".join(f"{n} {_pct(a)}" for n, a in zip(rel.runs, accs))
        out.append(f"- {rel.title}: {shown}: **{verdict}**")
    return out


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def table(plan: Plan, recs: dict[str, dict], names: list[str], header: str) -> str:
    lines = [f"# Training suite: plan `{plan.name}`", "", header, "",
             "| run | command | epochs | best test acc % (per layer) | last % | goal % | met? | peak GPU memory: train (resident; eval) | wall | status, notes |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        r = recs[name]
        mem = r.get("memory") or {}
        if mem.get("train_peak"):
            memtxt = f"{_mib(mem['train_peak'])} ({_mib(mem.get('resident'))}; {_mib(mem.get('eval_peak'))})"
        else:
            memtxt = "n/a" + (f" (CPU RSS {_mib(mem['rss_peak'])})" if mem.get("rss_peak") else "")
        best = " / ".join(_pct(a) for a in r["best_test_acc"]) or "-"
        last = " / ".join(_pct(a) for a in r["last_test_acc"]) or "-"
        notes = r["status"] + (f": {r['reason']}" if r["reason"] else "")
        if r.get("stderr_tail"):
            notes += "<br>" + "<br>".join(r["stderr_tail"])
        wall = f"{r['wall_s']:.0f} s" + (f", {r['epoch_s']:.1f} s/epoch" if r.get("epoch_s") else "")
        lines.append("| " + " | ".join(_cell(c) for c in (
            r["name"], f"`{r['command']}`", f"{r['epochs_done']}/{r['epochs_planned']}", best, last,
            _pct(r["goal"]) if r["goal"] else "-", r["met"] or "-", memtxt, wall, notes)) + " |")
    rel = relation_lines(plan, recs)
    if rel:
        lines += ["", "Relations between runs (best test accuracy of the decision layer):", "", *rel]
    lines += ["", ("Accuracies: the test set, learning off, after each epoch; best over the epochs done, and the last. "
              "The last layer's is the network's decision, which the goal is checked against. Peak GPU memory: torch's allocator "
              "while the run learns (its dataset on the GPU, the model and the optimizer included), what was allocated when the "
              "first epoch started, and while it evaluates; the maximum over every call. Commands run in the suite folder "
              "(`specs/` holds the specs the suite writes); the suite adds `--resume` when the run's folder holds a checkpoint, "
              "`--data-dir` when it was given one, and `--epochs` of fewer epochs with `--epochs-per-call`.")]
    return "\n".join(lines) + "\n"


def write_report(suite: Suite, states: dict[str, State], names: list[str], *, call: bool = True) -> tuple[str, dict]:
    prev_runs = suite.record.get("runs", {}) if isinstance(suite.record.get("runs"), dict) else {}
    recs = {}
    for name, st in states.items():
        prev = prev_runs.get(name, {})
        if not st.argv and prev and name not in names:  # not run in this call: its last record, updated from the folder
            recs[name] = prev | {k: v for k, v in run_record(st, prev, suite.device).items() if k in ("epochs_done", "finished", "checkpoint", "best_test_acc", "last_test_acc", "test_acc_history", "memory", "met")}
            continue
        recs[name] = run_record(st, prev, suite.device)
        recs[name]["device"] = _device_of(prev, st, suite.device)
    end = time.time()
    calls = list(suite.record.get("calls", []))
    if call:
        calls.append({"started": suite.t0, "wall_s": round(end - suite.t0, 1), "device": suite.device, "budget_s": suite.budget_s, "parallel": suite.parallel, "runs": names})
    if calls:
        c = calls[-1]
        header = (f"Last call: {time.strftime('%Y-%m-%d %H:%M', time.localtime(c['started']))}, device `{c['device']}`" + _gpu_name(recs)
                  + f", budget {c['budget_s']:.0f} s, {c['parallel']} at once, {c['wall_s']:.0f} s; calls so far: {len(calls)}. {suite.plan.about}")
    else:
        header = f"No call yet. {suite.plan.about}"
    text = table(suite.plan, recs, [r.name for r in suite.plan.runs], header)
    doc = {"format": 1, "plan": suite.plan.name, "calls": calls, "runs": recs, "relations": relation_lines(suite.plan, recs)}
    _atomic(suite.out / SUITE_JSON, json.dumps(doc, indent=1))
    _atomic(suite.out / SUITE_MD, text)
    return text, doc


def _gpu_name(recs: dict) -> str:
    names = {(r.get("memory") or {}).get("device", "") for r in recs.values()}
    names = sorted(n for n in names if n and not n.startswith("cpu") and not n.startswith("cuda"))
    return f" ({', '.join(names)})" if names else ""


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# data, bundles
# --------------------------------------------------------------------------------------------


def pack_data(dest: Path, datasets: list[str], log=print) -> list[Path]:
    """Gzip the cached IDX files of ``datasets`` into ``dest/<dataset>/`` (fetched first if the
    cache lacks them), copy the pure-Python ``tomli_w`` into ``dest/site/``, and check that the
    loader reads each packed folder. Returns the written files."""
    from localsnn import data

    written = []
    for name in datasets:
        if name == "digits":
            continue
        if name not in ("mnist", "fashion"):
            raise SuiteError(f"--pack-data: unknown dataset {name!r}; allowed: mnist, fashion")
        data.load(name, progress=False)  # into the cache, fetched once
        src = data.cache_dir() / name
        out = dest / name
        out.mkdir(parents=True, exist_ok=True)
        for f in data.IDX_FILES:
            target = out / f"{f}.gz"
            with open(src / f, "rb") as fi, gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as fo:
                shutil.copyfileobj(fi, fo, 1 << 20)
            written.append(target)
        if name == "fashion":
            shutil.copy2(src / data.MANIFEST, out / data.MANIFEST)
            written.append(out / data.MANIFEST)
        ds = data.load(name, out, progress=False)
        log(f"{name}: {sum(p.stat().st_size for p in out.iterdir()) / MIB:.1f} MiB in {out}/, read back: {ds.describe()}")
    try:
        import tomli_w

        site = dest / "site" / "tomli_w"
        if site.exists():
            shutil.rmtree(site)
        shutil.copytree(Path(tomli_w.__file__).parent, site, ignore=shutil.ignore_patterns("__pycache__"))
        written += sorted(site.rglob("*"))
        log(f"tomli_w {getattr(tomli_w, '__version__', '')}: {site}/ (the GPU machine's python lacks it: PYTHONPATH={dest / 'site'})")
    except ImportError:  # pragma: no cover - localsnn itself needs it
        pass
    return written


def bundle(out: Path, dest: Path, recs: dict[str, dict], log=print) -> list[Path]:
    """Pack the suite folder into ``dest/suite-bundle.tgz.NNN`` (parts of at most 15 MiB),
    without the checkpoints of finished runs, and copy suite.md and suite.json beside them."""
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob(BUNDLE_PREFIX + "*"):
        old.unlink()
    finished = {n for n, r in recs.items() if r.get("finished")}
    parts: list[Path] = []

    class Parts:
        def __init__(self):
            self.f = None
            self.size = 0

        def write(self, b):
            b = memoryview(b)
            total = len(b)
            while len(b):
                if self.f is None or self.size >= BUNDLE_PART:
                    if self.f:
                        self.f.close()
                    parts.append(dest / f"{BUNDLE_PREFIX}{len(parts):03d}")
                    self.f, self.size = open(parts[-1], "wb"), 0  # noqa: SIM115 - closed at the next part or close()
                n = min(len(b), BUNDLE_PART - self.size)
                self.f.write(b[:n])
                self.size += n
                b = b[n:]
            return total

        def close(self):
            if self.f:
                self.f.close()

    def keep(info: tarfile.TarInfo):
        p = Path(info.name)
        if p.name.endswith(".tmp") or p.name == "__pycache__":
            return None
        if p.name == CHECKPOINT and len(p.parts) == 3 and p.parts[1] in finished:
            return None
        return info

    sink = Parts()
    with tarfile.open(fileobj=sink, mode="w|gz") as tar:  # type: ignore[arg-type]
        tar.add(out, arcname="suite", filter=keep)
    sink.close()
    for f in (SUITE_MD, SUITE_JSON):
        if (out / f).exists():
            shutil.copy2(out / f, dest / f)
    total = sum(p.stat().st_size for p in parts)
    log(f"bundle: {len(parts)} part(s), {total / MIB:.1f} MiB in {dest}/ (checkpoints of {len(finished)} finished run(s) left out)")
    if total > BUNDLE_WARN or len(parts) > 6:
        log(f"bundle: WARNING: {total / MIB:.1f} MiB in {len(parts)} parts is more than the device tool brings back (8 files, 64 MiB): lower --state-limit-mb")
    return parts


def unbundle(src: Path, out: Path, log=print) -> list[str]:
    """Put a bundle (the parts in ``src``) back as the suite folder ``out``: each run folder in
    the bundle replaces the one there; suite.json, suite.md and specs/ are replaced too."""
    parts = sorted(src.glob(BUNDLE_PREFIX + "*"))
    if not parts:
        raise SuiteError(f"--unbundle: no {BUNDLE_PREFIX}NNN files in {src}")
    with tempfile.TemporaryDirectory() as tmp:
        whole = Path(tmp) / "bundle.tgz"
        with open(whole, "wb") as f:
            for p in parts:
                with open(p, "rb") as fp:
                    shutil.copyfileobj(fp, f)
        try:
            with tarfile.open(whole, "r:gz") as tar:
                members = tar.getmembers()
                for m in members:
                    pp = Path(m.name)
                    if pp.is_absolute() or ".." in pp.parts or not pp.parts or pp.parts[0] != "suite" or not (m.isfile() or m.isdir()):
                        raise SuiteError(f"--unbundle: {m.name!r} is not a member a bundle holds")
                tops = sorted({Path(m.name).parts[1] for m in members if len(Path(m.name).parts) > 1})
                stage = Path(tmp) / "x"
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(stage, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tar.extractall(stage)
        except (tarfile.TarError, EOFError, OSError) as err:
            raise SuiteError(f"--unbundle: the parts in {src} are not a whole bundle ({err}); fetch every part") from None
        out.mkdir(parents=True, exist_ok=True)
        for name in tops:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(stage / "suite" / name), str(target))
    log(f"unbundled {len(parts)} part(s) into {out}/: {', '.join(tops)}")
    return tops


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python tools/train_suite.py", description="Run a plan of 'localsnn train' runs (the papers' accuracy runs) within a time budget, resuming each from its checkpoint; a table of the results.")
    p.add_argument("--plan", default="paper", help=f"{', '.join(PLAN_NAMES)}, or a TOML plan file (default paper)")
    p.add_argument("--only", metavar="NAME,...", help="only these runs of the plan")
    p.add_argument("-o", "--out", help="the suite folder: one folder per run, suite.md, suite.json")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N, for every run")
    p.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of this call in seconds (default 480): no epoch is started that would end after it")
    p.add_argument("--parallel", type=int, default=1, help="runs at once (default 1; 4 on one GPU)")
    p.add_argument("--data-dir", help="a folder made by --pack-data: its mnist/ (or fashion/) is each run's --data-dir (else the loader's cache)")
    p.add_argument("--epochs-per-call", type=int, help="at most this many more epochs per run in this call")
    p.add_argument("--state-limit-mb", type=float, default=40.0, help="start no new run while the checkpoints of unfinished runs would pass this (default 40; 0: no limit)")
    p.add_argument("--min-start-s", type=float, default=60.0, help="start a run never timed only with this much budget left (default 60)")
    p.add_argument("--grace-s", type=float, default=20.0, help="after stopping a run at the end of the budget, kill it after this long (default 20)")
    p.add_argument("--threads", type=int, help="CPU threads per run (OMP_NUM_THREADS; default cores / --parallel)")
    p.add_argument("--restart-lost", action="store_true", help="start over the runs whose checkpoint is missing (their old metrics are kept as metrics.json.lost)")
    p.add_argument("--bundle", metavar="DIR", help="afterwards pack the suite folder into DIR (15 MiB parts, no checkpoints of finished runs) with suite.md and suite.json")
    p.add_argument("--list", action="store_true", help="print the plan's runs and their commands, run nothing")
    p.add_argument("--report", action="store_true", help="write and print the table from the suite folder, run nothing")
    p.add_argument("--pack-data", metavar="DIR", help="gzip the MNIST IDX files (about 11 MB) and tomli_w into DIR for the GPU machine, run nothing")
    p.add_argument("--datasets", default="mnist", help="with --pack-data: comma-separated datasets (default mnist)")
    p.add_argument("--unbundle", metavar="SRC", help="put a bundle from SRC back into the suite folder -o, run nothing")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["_child"]:
        return _child(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(args)
    except LocalsnnError as err:
        print(f"suite: error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.pack_data:
        pack_data(Path(args.pack_data), [s.strip() for s in args.datasets.split(",") if s.strip()])
        return 0
    if args.unbundle:
        if not args.out:
            raise SuiteError("--unbundle needs -o, the suite folder to put it into")
        unbundle(Path(args.unbundle), Path(args.out))
        return 0
    plan = load_plan(args.plan)
    check_plan(plan)
    runs = select(plan, args.only)
    for name, v in (("--parallel", args.parallel), ("--epochs-per-call", args.epochs_per_call or 1), ("--threads", args.threads or 1)):
        if v < 1:
            raise SuiteError(f"{name} must be at least 1, not {v}")
    if args.budget_s <= 0:
        raise SuiteError(f"--budget-s must be positive, not {args.budget_s:g}")
    if args.list:
        for r in runs:
            goal = f", goal {100 * r.goal:.1f} %" if r.goal else ""
            print(f"{r.name}: {r.epochs} epochs{goal}; {r.source}\n    localsnn {' '.join(r.train_args(device=args.device, config=config_path(r)))}")
        return 0
    if not args.out:
        raise SuiteError("-o DIR is needed: the suite folder")
    if not args.report and not args.device.startswith("cpu"):
        from localsnn.train import loop

        loop.check_device(args.device)
    out = Path(args.out)
    suite = Suite(plan, runs, out, device=args.device, budget_s=args.budget_s, parallel=args.parallel, data_dir=args.data_dir, epochs_per_call=args.epochs_per_call,
                  state_limit_mb=args.state_limit_mb, min_start_s=args.min_start_s, grace_s=args.grace_s, threads=args.threads, restart_lost=args.restart_lost)
    if args.report:
        out.mkdir(parents=True, exist_ok=True)
        suite._load_states()
        for st in suite.states.values():
            prev = suite._prev(st.run.name)
            st.status, st.reason = prev.get("status", st.status), prev.get("reason", "")
            st.stderr_tail = prev.get("stderr_tail", [])
        states = suite.states
        text, doc = write_report(suite, states, [], call=False)
    else:
        states = suite.run()
        text, doc = write_report(suite, states, [r.name for r in runs])
    print(text, end="")
    if args.bundle:
        bundle(out, Path(args.bundle), doc["runs"])
    failed = [r for r in runs if states[r.name].status == "failed"] if not args.report else []
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
