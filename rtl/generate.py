"""``localsnn generate``: the network as Verilog, its initial memory contents and a JSON
description of its ports, registers and memory map.

Everything written is a function of the spec, the lanes and the weights only, so two runs give
byte-identical files (``emit_src=False`` keeps source locations out of the Verilog).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from amaranth import Value
from amaranth.back import rtlil, verilog
from amaranth.lib import wiring

from localsnn.golden.params import Params, init_params
from localsnn.chip import INDEX_BITS, REGISTERS, event_index_bits, lfsr_stream_names
from localsnn.rtl.top import Network
from localsnn.spec import NetworkSpec, dumps


def strip_host_init(rtlil_text: str) -> str:
    """The RTLIL of a design without the initial contents of its SPRAM memories (those
    ``LaneMemory(single_port=True)`` marks ``ram_style "huge"``): SPRAM has none, and Yosys
    maps no memory with initial contents there, but Amaranth writes a ``$meminit_v2`` cell for
    every memory, all-zero contents included. Other memories keep theirs."""
    out: list[str] = []
    module: list[str] = []
    for line in rtlil_text.splitlines(keepends=True):
        if module or line.startswith("module "):
            module.append(line)
            if line.rstrip("\n") == "end":
                out += _without_huge_init(module)
                module = []
        else:
            out.append(line)
    return "".join(out + module)


def _without_huge_init(lines: list[str]) -> list[str]:
    """One RTLIL module: drop the ``$meminit_v2`` cells of its ``ram_style "huge"`` memories."""
    huge, attrs = set(), []
    for line in lines:
        s = line.strip()
        if s.startswith("attribute "):
            attrs.append(s)
            continue
        if s.startswith("memory ") and 'attribute \\ram_style "huge"' in attrs:
            name = s.split()[-1]  # \\name; a MEMID parameter writes it as the string "\\\\name"
            huge.add('"' + name.replace("\\", "\\\\") + '"')
        attrs = []
    if not huge:
        return lines
    out, cell = [], None
    for line in lines:
        if cell is None and line.strip().startswith("cell $meminit_v2 "):
            cell = [line]
            continue
        if cell is None:
            out.append(line)
            continue
        cell.append(line)
        if line.strip() == "end":
            memid = next((c.split(None, 2)[2].strip() for c in cell if c.strip().startswith("parameter \\MEMID ")), None)
            if memid not in huge:
                out += cell
            cell = None
    return out


def verilog_text(top, name: str) -> str:
    """``top`` as Verilog, byte-identical between runs (no source locations), its SPRAM
    memories without initial contents (:func:`strip_host_init`), its combinational blocks
    evaluated at time 0 in every language mode (:func:`trigger_by_initial`)."""
    return trigger_by_initial(verilog._convert_rtlil_text(strip_host_init(rtlil.convert(top, name=name, emit_src=False))))


#: Yosys's time-0 trigger: ``reg \$auto$verilog_backend.cc:2355:dump_module$1 = 0;`` in every
#: module, tested (``if (...) begin end``) at the top of every ``always @*`` block
_TRIGGER = re.compile(r"^(?P<indent>[ \t]*)reg (?P<name>\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) *= *0;$", re.M)


def trigger_by_initial(text: str) -> str:
    """Yosys's Verilog with its time-0 trigger set by an ``initial`` statement instead of the
    declaration's initialiser.

    Yosys reads a trigger register at the top of every ``always @*`` block, declared
    ``reg T = 0;``, so that the change of T at time 0 runs each block once (otherwise a block
    whose inputs are constant would never run and its outputs stay X). In Verilog-2005 the
    initialiser is such a change (``initial T = 0``); in SystemVerilog (IEEE 1800-2017 §6.8) a
    variable's initialiser is applied before any process starts, so no block ever sees it:
    under Icarus's ``-g2012`` (cocotb's default) every combinational output stayed X. As an
    ``initial`` statement the assignment is an event in both language modes; Icarus starts the
    ``always`` processes before the ``initial`` ones at time 0, so each block is waiting on it
    (``tests/sim/test_icarus.py``: golden = RTL under ``-g2012`` and ``-g2005``). Verilator and
    Yosys read both forms the same way."""
    return _TRIGGER.sub(lambda m: f"{m['indent']}reg {m['name']};\n{m['indent']}initial {m['name']}= 1'b0;", text)


def _ports(net: Network) -> list[dict]:
    """Verilog ports of the top (Amaranth joins interface member names with ``__``)."""
    out = [{"name": "clk", "direction": "in", "width": 1}, {"name": "rst", "direction": "in", "width": 1, "meaning": "synchronous, active high"}]
    for path, member, value in net.signature.flatten(net):
        out.append({"name": "__".join(str(p) for p in path), "direction": "in" if member.flow == wiring.In else "out", "width": len(Value.cast(value))})
    return out


def _memory_images(net: Network) -> dict[str, list[str]]:
    """Initial contents of every memory the engines initialise, as hex words (lane 0 in the
    low bits), one list per memory."""
    images = {}
    for i, layer in enumerate(net.layers):
        lp = layer.params
        L = layer.lanes
        for name, arr, fmt, per_row in (
            ("w", lp.w, layer.g.wfmt, layer.wpr),
            ("clf_w", lp.clf_w, layer.g.cfmt, layer.cpr),
            ("bias", None if lp.bias is None else lp.bias[None, :], layer.g.wfmt, layer.wpr),
            ("feedback", lp.feedback, getattr(layer.g, "hfmt", None), layer.cpr),
        ):
            if arr is None or fmt is None:
                continue
            words = []
            mask = (1 << fmt.width) - 1
            for row in arr:
                for w in range(per_row):
                    value = 0
                    for k in range(L):
                        c = w * L + k
                        v = int(row[c]) if c < len(row) else 0
                        value |= (v & mask) << (k * fmt.width)
                    words.append(f"{value:0{(fmt.width * L + 3) // 4}x}")
            images[f"layer{i}.{name}"] = words
    return images


def _input_protocol(spec) -> str:
    """The input stream's words in words (localsnn.chip.input_words)."""
    head = "per sample: the label word (>= classes: no label), then "
    if not spec.encoding.per_step:
        return head + "one word per input: the pixel quantized into the encoding format"
    ev = "the input index" if spec.encoding.binary else f"index | value << {event_index_bits(spec)} (value 1..{spec.encoding.format.max_int}, the bin's count)"
    return head + f"for each of the {spec.timesteps} steps, taken when the first layer is ready for that step: the number k of events, then k event words, {ev}"


