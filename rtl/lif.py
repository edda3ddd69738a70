"""A hidden layer of LIF neurons with its spiking local classifier and its on-chip learning
(ELL or FELL): the hardware of golden's ``Golden._lif_step``.

Neurons are time-multiplexed over ``lanes`` datapaths: a memory word holds ``lanes``
neighbouring neurons (their potentials, or the weights of one input to them), so every phase
walks words, one per clock. Input is a list of events (index, value) built by the stage before;
work per step follows the number of events, not the layer size.

One time step is a sequence of phases, each a pipelined loop (``rtl/loop.py``):

=========== ======================================== ==================================
phase        loop                                     golden
=========== ======================================== ==================================
FWD          word w, input event e                    I = sum w x; u, o = integrate(...)
COMPACT      state words                               spike list of the layer
CFWD         classifier word, spike                    classifier neurons; delta^a
LIVE, CLIVE  events / spikes (FELL)                    rows whose trace is nonzero
CDRAW        classes                                   one round:<l>.clf draw per class (ELL: R(-delta^a))
SKIP         C + N draws (no error at this step)       the draws golden discards
BACKPROP     neuron i, classifier word                 delta_i = fit_E(R(lut(u_i) sum_k w^a_ik delta^a_k))
CUPD         spike, classifier word (ELL)              w^a += R(-delta^a)
HUPD         event, word (ELL)                         w += R(-delta x)
CFTRACE      live spike row, classifier word (FELL)    e^a = R(e^a c) + o ; w^a += R(-delta^a e^a)
FTRACE       live input row, word (FELL)               e = R(e c) + x ; w += R(-delta e)
=========== ======================================== ==================================

When the classifier made no error at this step (every delta^a is 0), golden changes no weight
but still consumes its random draws: the LFSRs skip them in SKIP, one draw per clock (C of
``round:<l>.clf``, then N of ``round:<l>``; the two streams share one draw network, see
``rtl/lfsr.py``, so one of them draws at a time).
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data

from localsnn.errors import BadValueError
from localsnn.chip import PHASES, SPRAM_KEYS
from localsnn.golden.fixed import bits_of
from localsnn.golden.params import LayerParams
from localsnn.rtl.common import LaneMemory
from localsnn.rtl.layer import LayerBase, _sg, _times, _wire, build_clear, build_compact, build_live, make_live
from localsnn.rtl.fixed import fit, fmt_shape, narrow, shift_round
from localsnn.rtl.lfsr import LFSR, shared_draw
from localsnn.rtl.loop import Loop
from localsnn.rtl.phases import Phases
from localsnn.rtl.neuron import integrate, leak
from localsnn.spec import NetworkSpec


class LIFLayer(LayerBase):
    """One LIF hidden layer and its spiking classifier (see the module docstring).

    ``ev`` reads the input event list (``ev_count`` entries): ``{index, value}`` for pixels or
    just the index for spikes (value 1). ``spk`` gives the next stage this layer's spike list
    (``spk_count`` entries) while the layer is not busy. ``start`` runs one time step ``t``;
    ``finish`` runs the end-of-sample cleanup; ``done`` pulses when either is over.
    """

    PHASES = PHASES["lif"]
    SPRAM_KEYS = SPRAM_KEYS["lif"]

    def __init__(self, spec: NetworkSpec, index: int, lanes: int, params: LayerParams, regions: dict[str, int], ev_shape, ev_depth: int, lfsr_seeds: tuple[int, int], spram: bool = False) -> None:
        if spec.layers[index].neuron.model != "lif":
            raise BadValueError("LIFLayer needs a layer of 'lif' neurons")
        super().__init__(spec, index, lanes, params, regions, ev_shape, ev_depth, unsigned((spec.timesteps + 1).bit_length()), spram)
        self.lfsr_seeds = lfsr_seeds
        # the stochastic-rounding streams round:<l> and round:<l>.clf (the top reads and seeds them)
        self.lfsrs = tuple(LFSR(spec.lfsr.width, seed, shared=True) for seed in lfsr_seeds) if self.learns else None


    def _factor(self, neurons, u_old) -> Value:
        """FELL's ``c = du[t]/du[t-1] = D(1 - theta lut(u[t-1]))`` in the trace format's
        fractional bits (golden ``_fell_factor``)."""
        G = self.g
        one, shift = G.factor_constants(neurons)
        one_minus = one - neurons.theta * _sg(neurons, u_old)
        return shift_round(leak(one_minus, neurons.decay, G.tfmt.rounding), shift, G.tfmt.rounding)

    def _factor_bits(self) -> int:
        """The width of a stored factor c: the spec's bound on |c| (``fell_factor_bound``),
        for the layer's and the classifier's neurons."""
        ls = self.spec.layers[self.index]
        return max(bits_of(self.spec.fell_factor_bound(n)) for n in (ls.neuron, ls.classifier.neuron))

    # -- elaboration ---------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        b = SimpleNamespace(fell=self.traces, learns=self.learns)
        self._memories(m, b)
        self._loops(m, b)
        self._control(m, b)
        self._fwd(m, b)
        # ---- COMPACT: the spike list -----------------------------------------------------------
        build_compact(m, b.omem, b.spk, self.wpr, self.lanes, b.in_compact, b.loops["fwd"].done, b.spk_count, b.compact_done, b.spk_base)
        self._cfwd(m, b)
        if b.fell:  # LIVE / CLIVE: rows whose traces can be nonzero
            build_live(m, b.loops["live"], self.ev.addr, b.ev_j, b.ev_x, b.curmem, b.live, b.n_live, b.t1)
            build_live(m, b.loops["clive"], b.spk_rd_addr, b.spk.rd.data[0], None, b.ccurmem, b.clive, b.n_clive, b.t1)
        if b.learns:
            self._cdraw(m, b)
            self._backprop(m, b)
        if b.learns and not b.fell:
            self._cupd(m, b)
            self._hupd(m, b)
        if b.fell:
            self._fell_traces(m, b)
            # end of sample: forget which rows were live
            build_clear(m, b.loops["clear"], b.live, b.curmem)
            build_clear(m, b.loops["cclear"], b.clive, b.ccurmem)
        m.d.comb += self.busy.eq(~b.fsm.ongoing("IDLE"))
        return m

    def _memories(self, m, b) -> None:
        """The layer's memories (``b.mems``: those on the bus) and the random draws."""
        G, L, N, C, WPR, CPR = self.g, self.lanes, self.N, self.C, self.wpr, self.cpr
        nrn, cn = G.neurons, G.clf_neurons
        b.wmem = self._weight_memory(m, "w", fmt_shape(G.wfmt), self.params.w, WPR)
        b.umem = LaneMemory(m, "u", fmt_shape(nrn.potential), L, WPR)
        b.omem = LaneMemory(m, "o", unsigned(1), L, WPR)
        b.cwmem = self._weight_memory(m, "cw", fmt_shape(G.cfmt), self.params.clf_w, CPR)
        b.cumem = LaneMemory(m, "cu", fmt_shape(cn.potential), L, CPR)
        b.comem = LaneMemory(m, "co", unsigned(1), L, CPR)
        b.spk, b.spk_rd_addr, b.spk_count, b.spk_base, b.spk_publish = self._spike_list(m)
        b.mems = {"w": b.wmem, "u": b.umem, "o": b.omem, "cw": b.cwmem, "cu": b.cumem, "co": b.comem}
        wl = self.spec.layers[self.index]
        b.stoch_h = wl.weight.rounding == "stochastic"
        b.stoch_c = wl.classifier.weight.rounding == "stochastic"
        if b.learns:
            rbits = self.spec.lfsr.width if (b.stoch_h or b.stoch_c) else 1
            dl_layout = data.StructLayout({"d": fmt_shape(G.efmt), "r": unsigned(rbits)})
            b.dlmem = LaneMemory(m, "delta", dl_layout, L, WPR)
            b.lfsr_h, b.lfsr_c = self.lfsrs  # submodules of the top, which reads and seeds them
            b.draw_clf = Signal()  # the shared draw network serves round:<l>.clf (else round:<l>)
            b.draw = shared_draw(m, [b.lfsr_h, b.lfsr_c], b.draw_clf)
        if b.fell:
            T_ = G.tfmt
            tmax = self.spec.timesteps
            b.emem = LaneMemory(m, "e", fmt_shape(T_), L, self.fan_in * WPR, single_port=self.spram)  # FTRACE masks stale traces
            b.cemem = LaneMemory(m, "ce", fmt_shape(T_), L, N * CPR, single_port=self.spram)
            fac_shape = signed(self._factor_bits())
            b.facmem = LaneMemory(m, "fac", fac_shape, L, WPR)
            b.cfacmem = LaneMemory(m, "cfac", fac_shape, L, CPR)
            xbits = max(G.x_max.bit_length(), 1)
            b.curmem, b.live, b.n_live = make_live(m, "in", self.fan_in, tmax, xbits)
            b.ccurmem, b.clive, b.n_clive = make_live(m, "hid", N, tmax, None)
            b.mems.update({"e": b.emem, "ce": b.cemem})

        # ---- per-class values: a memory of classifier words, read with the classifier weights ----
        # da: delta^a_k (frac f_s), written by CFWD; dw (ELL): the classifier change R(-delta^a_k),
        # or r (FELL): the class's draw, both written by CDRAW (which rewrites da as it read it)
        b.sbits = self.spec.learning.surrogate.format.width + 2
        b.err_any = Signal()
        b.spikes_now = Signal(C)
        if b.learns:
            crbits = self.spec.lfsr.width if b.stoch_c else 1
            # |R(-delta^a, s)| <= |delta^a| <= lut max for every shift s >= 0: dw needs no more
            # bits than da (the classifier weight's width is no bound: a narrow weight format
            # with a large surrogate gets a change larger than any weight, which saturates)
            cls_layout = data.StructLayout({"da": signed(b.sbits), "dw" if not b.fell else "r": signed(b.sbits) if not b.fell else unsigned(crbits)})
            b.clsmem = LaneMemory(m, "cls", cls_layout, L, CPR, block_ram=True)
            m.d.comb += b.clsmem.rd.en.eq(1)

    def _loops(self, m, b) -> None:
        """The phases' pipelined loops (``b.loops`` by name), the input event's fields, the
        stamps and the learning-rate shifts."""
        N, WPR, CPR = self.N, self.wpr, self.cpr
        ev_count, spk_count = self.ev_count, b.spk_count
        b.loops = loops = {}

        def loop(name, outer, inner, omax, imax, at_least_one=False, throttle=False):
            loops[name] = Loop(m, name, outer, inner, outer_max=omax, inner_max=imax, inner_at_least_one=at_least_one, throttle=throttle)

        loop("fwd", WPR, ev_count, WPR, self.fan_in, True)
        loop("cfwd", CPR, spk_count, CPR, N, True)
        if b.learns:
            loop("cdraw", self.C, 1, self.C, 1)
            loop("back", N, CPR, N, CPR)
            loop("cupd", spk_count, CPR, N, CPR, throttle=self.spram)  # reads and writes cw
            loop("hupd", ev_count, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes w
        if b.fell:
            loop("live", ev_count, 1, self.fan_in, 1)
            loop("clive", spk_count, 1, N, 1)
            loop("ftrace", b.n_live, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes e, w
            loop("cftrace", b.n_clive, CPR, N, CPR, throttle=self.spram)  # reads and writes ce, cw
            loop("clear", b.n_live, 1, self.fan_in, 1)
            loop("cclear", b.n_clive, 1, N, 1)

        b.ev_j = self.ev.data["index"] if not self.binary else self.ev.data
        b.ev_x = self.ev.data["value"] if not self.binary else Const(1, 1)
        m.d.comb += self.ev.en.eq(1)
        mems = [b.wmem, b.umem, b.omem, b.cwmem, b.cumem, b.comem] + ([b.dlmem] if b.learns else [])
        mems += [b.emem, b.cemem, b.facmem, b.cfacmem, b.curmem, b.ccurmem, b.live, b.clive] if b.fell else []
        for mem in mems:
            m.d.comb += mem.rd.en.eq(1)

        b.t1 = _wire(m, self.t + 1, "stamp")  # the stamp of this step (0 means never)
        b.first_step = _wire(m, self.t == 0, "first_step")
        # COMPACT's handshake (the pipeline is built after the FSM)
        b.in_compact = Signal()
        b.compact_done = Signal()
        b.phases = Phases(m, self.PHASES, self.phase_bits, self.phase_cycles)
        lr = self.lr_shift
        b.hid_shift = _wire(m, (lr + self.lr_base["hid"])[:6], "hid_shift")  # >= 0 for every allowed lr_shift
        b.clf_shift = _wire(m, (lr + self.lr_base["clf"])[:6], "clf_shift")

    def _control(self, m, b) -> None:
        """The control FSM: the chain of phases of a step (module docstring), and the end of a
        sample (FELL: CLEAR, CCLEAR)."""
        ph, lp, fell, learns = b.phases, b.loops, b.fell, b.learns
        with m.FSM(name="ctl") as b.fsm:
            with m.State("IDLE"):
                self._debug_port(m, b.mems)
                with m.If(self.start):
                    m.d.comb += lp["fwd"].start.eq(1)
                    ph.clear()
                    m.d.sync += [b.err_any.eq(0), b.spikes_now.eq(0)]
                    with m.If(b.first_step):
                        m.d.sync += self.counts.eq(0)
                    if fell:
                        with m.If(b.first_step):
                            m.d.sync += [b.n_live.eq(0), b.n_clive.eq(0)]
                    m.next = "FWD"
                with m.If(self.finish):
                    if fell:
                        m.d.comb += lp["clear"].start.eq(1)
                        m.next = "CLEAR"
                    else:
                        m.d.comb += self.done.eq(1)
            ph.run("FWD", lp["fwd"].done, ph.go("COMPACT"))
            with m.State("COMPACT"):  # the pipeline is built in elaborate
                ph.count("COMPACT")
                m.d.comb += b.in_compact.eq(1)
                with m.If(b.compact_done):
                    m.next = "CFWD0"
            with m.State("CFWD0"):  # spk_count is final now
                m.d.comb += b.spk_publish.eq(1)  # the next layer may read this step's spikes
                ph.count("COMPACT")
                m.d.comb += lp["cfwd"].start.eq(1)
                m.next = "CFWD"
            ph.run("CFWD", lp["cfwd"].done, lambda: self._after_cfwd(m, b))
            if fell:
                ph.run("LIVE", lp["live"].done, ph.go("CLIVE", lp["clive"].start))
                ph.run("CLIVE", lp["clive"].done, ph.go("CDRAW"))
            if learns:
                self._control_learning(m, b)
            if fell:
                ph.run("CFTRACE", lp["cftrace"].done, ph.go("FTRACE", lp["ftrace"].start))
                ph.run("FTRACE", lp["ftrace"].done, ph.go("IDLE", self.done))
                with m.State("CLEAR"):
                    with m.If(lp["clear"].done):
                        m.d.comb += lp["cclear"].start.eq(1)
                        m.next = "CCLEAR"
                with m.State("CCLEAR"):
                    with m.If(lp["cclear"].done):
                        m.d.sync += [b.n_live.eq(0), b.n_clive.eq(0)]
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"

    def _after_cfwd(self, m, b) -> None:
        """The step ends after CFWD unless the layer learns from a label at this step."""
        if not b.learns:
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"
            return
        with m.If(~self.learn | ~self.label_valid):
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"
        with m.Else():
            if b.fell:
                m.d.comb += b.loops["live"].start.eq(1)
                m.next = "LIVE"
            else:
                m.next = "CDRAW"

    def _after_draws(self, m, b) -> None:
        """After the classifier's draws (or their SKIP): FELL's traces, or the end of the step."""
        if b.fell:
            m.d.comb += b.loops["cftrace"].start.eq(1)
            m.next = "CFTRACE"
        else:
            m.d.comb += self.done.eq(1)
            m.next = "IDLE"

    def _control_learning(self, m, b) -> None:
        """CDRAW (or SKIP when no class erred), BACKPROP, and ELL's CUPD, HUPD."""
        ph, lp = b.phases, b.loops
        skip_c = self.C if b.stoch_c else 0
        skips = skip_c + (self.N if b.stoch_h else 0)
        if skips:
            skip_k = Signal(range(max(skips, 2)))  # (never 0 bits wide)
            with m.State("SKIP"):
                ph.count("CDRAW")
                m.d.sync += skip_k.eq(skip_k + 1)
                clf_draws = [b.draw_clf.eq(1), b.lfsr_c.advance.eq(1)]
                if skip_c == skips:  # only round:<l>.clf draws (no constant compare)
                    m.d.comb += clf_draws
                elif skip_c == 0:
                    m.d.comb += b.lfsr_h.advance.eq(1)
                else:
                    with m.If(skip_k < skip_c):
                        m.d.comb += clf_draws
                    with m.Else():
                        m.d.comb += b.lfsr_h.advance.eq(1)
                with m.If(skip_k == skips - 1):
                    m.d.sync += skip_k.eq(0)
                    self._after_draws(m, b)
        with m.State("CDRAW"):
            ph.count("CDRAW")
            with m.If(~b.err_any):
                # no error: golden draws and discards C + N words; SKIP them
                if skips:
                    m.next = "SKIP"
                else:
                    self._after_draws(m, b)
            with m.Else():
                m.d.comb += lp["cdraw"].start.eq(1)
                m.next = "CDRAW_RUN"
        ph.run("CDRAW_RUN", lp["cdraw"].done, ph.go("BACKPROP", lp["back"].start), phase="CDRAW")
        if b.fell:
            ph.run("BACKPROP", lp["back"].done, ph.go("CFTRACE", lp["cftrace"].start))
        else:
            ph.run("BACKPROP", lp["back"].done, ph.go("CUPD", lp["cupd"].start))
            ph.run("CUPD", lp["cupd"].done, ph.go("HUPD", lp["hupd"].start))
            ph.run("HUPD", lp["hupd"].done, ph.go("IDLE", self.done))

    def _fwd(self, m, b) -> None:
        """FWD: ``I = R_U(sum_j w_ji x_j); u, o = integrate(u, o, I)`` (FELL: and the factor c)."""
        G, L, N, WPR = self.g, self.lanes, self.N, self.wpr
        nrn, wmem, umem, omem = G.neurons, b.wmem, b.umem, b.omem
        ev_j, ev_x, first_step = b.ev_j, b.ev_x, b.first_step
        b.x1 = x1 = Signal.like(ev_x) if not self.binary else None
        b.j1 = j1 = Signal(len(Value.cast(ev_j)))
        s0, s1, s2 = b.loops["fwd"].s
        acc = [Signal(signed(self.spec.layers[self.index].accumulator), name=f"acc{k}") for k in range(L)]
        with m.If(s0.valid):
            m.d.comb += self.ev.addr.eq(s0.inner)
        with m.If(s1.valid):
            m.d.comb += [wmem.rd.addr.eq(_times(ev_j, WPR) + s1.outer), umem.rd.addr.eq(s1.outer), omem.rd.addr.eq(s1.outer)]
            if b.fell:
                m.d.comb += b.facmem.rd.addr.eq(s1.outer)
        m.d.sync += j1.eq(ev_j)
        if x1 is not None:
            m.d.sync += x1.eq(ev_x)
        b.xv = xv = x1 if x1 is not None else Const(1, 1)
        with m.If(s2.valid):
            new_u, new_o = [], []
            for k in range(L):
                w_k = wmem.rd.data[k]
                prod = Mux(s2.empty, 0, w_k * xv if x1 is not None else w_k)
                total = _wire(m, Mux(s2.first, 0, acc[k]) + prod, f"fwd_total{k}")
                m.d.sync += acc[k].eq(total)
                u_old = _wire(m, Mux(first_step, 0, umem.rd.data[k]), f"fwd_u_old{k}")
                o_old = Mux(first_step, 0, omem.rd.data[k])
                cur = shift_round(total, G.cur_shift, nrn.potential.rounding)
                u_new, o_new, _ = integrate(nrn, u_old, o_old, cur)
                u_new, o_new = _wire(m, u_new, f"fwd_u{k}"), _wire(m, o_new, f"fwd_o{k}")
                pad = (s2.outer * L + k) >= N
                new_u.append(Mux(pad, 0, u_new))
                new_o.append(Mux(pad, 0, o_new))
                if b.fell:
                    m.d.comb += b.facmem.wr.data[k].eq(self._factor(nrn, u_old))
            with m.If(s2.last):
                m.d.comb += [umem.wr.addr.eq(s2.outer), umem.wr.en.eq(Const(-1, L)), omem.wr.addr.eq(s2.outer), omem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    m.d.comb += [umem.wr.data[k].eq(new_u[k]), omem.wr.data[k].eq(new_o[k])]
                if b.fell:
                    m.d.comb += [b.facmem.wr.addr.eq(s2.outer), b.facmem.wr.en.eq(Const(-1, L))]

    def _cfwd(self, m, b) -> None:
        """CFWD: the classifier, and ``delta^a_k = (o^a_k - y_k) lut(u^a_k)``."""
        G, L, C, CPR = self.g, self.lanes, self.C, self.cpr
        cn, cwmem, cumem, comem, spk = G.clf_neurons, b.cwmem, b.cumem, b.comem, b.spk
        s0, s1, s2 = b.loops["cfwd"].s
        cacc = [Signal(signed(self.spec.layers[self.index].classifier.accumulator), name=f"cacc{k}") for k in range(L)]
        with m.If(s0.valid):
            m.d.comb += b.spk_rd_addr.eq(s0.inner)
        b.i1 = i1 = Signal(self.idx_bits)
        m.d.sync += i1.eq(spk.rd.data[0])
        with m.If(s1.valid):
            m.d.comb += [cwmem.rd.addr.eq(_times(spk.rd.data[0], CPR) + s1.outer), cumem.rd.addr.eq(s1.outer), comem.rd.addr.eq(s1.outer)]
            if b.fell:
                m.d.comb += b.cfacmem.rd.addr.eq(s1.outer)
        with m.If(s2.valid):
            outs, outs_sg = [], []
            for k in range(L):
                prod = Mux(s2.empty, 0, cwmem.rd.data[k])
                total = _wire(m, Mux(s2.first, 0, cacc[k]) + prod, f"cfwd_total{k}")
                m.d.sync += cacc[k].eq(total)
                u_old = _wire(m, Mux(b.first_step, 0, cumem.rd.data[k]), f"cfwd_u_old{k}")
                o_old = Mux(b.first_step, 0, comem.rd.data[k])
                cur = shift_round(total, G.clf_cur_shift, cn.potential.rounding)
                u_new, o_new, _ = integrate(cn, u_old, o_old, cur)
                u_new, o_new = _wire(m, u_new, f"cfwd_u{k}"), _wire(m, o_new, f"cfwd_o{k}")
                outs_sg.append(_wire(m, _sg(cn, u_new), f"cfwd_sg{k}"))
                outs.append((u_new, o_new))
                if b.fell:
                    m.d.comb += b.cfacmem.wr.data[k].eq(self._factor(cn, u_old))
            with m.If(s2.last):
                m.d.comb += [cumem.wr.addr.eq(s2.outer), cumem.wr.en.eq(Const(-1, L)), comem.wr.addr.eq(s2.outer), comem.wr.en.eq(Const(-1, L))]
                if b.fell:
                    m.d.comb += [b.cfacmem.wr.addr.eq(s2.outer), b.cfacmem.wr.en.eq(Const(-1, L))]
                # delta^a of lane k's class (one error product per lane, not one per class)
                da_next = [_wire(m, (outs[k][1] - (self.label == s2.outer * L + k)) * outs_sg[k], f"da_next{k}") for k in range(L)]
                with m.Switch(s2.outer):
                    for w in range(CPR):
                        with m.Case(w):
                            for k in range(L):
                                c = w * L + k
                                u_new, o_new = outs[k]
                                if c >= C:
                                    m.d.comb += [cumem.wr.data[k].eq(0), comem.wr.data[k].eq(0)]
                                    continue
                                m.d.comb += [cumem.wr.data[k].eq(u_new), comem.wr.data[k].eq(o_new)]
                                m.d.sync += [b.spikes_now[c].eq(o_new), self.counts[c].eq(self.counts[c] + o_new)]
                                if b.learns:
                                    m.d.comb += b.clsmem.wr.data[k]["da"].eq(da_next[k])
                                    with m.If(da_next[k] != 0):
                                        m.d.sync += b.err_any.eq(1)
                if b.learns:  # padding lanes (classes >= C) keep delta^a = 0
                    m.d.comb += [b.clsmem.wr.addr.eq(s2.outer), b.clsmem.wr.en.eq(Const(-1, L))]
        m.d.comb += self.clf_spikes.eq(b.spikes_now)

    def _cdraw(self, m, b) -> None:
        """CDRAW: one ``round:<l>.clf`` draw per class, in class order; ELL: the classifier change
        ``R(-delta^a_k)``, the same for every spiking row, by one rounding unit (one class per clock)."""
        G, L, clsmem = self.g, self.lanes, b.clsmem
        word_of, lane_of = self._lane_fns()
        s0, s1, s2 = b.loops["cdraw"].s
        with m.If(s1.valid):
            m.d.comb += clsmem.rd.addr.eq(word_of(s1.outer))
        with m.If(s2.valid):
            r = b.draw
            m.d.comb += [b.draw_clf.eq(1), b.lfsr_c.advance.eq(b.stoch_c)]
            da_k = _wire(m, Array([clsmem.rd.data[k]["da"] for k in range(L)])[lane_of(s2.outer)], "cdraw_da")
            m.d.comb += [clsmem.wr.addr.eq(word_of(s2.outer)), clsmem.wr.en.eq(Const(1, L) << lane_of(s2.outer))]
            new = r if b.fell else _wire(m, shift_round(-da_k, b.clf_shift, G.cfmt.rounding, r), "cdraw_dw")
            for k in range(L):
                m.d.comb += [clsmem.wr.data[k]["da"].eq(da_k), clsmem.wr.data[k]["r" if b.fell else "dw"].eq(new)]

    def _backprop(self, m, b) -> None:
        """BACKPROP: ``delta_i = fit_E(R_E(lut(u_i) * sum_k w^a_ik delta^a_k))`` with its draw."""
        G, L, C, CPR = self.g, self.lanes, self.C, self.cpr
        cwmem, umem, clsmem, dlmem = b.cwmem, b.umem, b.clsmem, b.dlmem
        word_of, lane_of = self._lane_fns()
        s0, s1, s2 = b.loops["back"].s
        g_acc = Signal(signed(G.cfmt.width + b.sbits + C.bit_length() + 2))
        with m.If(s1.valid):
            m.d.comb += [cwmem.rd.addr.eq(_times(s1.outer, CPR) + s1.inner), umem.rd.addr.eq(word_of(s1.outer)), clsmem.rd.addr.eq(s1.inner)]
        with m.If(s2.valid):
            das = [clsmem.rd.data[k]["da"] for k in range(L)]
            partial = sum(cwmem.rd.data[k] * das[k] for k in range(L))
            g_total = _wire(m, Mux(s2.first, 0, g_acc) + partial, "back_g")
            m.d.sync += g_acc.eq(g_total)
            with m.If(s2.last):
                u_i = _wire(m, Array([umem.rd.data[k] for k in range(L)])[lane_of(s2.outer)], "back_u")
                g_sg = _wire(m, g_total * _sg(G.neurons, u_i), "back_g_sg")  # one multiplier: narrow reads it several times
                delta, _ = narrow(g_sg, G.err_shift, G.efmt)
                delta = _wire(m, delta, "back_delta")
                r = b.draw
                m.d.comb += b.lfsr_h.advance.eq(b.stoch_h)
                m.d.comb += [dlmem.wr.addr.eq(word_of(s2.outer)), dlmem.wr.en.eq(Const(1, L) << lane_of(s2.outer))]
                for k in range(L):
                    m.d.comb += [dlmem.wr.data[k]["d"].eq(delta), dlmem.wr.data[k]["r"].eq(r)]

    def _cupd(self, m, b) -> None:
        """CUPD (ELL): ``w^a += R(-delta^a)`` on the rows of this step's spikes."""
        G, L, CPR, cwmem, clsmem = self.g, self.lanes, self.cpr, b.cwmem, b.clsmem
        s0, s1, s2 = b.loops["cupd"].s
        with m.If(s0.valid):
            m.d.comb += b.spk_rd_addr.eq(s0.outer)
        with m.If(s1.valid):
            m.d.comb += [cwmem.rd.addr.eq(_times(b.spk.rd.data[0], CPR) + s1.inner), clsmem.rd.addr.eq(s1.inner)]
        with m.If(s2.valid):
            dws = [clsmem.rd.data[k]["dw"] for k in range(L)]
            m.d.comb += [cwmem.wr.addr.eq(_times(b.i1, CPR) + s2.inner), cwmem.wr.en.eq(Const(-1, L))]
            for k in range(L):
                value, _ = fit(cwmem.rd.data[k] + dws[k], G.cfmt)
                m.d.comb += cwmem.wr.data[k].eq(value)

    def _hupd(self, m, b) -> None:
        """HUPD (ELL): ``w += R(-delta x)`` on the rows of this step's input events."""
        G, WPR, wmem, dlmem = self.g, self.wpr, b.wmem, b.dlmem
        s0, s1, s2 = b.loops["hupd"].s
        with m.If(s0.valid):
            m.d.comb += self.ev.addr.eq(s0.outer)
        with m.If(s1.valid):
            m.d.comb += [wmem.rd.addr.eq(_times(b.ev_j, WPR) + s1.inner), dlmem.rd.addr.eq(s1.inner)]
        with m.If(s2.valid):
            self._update_words(m, wmem, _times(b.j1, WPR) + s2.inner, dlmem, b.xv if b.x1 is not None else None, b.hid_shift, G.wfmt)

    def _fell_traces(self, m, b) -> None:
        """CFTRACE / FTRACE (FELL): ``e = fit_T(R_T(e c) + x); w += R(-delta e)`` on the live rows
        (the classifier's, then the layer's)."""
        for is_clf in (True, False):
            self._fell_trace(m, b, is_clf)

    def _fell_trace(self, m, b, is_clf: bool) -> None:
        G, L, T_ = self.g, self.lanes, self.g.tfmt
        if is_clf:
            lp_, lst, curm, tmem, wm, fm, rowlen = b.loops["cftrace"], b.clive, b.ccurmem, b.cemem, b.cwmem, b.cfacmem, self.cpr
        else:
            lp_, lst, curm, tmem, wm, fm, rowlen = b.loops["ftrace"], b.live, b.curmem, b.emem, b.wmem, b.facmem, self.wpr
        s0, s1, s2 = lp_.s
        jreg = Signal(len(lst.rd.data[0]), name=f"{lp_.s[0].valid.name}_j")
        with m.If(s0.valid):
            m.d.comb += lst.rd.addr.eq(s0.outer)
        with m.If(s1.valid):
            j = lst.rd.data[0]
            m.d.comb += [tmem.rd.addr.eq(_times(j, rowlen) + s1.inner), wm.rd.addr.eq(_times(j, rowlen) + s1.inner), fm.rd.addr.eq(s1.inner), curm.rd.addr.eq(j)]
            m.d.comb += (b.clsmem if is_clf else b.dlmem).rd.addr.eq(s1.inner)
        m.d.sync += jreg.eq(lst.rd.data[0])
        with m.If(s2.valid):
            c0 = curm.rd.data[0]
            fresh = c0["first"] == b.t1
            active = c0["last"] == b.t1
            if is_clf:  # the presynaptic spike, the classes' errors and draws, the classifier's shift
                x_now = Mux(active, 1 << T_.frac, 0)
                dks = [b.clsmem.rd.data[k]["da"] for k in range(L)]
                rks = [b.clsmem.rd.data[k]["r"] for k in range(L)]
                shift, wfmt, ncols = b.clf_shift, G.cfmt, self.C
            else:  # the input in the trace's units, the neurons' errors and draws
                x_now = Mux(active, c0["x"] << (T_.frac - G.raw_frac), 0)
                dks = [b.dlmem.rd.data[k]["d"] for k in range(L)]
                rks = [b.dlmem.rd.data[k]["r"] for k in range(L)]
                shift, wfmt, ncols = b.hid_shift, G.wfmt, self.N
            m.d.comb += [tmem.wr.addr.eq(_times(jreg, rowlen) + s2.inner), tmem.wr.en.eq(Const(-1, L))]
            m.d.comb += [wm.wr.addr.eq(_times(jreg, rowlen) + s2.inner), wm.wr.en.eq(Mux(b.err_any, Const(-1, L), 0))]
            for k in range(L):
                e_old = Mux(fresh, 0, tmem.rd.data[k])
                pad = (s2.inner * L + k) >= ncols
                e_new, _ = fit(shift_round(e_old * fm.rd.data[k], T_.frac, T_.rounding) + x_now, T_)
                e_new = _wire(m, Mux(pad, 0, e_new), f"{lp_.s[0].valid.name}_e{k}")
                m.d.comb += tmem.wr.data[k].eq(e_new)
                change = shift_round(-(dks[k] * e_new), shift, wfmt.rounding, rks[k])
                value, _ = fit(wm.rd.data[k] + change, wfmt)
                m.d.comb += wm.wr.data[k].eq(value)
