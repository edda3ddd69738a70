"""The chip's contract (``localsnn.chip``): pure Python, and what the RTL elaborates."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from amaranth import Shape
from amaranth.hdl import Fragment

from localsnn import chip
from localsnn import spec as S
from localsnn.rtl.top import Network
from localsnn.sim.configs import matrix_spec, random_spec


def test_the_contract_imports_without_amaranth_and_the_host_without_rtl(tmp_path):
    code = ("import sys, localsnn.chip, localsnn.board; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'amaranth' or m.startswith(('localsnn.rtl', 'localsnn.sim'))]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # the installed package


def _specs():
    out = [(name, S.load(name)) for name in ("digits", "digits-fell", "digits-decolle")]
    out += [(f"two-{rule}", matrix_spec(rule, "rate", "two")) for rule in ("ell", "fell", "decolle")]
    out += [(f"random-{k}", random_spec(k)[0]) for k in (2, 5, 11)]
    return out


@pytest.mark.parametrize(("name", "spec"), _specs(), ids=[n for n, _ in _specs()])
@pytest.mark.parametrize("lanes", [1, 4])
def test_memory_map_is_what_the_rtl_elaborates(name, spec, lanes):
    """Every region of ``chip.memory_map`` is a memory of the elaborated layer on the bus
    (``bus_memories``), with that many lanes, room for every index the map lets through, and
    elements as wide as the entry's format; and the layer has no bus memory the map lacks."""
    for spram in (False, True):
        net = Network(spec, lanes=lanes, spram=spram)
        Fragment.get(net, None)  # elaborates every layer
        mm = chip.memory_map(spec, lanes, spram)
        assert net.memory_map() == mm
        for i, layer in enumerate(net.layers):
            regions = chip.layer_regions(i)
            key_of = {r: k for k, r in regions.items()}
            entries = [e for e in mm if e.get("region") and key_of.get(e["region"]) is not None and e["name"].startswith(f"layer{i}.")]
            assert {key_of[e["region"]] for e in entries} == set(layer.bus_memories), (name, i)
            for e in entries:
                mem = layer.bus_memories[key_of[e["region"]]]
                # element k of the region is lane k mod mem.lanes of word k // mem.lanes
                assert mem.lanes in (1, lanes), e["name"]
                assert mem.depth * mem.lanes >= chip.region_elements(e), e["name"]
                if len(e["shape"]) == 2:  # rows of whole words, each at least a row long
                    assert e["row_stride"] % mem.lanes == 0 and e["row_stride"] >= e["shape"][1], e["name"]
                m = re.fullmatch(r"([su])(\d+)\.(\d+)", e["format"])
                if m:
                    assert Shape.cast(mem.elem).width == int(m.group(2)), e["name"]
                    assert Shape.cast(mem.elem).signed == (m.group(1) == "s"), e["name"]
                assert e.get("host_init", False) == (spram and key_of[e["region"]] in chip.SPRAM_KEYS[chip.engine(spec, i)])
            assert tuple(layer.PHASES) == chip.PHASES[chip.engine(spec, i)]


def test_addresses_and_registers():
    assert chip.address(3, 5) == 3 << chip.INDEX_BITS | 5
    assert chip.BUS_ADDR_BITS == 30
    assert chip.REGISTERS["ID"][2].startswith("0x4C534E4E")
    assert chip.layer_regions(1)["w"] == 1 + chip.LAYER_REGIONS
    assert chip.to_signed(0xFFFFFFFF) == -1 and chip.to_signed(5) == 5
