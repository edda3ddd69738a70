"""What every layer engine shares: the common ports, the debug-bus port, and the building
blocks of its phases (spike-list compaction, live-row tracking)."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from localsnn.chip import layer_memory_map
from localsnn.golden.model import LayerConstants
from localsnn.golden.params import LayerParams
from localsnn.rtl.common import LaneMemory, dbg_signature, log2_exact
from localsnn.rtl.fixed import fit, shift_round_stages
from localsnn.rtl.neuron import surrogate_stages
from localsnn.spec import NetworkSpec


def _wire(m: Module, value, name: str) -> Signal:
    """A signal carrying ``value``: an expression used in several places is built once (Amaranth
    does not share equal subexpressions)."""
    value = Value.cast(value)
    sig = Signal(value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


def _shift_register(m: Module, lr_shift, base: int, name: str) -> Signal:
    """``lr_shift + base`` (a learning-rate shift, >= 0 for every allowed ``lr_shift``), registered:
    the bus sets ``lr_shift`` while the layer is idle, and the phases read the sum as a constant."""
    sig = Signal(6, name=name)
    m.d.sync += sig.eq((lr_shift + base)[:6])
    return sig


def _tree_sum(values) -> Value:
    """The sum of ``values`` as a balanced tree of adders (depth log2 of their number, not their
    number: Python's ``sum`` chains them)."""
    values = [Value.cast(v) for v in values]
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i] for i in range(0, len(values), 2)]
    return values[0]


def _times(value, k: int) -> Value:
    """``value * k`` for a constant ``k >= 0`` (a row's address: row x words per row) as a sum
    of shifted copies of ``value``: as a multiplication Yosys's ``-dsp`` would give it an
    SB_MAC16 once the product is 11 bits wide, and an iCE40UP5K has 8 for the datapath's real
    multipliers."""
    value = Value.cast(value)
    terms = [value << b for b in range(k.bit_length()) if k >> b & 1]
    return sum(terms[1:], terms[0]) if terms else Const(0, 1)


def _sg_stages(lp, k: int, neurons, u) -> tuple[Value, int]:
    """The surrogate of ``neurons`` at ``u`` (valid in stage ``k`` of ``lp``), in 2 stages."""
    return surrogate_stages(lp, k, u, neurons.theta, neurons.lut, neurons.lut_shift)


def _rows(arr, lanes: int, words_per_row: int):
    """Initial contents of a lane memory from a 2-D array (rows x columns), zero-padded."""
    out = []
    for row in arr:
        for w in range(words_per_row):
            lane = [int(row[w * lanes + k]) if w * lanes + k < len(row) else 0 for k in range(lanes)]
            out.append(lane)
    return out