def generate(spec: NetworkSpec, out: str | Path, *, lanes: int = 4, params: Params | None = None, name: str = "localsnn_top", spram: bool = False, pipeline: str = "full") -> dict:
    """Write ``<name>.v``, ``<name>.json`` and ``init/<memory>.hex`` into ``out``; return the
    JSON description. ``spram``: the weights in single-port memories without initial contents
    (see :class:`~localsnn.rtl.top.Network`); their ``init`` files are what the host writes.
    ``pipeline``: the phases' pipeline (``localsnn.chip.PIPELINES``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    params = params if params is not None else init_params(spec)
    net = Network(spec, lanes=lanes, params=params, spram=spram, pipeline=pipeline)
    text = verilog_text(net, name)
    (out / f"{name}.v").write_text(text)
    images = _memory_images(net)
    init = out / "init"
    init.mkdir(exist_ok=True)
    for mem, words in images.items():
        (init / f"{mem}.hex").write_text("\n".join(words) + "\n")
    desc = {
        "top": name,
        "spec": spec.name,
        "spec_toml": dumps(spec),
        "lanes": lanes,
        "spram": spram,
        "pipeline": pipeline,
        "clock": {"port": "clk", "reset": "rst (synchronous, active high)"},
        "ports": _ports(net),
        "streams": {
            "i": {"payload_width": net.in_width, "protocol": _input_protocol(net.spec)},
            "o": {"payload_width": 1 + net.out_data, "protocol": f"bit {net.out_data} = 0: a STEP word after each time step, bits 0..{net.spec.classes - 1} = the last classifier's spikes; bit {net.out_data} = 1: the DECISION word, the winning class"},
        },
        "bus": {"addr_bits": len(net.bus.addr), "protocol": f"hold addr (and w_data) with w_en or r_en until ack; r_data is valid with ack; addr = region << {INDEX_BITS} | index"},
        "registers": {k: {"index": v[0], "access": v[1], "meaning": v[2]} for k, v in REGISTERS.items()},
        "lfsr_streams": [{"register": REGISTERS["LFSR_BASE"][0] + k, "name": n, "seed": net.seeds[n]} for k, n in enumerate(lfsr_stream_names(spec))],
        "memory_map": net.memory_map(),
        "init_files": {mem: f"init/{mem}.hex" for mem in images},
        "verilog_sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    (out / f"{name}.json").write_text(json.dumps(desc, indent=1, sort_keys=True) + "\n")
    return desc
