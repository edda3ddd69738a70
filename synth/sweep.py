"""``localsnn synth --sweep``: resources and Fmax of a board build as functions of the hidden
layer's size, the lanes and the learning rule, as a CSV file, a markdown table and a plot."""

from __future__ import annotations

import csv
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from localsnn.synth.boards import resolve_board
from localsnn.synth.flow import build
from localsnn.synth.report import DoesNotFitError, label

from localsnn import rules as rulesmod
from localsnn import spec as specmod
from localsnn.errors import LocalsnnError, SpecError

#: the defaults: small enough to finish in about half an hour on two cores
DEFAULT_SIZES = (16, 32)
DEFAULT_LANES = (1, 4)
DEFAULT_RULES = rulesmod.names(learns=True, neuron="lif")

#: the shipped spec each rule starts from (its formats suit the rule: localsnn.rules)
BASE_SPECS = {r.name: r.digits_spec for r in rulesmod.RULES.values()}

#: the logic resource of a family the sweep plots
LOGIC = {"ice40": "ICESTORM_LC", "ecp5": "TRELLIS_COMB"}

COLUMNS = ("rule", "hidden", "lanes", "fits", "logic_used", "logic_available", "ff_used", "bram_used", "bram_available", "spram_used", "dsp_used", "dsp_available", "fmax_mhz", "target_mhz", "met", "build_s", "note")


def sweep_spec(rule: str, hidden: int) -> specmod.NetworkSpec:
    """The shipped digits spec of ``rule`` (64 inputs, 10 classes) with ``hidden`` neurons."""
    if rule not in BASE_SPECS:
        raise LocalsnnError(f"unknown rule {rule!r} for the sweep; allowed: {', '.join(BASE_SPECS)}")
    base = specmod.load(BASE_SPECS[rule]).with_rule(rule)
    first = base.layers[0]
    # the classifier sums up to `hidden` weights: its accumulator grows to what that needs
    clf = first.classifier
    need = (hidden * clf.weight.max_abs).bit_length() + 1
    clf = dataclasses.replace(clf, accumulator=max(clf.accumulator, need))
    layers = (dataclasses.replace(first, size=hidden, classifier=clf),) + base.layers[1:]
    return dataclasses.replace(base, name=f"digits-{rule}-h{hidden}", layers=layers)


def _ff(rep) -> int:
    r = rep.resource("TRELLIS_FF") or rep.resource("yosys:SB_DFF")
    return r.used if r else 0


def _pair(rep, names) -> tuple[int | str, int | str]:
    for n in names:
        r = rep.resource(n)
        if r:
            return r.used, r.available
    return "", ""


