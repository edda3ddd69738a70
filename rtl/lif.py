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

CUPD and HUPD run side by side, as do CFTRACE and FTRACE: the classifier's phase and the
layer's touch no memory in common (their lists, weights, traces and errors are each their own),
so the step waits for the longer of the two (``Phases.together``). Each phase's stages are in
its method's docstring (docs/rtl.md, "The pipeline").

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
from localsnn.rtl.layer import LayerBase, _sg_stages, _shift_register, _times, _tree_sum, _wire, build_clear, build_compact, build_live, make_live
from localsnn.rtl.fixed import fit, fmt_shape, shift_round_stages
from localsnn.rtl.lfsr import LFSR, shared_draw
from localsnn.rtl.loop import Loop
from localsnn.rtl.phases import Phases
from localsnn.rtl.neuron import integrate_stages, leak_stages
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

    def __init__(self, spec: NetworkSpec, index: int, lanes: int, params: LayerParams, regions: dict[str, int], ev_shape, ev_depth: int, lfsr_seeds: tuple[int, int], spram: bool = False, pipeline: str = "full") -> None:
        if spec.layers[index].neuron.model != "lif":
            raise BadValueError("LIFLayer needs a layer of 'lif' neurons")
        super().__init__(spec, index, lanes, params, regions, ev_shape, ev_depth, unsigned((spec.timesteps + 1).bit_length()), spram, pipeline)
        self.lfsr_seeds = lfsr_seeds
        # the stochastic-rounding streams round:<l> and round:<l>.clf (the top reads and seeds them)
        self.lfsrs = tuple(LFSR(spec.lfsr.width, seed, shared=True) for seed in lfsr_seeds) if self.learns else None


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
        for lp in b.loops.values():
            lp.close()
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
            loops[name] = Loop(m, name, outer, inner, outer_max=omax, inner_max=imax, inner_at_least_one=at_least_one, throttle=throttle, pipeline=self.pipeline)

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
        b.first_step = _wire(m, self.t == 0, "first_step")  # for the start of a step
        # the same, registered, for the datapaths (t holds still while the layer runs a step,
        # and they read it several clocks after the start)
        b.first_step_r = Signal(name="first_step_r")
        m.d.sync += b.first_step_r.eq(b.first_step)
        # COMPACT's handshake (the pipeline is built after the FSM)
        b.in_compact = Signal()
        b.compact_done = Signal()
        b.phases = Phases(m, self.PHASES, self.phase_bits, self.phase_cycles)
        lr = self.lr_shift
        b.hid_shift = _shift_register(m, lr, self.lr_base["hid"], "hid_shift")
        b.clf_shift = _shift_register(m, lr, self.lr_base["clf"], "clf_shift")

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
                ph.together("TRACES", {"CFTRACE": lp["cftrace"], "FTRACE": lp["ftrace"]}, ph.go("IDLE", self.done))
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
            m.d.comb += [b.loops["cftrace"].start.eq(1), b.loops["ftrace"].start.eq(1)]
            m.next = "TRACES"
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
            ph.run("BACKPROP", lp["back"].done, ph.go("TRACES", lp["cftrace"].start, lp["ftrace"].start))
        else:
            ph.run("BACKPROP", lp["back"].done, ph.go("UPDATES", lp["cupd"].start, lp["hupd"].start))
            ph.together("UPDATES", {"CUPD": lp["cupd"], "HUPD": lp["hupd"]}, ph.go("IDLE", self.done))

    def _factor_stages(self, lp, k: int, neurons, u_old) -> tuple[Value, int]:
        """FELL's ``c = du[t]/du[t-1] = R_T(D(1 - theta lut(u[t-1])))`` in the trace format's
        fractional bits (golden ``_fell_factor``), in 6 stages: the surrogate (2); ``1 - theta
        lut``; the leak (2); the shift to the trace format. Returns the registered ``c`` and 6
        (one stage after ``integrate_stages``' ``u'``)."""
        G = self.g
        one, shift = G.factor_constants(neurons)
        sg, ns = _sg_stages(lp, k, neurons, u_old)
        om = lp.delay(one - neurons.theta * sg, 1, k + ns)
        lk, n = leak_stages(lp, k + ns + 1, om, neurons.decay, G.tfmt.rounding)
        c, n2 = shift_round_stages(lp, k + ns + 1 + n, lk, shift, G.tfmt.rounding)
        return c, ns + 1 + n + n2

    def _fwd(self, m, b) -> None:
        """FWD: ``I = R_U(sum_j w_ji x_j); u, o = integrate(u, o, I)`` (FELL: and the factor c).

        Stages: 0 the event's address; 1 the event (registered); 2 the weight row's address;
        3 the weights (registered); 4 the products ``w x``; 5 the accumulation; 6 (at the last
        event of a word) ``u``, ``o`` arrive; 7-11 ``integrate_stages`` (FELL: 7-12 and
        ``_factor_stages``); 11 (FELL: 12) the writes."""
        G, L, N, WPR = self.g, self.lanes, self.N, self.wpr
        nrn, wmem, umem, omem = G.neurons, b.wmem, b.umem, b.omem
        lp = b.loops["fwd"]
        D = lp.delay
        st = lp.stage
        acc = [Signal(signed(self.spec.layers[self.index].accumulator), name=f"acc{k}") for k in range(L)]
        with m.If(st(0).valid):
            m.d.comb += self.ev.addr.eq(st(0).inner)
        lp.clocked(0, 2, 5)  # reads (and 5: the accumulation)
        j2 = D(b.ev_j, 1, 1, "fwd_j")
        x2 = D(b.ev_x, 1, 1, "fwd_x") if not self.binary else None
        with m.If(st(2).valid):
            m.d.comb += wmem.rd.addr.eq(_times(j2, WPR) + st(2).outer)
        with m.If(st(5).valid):
            m.d.comb += [umem.rd.addr.eq(st(5).outer), omem.rd.addr.eq(st(5).outer)]
        x4 = D(x2, 2, 2) if x2 is not None else None
        new_u, new_o, facs = [], [], []
        for k in range(L):
            w4 = D(wmem.rd.data[k], 1, 3, f"fwd_w{k}")
            prod5 = D(Mux(st(4).empty, 0, w4 * x4 if x4 is not None else w4), 1, 4, f"fwd_p{k}")
            total = _wire(m, Mux(st(5).first, 0, acc[k]) + prod5, f"fwd_total{k}")
            with m.If(st(5).valid):
                m.d.sync += acc[k].eq(total)
            # stage 6: acc holds the word's sum (the last event's total)
            u_old = _wire(m, Mux(b.first_step_r, 0, umem.rd.data[k]), f"fwd_u_old{k}")
            o_old = Mux(b.first_step_r, 0, omem.rd.data[k])
            u_new, o_new, n = integrate_stages(lp, 6, nrn, u_old, o_old, acc[k], G.cur_shift)
            if b.fell:  # FELL's factor is one stage longer than the neuron update
                c, nc = self._factor_stages(lp, 6, nrn, u_old)
                w = 6 + nc
                facs.append(c)
                u_new, o_new = D(u_new, nc - n, 6 + n), D(o_new, nc - n, 6 + n)
            else:
                w = 6 + n
            pad = (st(w).outer * L + k) >= N
            new_u.append(Mux(pad, 0, u_new))
            new_o.append(Mux(pad, 0, o_new))
        ws = st(w)
        with m.If(ws.valid & ws.last):
            m.d.comb += [umem.wr.addr.eq(ws.outer), umem.wr.en.eq(Const(-1, L)), omem.wr.addr.eq(ws.outer), omem.wr.en.eq(Const(-1, L))]
            for k in range(L):
                m.d.comb += [umem.wr.data[k].eq(new_u[k]), omem.wr.data[k].eq(new_o[k])]
            if b.fell:
                m.d.comb += [b.facmem.wr.addr.eq(ws.outer), b.facmem.wr.en.eq(Const(-1, L))]
                m.d.comb += [b.facmem.wr.data[k].eq(c) for k, c in enumerate(facs)]

    def _cfwd(self, m, b) -> None:
        """CFWD: the classifier, and ``delta^a_k = (o^a_k - y_k) lut(u^a_k)``.

        Stages: 0 the spike's address; 1 the spike (registered); 2 the classifier row's address;
        3 the weights (registered); 4 the accumulation; 5 (at the last spike of a word) ``u^a``,
        ``o^a`` arrive; 6-10 ``integrate_stages``; 10 the potentials and spikes written and
        counted; 11-12 the surrogate of the new potential; 13 the errors written, ``err_any``
        (FELL: and the factors)."""
        G, L, C, CPR = self.g, self.lanes, self.C, self.cpr
        cn, cwmem, cumem, comem, spk = G.clf_neurons, b.cwmem, b.cumem, b.comem, b.spk
        lp = b.loops["cfwd"]
        D = lp.delay
        st = lp.stage
        cacc = [Signal(signed(self.spec.layers[self.index].classifier.accumulator), name=f"cacc{k}") for k in range(L)]
        with m.If(st(0).valid):
            m.d.comb += b.spk_rd_addr.eq(st(0).inner)
        lp.clocked(0, 2, 4)  # reads (and 4: the accumulation)
        i2 = D(spk.rd.data[0], 1, 1, "cfwd_i")
        with m.If(st(2).valid):
            m.d.comb += cwmem.rd.addr.eq(_times(i2, CPR) + st(2).outer)
        with m.If(st(4).valid):
            m.d.comb += [cumem.rd.addr.eq(st(4).outer), comem.rd.addr.eq(st(4).outer)]
        outs, facs = [], []
        for k in range(L):
            w4 = D(cwmem.rd.data[k], 1, 3, f"cfwd_w{k}")
            total = _wire(m, Mux(st(4).first, 0, cacc[k]) + Mux(st(4).empty, 0, w4), f"cfwd_total{k}")
            with m.If(st(4).valid):
                m.d.sync += cacc[k].eq(total)
            u_old = _wire(m, Mux(b.first_step_r, 0, cumem.rd.data[k]), f"cfwd_u_old{k}")
            o_old = Mux(b.first_step_r, 0, comem.rd.data[k])
            u_new, o_new, n = integrate_stages(lp, 5, cn, u_old, o_old, cacc[k], G.clf_cur_shift)
            outs.append((u_new, o_new))
            if b.fell:
                c, nc = self._factor_stages(lp, 5, cn, u_old)
                facs.append(D(c, n + 3 - nc, 5 + nc))  # written with the errors
        ws = st(5 + n)  # the neurons' writes
        es = st(5 + n + 3)  # the errors' write
        if b.fell:
            with m.If(es.valid & es.last):
                m.d.comb += [b.cfacmem.wr.addr.eq(es.outer), b.cfacmem.wr.en.eq(Const(-1, L))]
                m.d.comb += [b.cfacmem.wr.data[k].eq(facs[k]) for k in range(L)]
        with m.If(ws.valid & ws.last):
            m.d.comb += [cumem.wr.addr.eq(ws.outer), cumem.wr.en.eq(Const(-1, L)), comem.wr.addr.eq(ws.outer), comem.wr.en.eq(Const(-1, L))]
            with m.Switch(ws.outer):
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
            # delta^a of lane k's class (no multiplier: o - y is -1, 0 or 1); padding lanes
            # (classes >= C) keep delta^a = 0
            das = []
            gs = st(5 + n + 2)  # the surrogates' stage
            for k in range(L):
                u_new, o_new = outs[k]
                sg, ns = _sg_stages(lp, 5 + n, cn, u_new)
                o_g = D(o_new, ns, 5 + n)
                cls = gs.outer * L + k
                y_g = self.label == cls
                da = Mux(o_g & ~y_g, sg, Mux(~o_g & y_g, -sg, 0))
                das.append(D(Mux(cls >= C, 0, da), 1, 5 + n + ns, f"da_next{k}"))
            with m.If(es.valid & es.last):
                m.d.comb += [b.clsmem.wr.addr.eq(es.outer), b.clsmem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    m.d.comb += b.clsmem.wr.data[k]["da"].eq(das[k])
                    with m.If(das[k] != 0):
                        m.d.sync += b.err_any.eq(1)
        m.d.comb += self.clf_spikes.eq(b.spikes_now)

    def _cdraw(self, m, b) -> None:
        """CDRAW: one ``round:<l>.clf`` draw per class, in class order; ELL: the classifier change
        ``R(-delta^a_k)``, the same for every spiking row, by one rounding unit (one class per clock).

        Stages: 1 the class's word is read; 2 its lane (registered); 3 the draw and the rounding
        sum; 4 the shift; 5 the class's lane written (only its lane: the next class, in the same
        word, was read before this write and keeps its own lane)."""
        G, L, clsmem = self.g, self.lanes, b.clsmem
        word_of, lane_of = self._lane_fns()
        lp = b.loops["cdraw"]
        D, st = lp.delay, lp.stage
        with m.If(st(1).valid):
            m.d.comb += clsmem.rd.addr.eq(word_of(st(1).outer))
        lp.clocked(1)
        da3 = D(Array([clsmem.rd.data[k]["da"] for k in range(L)])[lane_of(st(2).outer)], 1, 2, "cdraw_da")
        with m.If(st(3).valid):
            m.d.comb += [b.draw_clf.eq(1), b.lfsr_c.advance.eq(b.stoch_c)]
        if b.fell:
            new = D(b.draw, 2, 3, "cdraw_r")
        else:
            new, n = shift_round_stages(lp, 3, -da3, b.clf_shift, G.cfmt.rounding, b.draw)
            new = D(new, 2 - n, 3 + n, "cdraw_dw")
        ws = st(5)
        with m.If(ws.valid):
            m.d.comb += [clsmem.wr.addr.eq(word_of(ws.outer)), clsmem.wr.en.eq(Const(1, L) << lane_of(ws.outer))]
            da5 = D(da3, 2, 3)
            for k in range(L):
                m.d.comb += [clsmem.wr.data[k]["da"].eq(da5), clsmem.wr.data[k]["r" if b.fell else "dw"].eq(new)]

    def _backprop(self, m, b) -> None:
        """BACKPROP: ``delta_i = fit_E(R_E(lut(u_i) * sum_k w^a_ik delta^a_k))`` with its draw.

        Stages: 1 the classifier row's word and the errors are read; 2 registered; 3 the lanes'
        products; 4 their sum; 5 the accumulation; 6 (at the row's last word) ``u_i`` arrives,
        its lane; 7 its surrogate; 8 ``g lut(u_i)``; 9 the rounding; 10 ``fit_E``; 11 the draw,
        the write."""
        G, L, C, CPR = self.g, self.lanes, self.C, self.cpr
        cwmem, umem, clsmem, dlmem = b.cwmem, b.umem, b.clsmem, b.dlmem
        lp = b.loops["back"]
        D, st = lp.delay, lp.stage
        g_acc = Signal(signed(G.cfmt.width + b.sbits + C.bit_length() + 2))
        with m.If(st(1).valid):
            m.d.comb += [cwmem.rd.addr.eq(_times(st(1).outer, CPR) + st(1).inner), clsmem.rd.addr.eq(st(1).inner)]
        lp.clocked(1, 5)  # reads (and 5: the accumulation)
        prods = [D(D(cwmem.rd.data[k], 1, 2) * D(clsmem.rd.data[k]["da"], 1, 2), 1, 3, f"back_p{k}") for k in range(L)]  # stage 4
        partial = D(_tree_sum(prods), 1, 4, "back_partial")  # stage 5
        self._deltas(m, lp, 5, g_acc, partial, umem, dlmem, b.draw, b.lfsr_h.advance, b.stoch_h)

    def _cupd(self, m, b) -> None:
        """CUPD (ELL): ``w^a += R(-delta^a)`` on the rows of this step's spikes.

        Stages: 0 the spike's address; 1 the spike (registered); 2 the row's word and the
        changes are read; 3 registered; 4 the sum; 5 its ``fit`` written (an odd distance from
        the read, for a single-port memory)."""
        G, L, CPR, cwmem, clsmem = self.g, self.lanes, self.cpr, b.cwmem, b.clsmem
        lp = b.loops["cupd"]
        D, st = lp.delay, lp.stage
        with m.If(st(0).valid):
            m.d.comb += b.spk_rd_addr.eq(st(0).outer)
        lp.clocked(0, 2)
        i2 = D(b.spk.rd.data[0], 1, 1, "cupd_i")
        addr = _wire(m, _times(i2, CPR) + st(2).inner, "cupd_addr")
        with m.If(st(2).valid):
            m.d.comb += [cwmem.rd.addr.eq(addr), clsmem.rd.addr.eq(st(2).inner)]
        lp.check_rw(2, 5)
        totals = [D(D(cwmem.rd.data[k], 1, 3) + D(clsmem.rd.data[k]["dw"], 1, 3), 1, 4) for k in range(L)]  # stage 5
        ws = st(5)
        with m.If(ws.valid):  # (the bus writes this memory too, while the layer is idle)
            m.d.comb += [cwmem.wr.addr.eq(D(addr, 3, 2)), cwmem.wr.en.eq(Const(-1, L))]
            m.d.comb += [cwmem.wr.data[k].eq(fit(totals[k], G.cfmt)[0]) for k in range(L)]

    def _hupd(self, m, b) -> None:
        """HUPD (ELL): ``w += R(-delta x)`` on the rows of this step's input events: 0 the
        event's address, 1 the event (registered), then ``_update_words`` from stage 2."""
        G, WPR, lp = self.g, self.wpr, b.loops["hupd"]
        D, st = lp.delay, lp.stage
        with m.If(st(0).valid):
            m.d.comb += self.ev.addr.eq(st(0).outer)
        lp.clocked(0)  # (and stage 2: _update_words)
        j2 = D(b.ev_j, 1, 1, "hupd_j")
        x2 = D(b.ev_x, 1, 1, "hupd_x") if not self.binary else None
        self._update_words(m, lp, 2, b.wmem, _wire(m, _times(j2, WPR) + st(2).inner, "hupd_addr"), b.dlmem, st(2).inner, x2, b.hid_shift, G.wfmt)

    def _fell_traces(self, m, b) -> None:
        """CFTRACE / FTRACE (FELL): ``e = fit_T(R_T(e c) + x); w += R(-delta e)`` on the live rows
        (the classifier's, then the layer's)."""
        for is_clf in (True, False):
            self._fell_trace(m, b, is_clf)

    def _fell_trace(self, m, b, is_clf: bool) -> None:
        """Stages: 0 the live row's address; 1 the row (registered); 2 the row's trace and
        weight words, the factors, the stamps and the errors are read; 3 registered, with
        ``fresh`` and ``active`` from the stamps; 4 ``e c``; 5 its rounding; 6 ``+ x``; 7
        ``fit_T`` and the trace written; 8 ``delta e``; 9-10 its rounding; 11 the sum; 12 its
        ``fit``; 13 the weight written (the writes at odd distances from the read, for
        single-port memories)."""
        G, L, T_ = self.g, self.lanes, self.g.tfmt
        if is_clf:
            lp_, lst, curm, tmem, wm, fm, rowlen = b.loops["cftrace"], b.clive, b.ccurmem, b.cemem, b.cwmem, b.cfacmem, self.cpr
        else:
            lp_, lst, curm, tmem, wm, fm, rowlen = b.loops["ftrace"], b.live, b.curmem, b.emem, b.wmem, b.facmem, self.wpr
        D, st = lp_.delay, lp_.stage
        name = lp_.name
        errs = b.clsmem if is_clf else b.dlmem
        with m.If(st(0).valid):
            m.d.comb += lst.rd.addr.eq(st(0).outer)
        lp_.clocked(0, 2)
        j2 = D(lst.rd.data[0], 1, 1, f"{name}_j")
        addr = _wire(m, _times(j2, rowlen) + st(2).inner, f"{name}_addr")
        with m.If(st(2).valid):
            m.d.comb += [tmem.rd.addr.eq(addr), wm.rd.addr.eq(addr), fm.rd.addr.eq(st(2).inner), curm.rd.addr.eq(j2), errs.rd.addr.eq(st(2).inner)]
        c0 = curm.rd.data[0]
        fresh4 = D(c0["first"] == b.t1, 1, 3)
        active = c0["last"] == b.t1
        if is_clf:  # the presynaptic spike, the classes' errors and draws, the classifier's shift
            x3 = Mux(active, 1 << T_.frac, 0)
            dks = [errs.rd.data[k]["da"] for k in range(L)]
            rks = [errs.rd.data[k]["r"] for k in range(L)]
            shift, wfmt, ncols = b.clf_shift, G.cfmt, self.C
        else:  # the input in the trace's units, the neurons' errors and draws
            x3 = Mux(active, c0["x"] << (T_.frac - G.raw_frac), 0)
            dks = [errs.rd.data[k]["d"] for k in range(L)]
            rks = [errs.rd.data[k]["r"] for k in range(L)]
            shift, wfmt, ncols = b.hid_shift, G.wfmt, self.N
        x6 = D(x3, 3, 3, f"{name}_x")
        lp_.check_rw(2, 7)
        lp_.check_rw(2, 13)
        e_news, w_news = [], []
        for k in range(L):
            e_old = Mux(fresh4, 0, D(tmem.rd.data[k], 1, 3))
            prod5 = D(e_old * D(fm.rd.data[k], 1, 3), 1, 4)
            rounded6, n = shift_round_stages(lp_, 5, prod5, T_.frac, T_.rounding)
            assert n == 1
            e_sum7 = D(rounded6 + x6, 1, 6)
            pad = (st(7).inner * L + k) >= ncols
            e_new = _wire(m, Mux(pad, 0, fit(e_sum7, T_)[0]), f"{name}_e{k}")
            e_news.append(e_new)
            raw9 = D(-(D(dks[k], 5, 3) * D(e_new, 1, 7)), 1, 8)  # stage 9
            change, n2 = shift_round_stages(lp_, 9, raw9, shift, wfmt.rounding, D(rks[k], 6, 3))
            total = D(D(wm.rd.data[k], 6 + n2, 3) + change, 1, 9 + n2)  # stage 10 + n2
            w_news.append(D(fit(total, wfmt)[0], 13 - 10 - n2, 10 + n2))
        # (the bus writes these memories too, while the layer is idle)
        with m.If(st(7).valid):
            m.d.comb += [tmem.wr.addr.eq(D(addr, 5, 2)), tmem.wr.en.eq(Const(-1, L))]
            m.d.comb += [tmem.wr.data[k].eq(v) for k, v in enumerate(e_news)]
        with m.If(st(13).valid):
            m.d.comb += [wm.wr.addr.eq(D(addr, 11, 2)), wm.wr.en.eq(Mux(b.err_any, Const(-1, L), 0))]
            m.d.comb += [wm.wr.data[k].eq(v) for k, v in enumerate(w_news)]