class LayerBase(wiring.Component):
    """Ports every layer has (see ``rtl/lif.py``): control (``start`` one step ``t``, ``finish``
    the sample, ``done``, ``busy``), the input event list ``ev``, the spike list ``spk`` for the
    next stage (bank ``spk_bank``), the per-class ``counts`` for the decision, ``dbg`` for the
    register bus and ``phase_cycles`` for the benchmark. ``t`` must stay put while the layer
    runs a step."""

    PHASES: tuple[str, ...] = ()
    #: the weight memories (their bus keys) that go into SPRAM with ``spram``
    SPRAM_KEYS: tuple[str, ...] = ()

    def __init__(self, spec: NetworkSpec, index: int, lanes: int, params: LayerParams, regions: dict[str, int], ev_shape, ev_depth: int, counts_shape, spram: bool = False, pipeline: str = "full") -> None:
        self.g = G = LayerConstants(spec, index)
        #: the weights that learning changes (``SPRAM_KEYS``; FELL: also their traces) in
        #: single-port memories without initial contents, for an iCE40UP's SPRAM: the host
        #: writes the weights (``host_init``)
        self.spram = spram
        #: the phases' pipelines (rtl/loop.py, PIPELINES): "full" for speed, "compact" for a
        #: small FPGA; the same values either way
        self.pipeline = pipeline
        self.spec = spec
        self.index = index
        self.lanes = L = lanes
        self.log2l = log2_exact(lanes)
        self.N, self.C, self.fan_in = G.size, G.classes, G.fan_in
        self.wpr = -(-self.N // L)  # words per row of w (and of the neuron state)
        self.cpr = -(-self.C // L)  # words per row of the classifier weights
        self.params = params
        self.regions = regions
        self.binary = not G.pixel_input  # the raw input is spikes (value 1), not pixels
        #: whether this layer learns on chip (its rule learns, the spec lets the layer learn), and
        #: whether its presynaptic factors are eligibility traces (the rule's entry, localsnn.rules)
        self.learns = spec.rule.learns and spec.layers[index].learn
        self.traces = self.learns and spec.rule.traces
        self.lr_base = {"hid": G.shift_base, "clf": G.clf_shift_base}
        self.idx_bits = max((self.N - 1).bit_length(), 1)
        #: the width of the phase cycle counters: a phase is a loop over at most ``words_max``
        #: (index, word) pairs plus a few clocks of pipeline and control; 4x that never overflows
        self.phase_bits = min((4 * self.words_max).bit_length(), 32)
        T = spec.timesteps
        super().__init__({
            "start": In(1),
            "finish": In(1),
            "done": Out(1),
            "busy": Out(1),
            "t": In(range(T + 1)),
            "label": In(range(self.C + 1)),
            "label_valid": In(1),
            "learn": In(1),
            "lr_shift": In(range(64)),
            "ev": In(memory.ReadPort.Signature(addr_width=max((ev_depth - 1).bit_length(), 1), shape=ev_shape)),
            "ev_count": In(range(ev_depth + 1)),
            "spk": Out(memory.ReadPort.Signature(addr_width=max((self.N - 1).bit_length(), 1), shape=unsigned(self.idx_bits))),
            "spk_bank": In(1),
            "spk_count": Out(range(self.N + 1)),
            "clf_spikes": Out(self.C),
            "counts": Out(data.ArrayLayout(counts_shape, self.C)),
            "dbg": In(dbg_signature()),
            "phase_cycles": Out(data.ArrayLayout(unsigned(self.phase_bits), max(len(self.PHASES), 1))),
        })

    def memory_map(self) -> list[dict]:
        """The regions of this layer on the register bus (:func:`localsnn.chip.layer_memory_map`);
        ``host_init`` marks the memories the chip starts without, which the host must write
        first."""
        return layer_memory_map(self.spec, self.index, self.lanes, self.spram)

    def _weight_memory(self, m: Module, key: str, elem_shape, arr, words_per_row: int) -> LaneMemory:
        """A weight memory (bus key ``key``; a row of ``words_per_row`` words per row of
        ``arr``): initialised from ``arr``, or single-port and empty when ``spram`` puts it
        into SPRAM (``SPRAM_KEYS``)."""
        depth = len(arr) * words_per_row
        if self.spram and key in self.SPRAM_KEYS:
            return LaneMemory(m, key, elem_shape, self.lanes, depth, single_port=True)
        return LaneMemory(m, key, elem_shape, self.lanes, depth, init=_rows(arr, self.lanes, words_per_row))

    @property
    def words_max(self) -> int:
        """More than the (index, word) pairs of any one phase of a step: every word of the
        weights and of the classifier weights, one per input, neuron and class, and 16 clocks of
        pipeline and control."""
        return self.fan_in * self.wpr + self.N * self.cpr + self.fan_in + self.N + self.C + 16

    @property
    def step_cycles_max(self) -> int:
        """An upper bound of the clock cycles of one step of this layer: every phase at its
        longest."""
        return len(self.PHASES) * self.words_max

    def _lane_fns(self):
        """``(word_of, lane_of)``: the memory word and the lane of a neuron (or class) index at
        this layer's lanes (``lane_of`` is a constant 0 at one lane)."""
        word_of = lambda v: v >> self.log2l  # noqa: E731
        lane_of = lambda v: v[: self.log2l] if self.log2l else Const(0, 1)  # noqa: E731
        return word_of, lane_of

    def _update_words(self, m: Module, lp, rs: int, mem: LaneMemory, addr, deltas: LaneMemory, daddr, pre, shift, fmt) -> int:
        """A weight update of every lane of one word per pair of loop ``lp``, as a pipeline:
        ``w_k += R(-delta_k pre, shift)``, rounded as ``fmt`` says with lane k's draw
        (``deltas``: words ``{d, r}``; ``pre = None``: a spike, 1, no multiplier).

        Stage ``rs`` reads ``mem`` at ``addr`` and ``deltas`` at ``daddr`` (both valid in stage
        ``rs``; ``pre`` is valid in stage ``rs`` too); ``rs + 2`` the product ``delta pre``;
        ``rs + 3`` and ``rs + 4`` its rounding; ``rs + 5`` the sum, whose ``fit`` is written in
        ``rs + 7`` (an odd distance from the read: a throttled loop's single-port memory).
        Returns the write stage."""
        D = lp.delay
        lp.clocked(rs)
        st = lp.stage(rs)
        with m.If(st.valid):
            m.d.comb += [mem.rd.addr.eq(addr), deltas.rd.addr.eq(daddr)]
        ws = rs + 7
        lp.check_rw(rs, ws)
        pre2 = D(pre, 2, rs) if pre is not None else None
        values = []
        for k in range(self.lanes):
            w2 = D(mem.rd.data[k], 1, rs + 1)  # stage rs + 2
            d2 = D(deltas.rd.data[k]["d"], 1, rs + 1)
            r2 = D(deltas.rd.data[k]["r"], 1, rs + 1)
            raw3 = D(-(d2 * pre2) if pre2 is not None else -d2, 1, rs + 2)
            change, n = shift_round_stages(lp, rs + 3, raw3, shift, fmt.rounding, D(r2, 1, rs + 2))
            total = D(D(w2, 1 + n, rs + 2) + change, 1, rs + 3 + n)  # stage rs + 4 + n
            values.append(fit(D(total, ws - rs - 4 - n, rs + 4 + n), fmt)[0])
        wst = lp.stage(ws)
        with m.If(wst.valid):  # (the bus writes this memory too, while the layer is idle)
            m.d.comb += [mem.wr.addr.eq(D(addr, ws - rs, rs)), mem.wr.en.eq(Const(-1, self.lanes))]
            m.d.comb += [mem.wr.data[k].eq(v) for k, v in enumerate(values)]
        return ws

    def _deltas(self, m: Module, lp, k: int, acc: Signal, partial, umem: LaneMemory, dlmem: LaneMemory, draw, advance, stochastic: bool) -> None:
        """BACKPROP's end, both engines: ``delta_i = fit_E(R_E(lut(u_i) * sum))`` of neuron
        ``i`` (the loop's outer index) from the row's ``partial`` sums. Stage ``k`` accumulates
        them into ``acc`` and reads ``u_i``'s word; ``k + 1`` (at the row's last word) its lane;
        ``k + 2`` and ``k + 3`` its surrogate; ``k + 4`` the product; then the rounding,
        ``fit_E`` and the write of ``delta_i`` with the stream's ``draw`` (``advance`` pulsed when the rounding is
        ``stochastic``), one lane of ``dlmem``."""
        G, L, D, st = self.g, self.lanes, lp.delay, lp.stage
        word_of, lane_of = self._lane_fns()
        total = _wire(m, Mux(st(k).first, 0, acc) + partial, f"{lp.name}_sum")
        with m.If(st(k).valid):
            m.d.sync += acc.eq(total)
            m.d.comb += umem.rd.addr.eq(word_of(st(k).outer))
        # stage k + 1: acc holds the row's sum
        u_i = D(Array([umem.rd.data[j] for j in range(L)])[lane_of(st(k + 1).outer)], 1, k + 1, f"{lp.name}_u")
        sg, ns = _sg_stages(lp, k + 2, G.neurons, u_i)
        product = D(D(acc, 1 + ns, k + 1) * sg, 1, k + 2 + ns, f"{lp.name}_product")
        rounded, n = shift_round_stages(lp, k + 3 + ns, product, G.err_shift, G.efmt.rounding)
        delta = D(fit(rounded, G.efmt)[0], 1, k + 3 + ns + n, f"{lp.name}_delta")
        ws = st(k + 4 + ns + n)
        with m.If(ws.valid & ws.last):
            m.d.comb += advance.eq(stochastic)
            m.d.comb += [dlmem.wr.addr.eq(word_of(ws.outer)), dlmem.wr.en.eq(Const(1, L) << lane_of(ws.outer))]
            for j in range(L):
                m.d.comb += [dlmem.wr.data[j]["d"].eq(delta), dlmem.wr.data[j]["r"].eq(draw)]

    def _spike_list(self, m: Module):
        """The spike list in two banks, one per step parity: while this layer computes step t
        into bank ``t mod 2``, the next layer can still read its step t-1 from the other bank
        (through ``spk``, bank ``spk_bank``, with its own read port). Returns the list memory,
        the signal driving this layer's own read address within its bank, the count of the
        step being computed, the bank base of this step, and a signal that publishes the count
        to the next stage (the layer raises it once the list of the step is complete)."""
        N = self.N
        spk = LaneMemory(m, "spikes", unsigned(self.idx_bits), 1, 2 * N, second_read=True)
        own_addr = Signal(max((N - 1).bit_length(), 1), name="spk_own_addr")
        count = Signal(range(N + 1), name="spk_count_now")
        done_counts = [Signal(range(N + 1), name=f"spk_count_bank{b}") for b in range(2)]
        base = Signal(range(2 * N), name="spk_base")
        m.d.comb += [
            base.eq(Mux(self.t[0], N, 0)),
            spk.rd.en.eq(1),
            spk.rd2.en.eq(1),
            spk.rd.addr.eq(base + own_addr),
            spk.rd2.addr.eq(Mux(self.spk_bank, N, 0) + self.spk.addr),
            self.spk.data.eq(spk.rd2.data[0]),
            self.spk_count.eq(Mux(self.spk_bank, done_counts[1], done_counts[0])),
        ]
        publish = Signal(name="spk_publish")
        with m.If(publish):
            with m.If(self.t[0]):
                m.d.sync += done_counts[1].eq(count)
            with m.Else():
                m.d.sync += done_counts[0].eq(count)
        return spk, own_addr, count, base, publish

    def _debug_port(self, m: Module, mems: dict) -> None:
        """Bus access to the layer's memories (only while the layer is idle).

        Element ``index`` of a memory of ``n`` lanes is lane ``index mod n`` of word ``index // n``.
        A request is first registered (which memory, the word, the lane: the decode of the bus
        address is off the memories' address paths); in the next clock a write is done and
        acknowledged, a read drives the word address, registers the lane's value when the data
        arrive and acknowledges with it one clock later. A request still present in the clock after its acknowledgement is a new
        request (back-to-back accesses, as in Wishbone classic).
        """
        dbg = self.dbg
        phase = Signal(2, name="dbg_phase")  # 0: free, 1: request registered, 2: the read data arrive, 3: answer
        r_data = Signal.like(dbg.r_data, name="dbg_r_data")
        sel_index = Signal.like(dbg.index, name="dbg_sel_index")
        sel_write = Signal(name="dbg_sel_write")
        sel_data = Signal.like(dbg.w_data, name="dbg_sel_data")
        ours = Signal(name="dbg_ours")
        m.d.comb += ours.eq(0)
        mine = {key: mem for key, mem in mems.items() if key in self.regions}
        self.bus_memories = mine  # what the bus reaches (tests/test_chip.py: = the memory map)
        sel = {key: Signal(name=f"dbg_sel_{key}") for key in mine}  # the request's memory
        for key in mine:
            with m.If(dbg.region == self.regions[key]):
                m.d.comb += ours.eq(1)

        def split(index, mem):
            k = log2_exact(mem.lanes)
            return index >> k, (index[:k] if k else Const(0, 1))

        with m.Switch(phase):
            with m.Case(0):
                with m.If(ours & (dbg.r_en | dbg.w_en)):
                    m.d.sync += [phase.eq(1), sel_index.eq(dbg.index), sel_write.eq(dbg.w_en), sel_data.eq(dbg.w_data)]
                    m.d.sync += [sel[key].eq(dbg.region == self.regions[key]) for key in mine]
            with m.Case(1):
                with m.If(sel_write):
                    for key, mem in mine.items():
                        with m.If(sel[key]):
                            word, lane = split(sel_index, mem)
                            m.d.comb += [mem.wr.addr.eq(word), mem.wr.en.eq(Const(1, mem.lanes) << lane)]
                            for k in range(mem.lanes):
                                m.d.comb += mem.wr.data[k].eq(sel_data[: len(Value.cast(mem.wr.data[k]))])
                    m.d.comb += dbg.ack.eq(1)
                    m.d.sync += phase.eq(0)
                with m.Else():
                    for key, mem in mine.items():
                        with m.If(sel[key]):
                            m.d.comb += mem.rd.addr.eq(split(sel_index, mem)[0])
                    m.d.sync += phase.eq(2)
            with m.Case(2):  # the lane's value, registered (a block RAM's output is slow)
                for key, mem in mine.items():
                    with m.If(sel[key]):
                        _, lane = split(sel_index, mem)
                        v = Array(Value.cast(mem.rd.data[k]) for k in range(mem.lanes))[lane]
                        signed_ = Value.cast(mem.rd.data[0]).shape().signed
                        m.d.sync += r_data.eq(v.as_signed() if signed_ else v)
                m.d.sync += phase.eq(3)
            with m.Case(3):
                m.d.comb += [dbg.r_data.eq(r_data), dbg.ack.eq(1)]
                m.d.sync += phase.eq(0)


def build_compact(m: Module, omem: LaneMemory, spk: LaneMemory, words: int, L: int, active, reset, spk_count, done, base=0) -> None:
    """COMPACT: the indices of the set bits of ``omem`` (``words`` words of ``L`` bits) written
    to the list ``spk`` from address ``base``, one per clock; the next word is read ahead.
    ``reset`` pulses before ``active`` goes high; ``done`` is high in the clock the last index is
    written."""
    next_word = Signal(range(words + 1))
    pending = Signal()
    pend_word = Signal(range(words + 1))
    mask = Signal(L)
    mword = Signal(range(words + 1))
    cur_mask = Signal(L)
    cur_word = Signal(range(words + 1))
    m.d.comb += [
        cur_mask.eq(Mux(pending, Cat(*[omem.rd.data[k] for k in range(L)]), mask)),
        cur_word.eq(Mux(pending, pend_word, mword)),
    ]
    low = Signal(range(max(L, 2)))  # never 0 bits wide
    for k in reversed(range(L)):
        with m.If(cur_mask[k]):
            m.d.comb += low.eq(k)
    fire = cur_mask != 0
    mask_after = Signal(L)
    m.d.comb += mask_after.eq(cur_mask & ~(Const(1, L) << low))
    issue = Signal()
    m.d.comb += issue.eq(active & (mask_after == 0) & (next_word < words))
    m.d.comb += done.eq((next_word == words) & (mask_after == 0))
    with m.If(reset):
        m.d.sync += [next_word.eq(0), pending.eq(0), mask.eq(0), spk_count.eq(0)]
    with m.If(active):
        with m.If(issue):
            m.d.comb += omem.rd.addr.eq(next_word)
            m.d.sync += [next_word.eq(next_word + 1), pend_word.eq(next_word)]
        m.d.sync += [pending.eq(issue), mask.eq(mask_after), mword.eq(cur_word)]
        with m.If(fire):
            m.d.comb += [spk.wr.addr.eq(base + spk_count), spk.wr.data[0].eq(cur_word * L + low), spk.wr.en.eq(1)]
            m.d.sync += spk_count.eq(spk_count + 1)


def make_live(m: Module, name: str, rows: int, timesteps: int, xbits: int | None):
    """The live-row tracker of a sample: ``cur[j]`` holds the stamps (step + 1) of the first and
    the last step row ``j`` was active in (0: not yet), and its value when ``xbits``; ``live``
    lists the rows in order of first activity. Returns (cur, live, count)."""
    sb = (timesteps + 1).bit_length()
    fields = {"first": unsigned(sb), "last": unsigned(sb)}
    if xbits:
        fields["x"] = unsigned(xbits)
    cur = LaneMemory(m, f"{name}_cur", data.StructLayout(fields), 1, rows)
    live = LaneMemory(m, f"{name}_live", unsigned(max((rows - 1).bit_length(), 1)), 1, rows)
    count = Signal(range(rows + 1), name=f"{name}_n_live")
    return cur, live, count


def build_live(m: Module, loop, src_addr, src_j, src_x, curm: LaneMemory, lst: LaneMemory, n_l, stamp) -> None:
    """LIVE: for each entry of a list (events or spikes, read through ``src_addr``), stamp its
    row in ``cur`` and append the row to ``lst`` the first time it is seen in the sample."""
    s0, s1, s2 = loop.s
    jreg = Signal(len(Value.cast(src_j)), name=f"{s0.valid.name}_j")
    xreg = Signal(len(Value.cast(src_x)), name=f"{s0.valid.name}_x") if src_x is not None else None
    with m.If(s0.valid):
        m.d.comb += src_addr.eq(s0.outer)
    with m.If(s1.valid):
        m.d.comb += curm.rd.addr.eq(src_j)
    m.d.sync += jreg.eq(src_j)
    if xreg is not None:
        m.d.sync += xreg.eq(src_x)
    with m.If(s2.valid):
        c0 = curm.rd.data[0]
        new = c0["first"] == 0
        m.d.comb += [curm.wr.addr.eq(jreg), curm.wr.en.eq(1)]
        m.d.comb += [curm.wr.data[0]["first"].eq(Mux(new, stamp, c0["first"])), curm.wr.data[0]["last"].eq(stamp)]
        if xreg is not None:
            m.d.comb += curm.wr.data[0]["x"].eq(xreg)
        with m.If(new):
            m.d.comb += [lst.wr.addr.eq(n_l), lst.wr.data[0].eq(jreg), lst.wr.en.eq(1)]
            m.d.sync += n_l.eq(n_l + 1)


def build_clear(m: Module, loop, lst: LaneMemory, curm: LaneMemory) -> None:
    """End of sample: forget the stamps of every live row."""
    s0, s1, _ = loop.s
    with m.If(s0.valid):
        m.d.comb += lst.rd.addr.eq(s0.outer)
    with m.If(s1.valid):
        m.d.comb += [curm.wr.addr.eq(lst.rd.data[0]), curm.wr.en.eq(1), curm.wr.data.eq(0)]