def run_sweep(
    board: str,
    out_dir: str | Path,
    *,
    sizes=DEFAULT_SIZES,
    lanes_list=DEFAULT_LANES,
    rules=DEFAULT_RULES,
    target_mhz: float | None = None,
    use_cache: bool = True,
    progress: Callable[[str], None] = print,
    spram: str = "auto",
) -> list[dict]:
    """Build every (rule, size, lanes) point (cached builds are reused; ``spram`` as in
    :func:`~localsnn.synth.flow.build`) and write ``sweep.csv``, ``sweep.md`` and
    ``sweep.png`` into ``out_dir``; return the rows."""
    b = resolve_board(board)
    b.check_supported()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logic = LOGIC.get(b.family, "")
    rows = []
    t0 = time.perf_counter()
    points = [(r, n, lanes) for r in rules for n in sizes for lanes in lanes_list]
    for k, (rule, n, lanes) in enumerate(points, 1):
        progress(f"[{k}/{len(points)}] rule {rule}, hidden {n}, lanes {lanes} ({time.perf_counter() - t0:.0f} s so far)")
        row = dict.fromkeys(COLUMNS, "")
        row.update(rule=rule, hidden=n, lanes=lanes)
        t_point = time.perf_counter()
        try:
            s = sweep_spec(rule, n)
            rep = build(s, b.name, out / f"{rule}-h{n}-l{lanes}", lanes=lanes, target_mhz=target_mhz, use_cache=use_cache, progress=progress, spram=spram)
        except DoesNotFitError as err:
            row["fits"] = "no"
            u = err.util.get(logic)
            if u:
                row["logic_used"], row["logic_available"] = u
            row["note"] = ("at least (Yosys's count): " if err.source == "yosys" else "") + "; ".join(f"{label(r)}: {nd}/{a}" for r, nd, a in err.over)
            row["build_s"] = round(time.perf_counter() - t_point)
            rows.append(row)
            progress(f"  does not fit: {row['note']}")
            continue
        except SpecError as err:
            row["fits"] = "-"
            row["note"] = f"no valid spec: {err}"
            rows.append(row)
            progress(f"  skipped: {row['note']}")
            continue
        r = rep.resource(logic)
        row.update(
            fits="yes", logic_used=r.used if r else "", logic_available=r.available if r else "", ff_used=_ff(rep),
            fmax_mhz=round(rep.fmax_mhz, 1) if rep.fmax_mhz else "", target_mhz=rep.target_mhz, met="yes" if rep.met else "no",
            build_s=round(rep.build_seconds), note="; ".join(rep.options[k] for k in ("dsp_fallback", "spram_auto") if rep.options.get(k)),
        )
        sp = rep.resource("ICESTORM_SPRAM")
        row["spram_used"] = sp.used if sp else ""
        row["bram_used"], row["bram_available"] = _pair(rep, ("ICESTORM_RAM", "DP16KD"))
        row["dsp_used"], row["dsp_available"] = _pair(rep, ("ICESTORM_DSP", "MULT18X18D"))
        rows.append(row)
    write_csv(rows, out / "sweep.csv")
    (out / "sweep.md").write_text(markdown_table(rows, b.name, b.device, logic))
    plot(rows, out / "sweep.png", f"{b.name} ({b.device})", logic)
    progress(f"sweep done in {time.perf_counter() - t0:.0f} s: {out / 'sweep.csv'}, {out / 'sweep.md'}, {out / 'sweep.png'}")
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)


def markdown_table(rows: list[dict], board: str, device: str, logic: str) -> str:
    head = f"# Synthesis sweep: {board} ({device})\n\nlogic = {label(logic)} [{logic}]; a design that does not fit shows what it needed.\n\n"
    cols = ("rule", "hidden", "lanes", "fits", "logic", "FF", "BRAM", "SPRAM", "DSP", "Fmax MHz", "target MHz", "met", "build s", "note")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        logic_cell = f"{r['logic_used']}/{r['logic_available']}" if r["logic_used"] != "" else ""
        bram = f"{r['bram_used']}/{r['bram_available']}" if r["bram_used"] != "" else ""
        dsp = f"{r['dsp_used']}/{r['dsp_available']}" if r["dsp_used"] != "" else ""
        vals = (r["rule"], r["hidden"], r["lanes"], r["fits"], logic_cell, r["ff_used"], bram, r["spram_used"], dsp, r["fmax_mhz"], r["target_mhz"], r["met"], r["build_s"], r["note"])
        lines.append("| " + " | ".join(str(v) for v in vals) + " |")
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, title: str, logic: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = sorted({(r["rule"], r["lanes"]) for r in rows})
    for rule, lanes in series:
        pts = sorted((r for r in rows if r["rule"] == rule and r["lanes"] == lanes and r["logic_used"] != ""), key=lambda r: r["hidden"])
        if pts:
            ax1.plot([p["hidden"] for p in pts], [100 * p["logic_used"] / p["logic_available"] for p in pts], "o-", label=f"{rule}, lanes {lanes}")
        fpts = [p for p in pts if p["fmax_mhz"] != ""]
        if fpts:
            ax2.plot([p["hidden"] for p in fpts], [p["fmax_mhz"] for p in fpts], "o-", label=f"{rule}, lanes {lanes}")
    ax1.axhline(100, color="k", lw=0.8, ls="--")
    ax1.set_xlabel("hidden neurons")
    ax1.set_ylabel(f"{label(logic)} used, % of the device")
    ax1.set_title(title)
    targets = {r["target_mhz"] for r in rows if r["target_mhz"] != ""}
    for t in targets:
        ax2.axhline(t, color="k", lw=0.8, ls="--")
    ax2.set_xlabel("hidden neurons")
    ax2.set_ylabel("Fmax, MHz (dashed: target)")
    ax2.set_title("Fmax (designs that fit)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
