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

from amaranth import Array, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data

from localsnn.chip import PHASES, SPRAM_KEYS
from localsnn.golden.fixed import bits_of
from localsnn.golden.params import LayerParams
from localsnn.rtl.common import LaneMemory
from localsnn.rtl.layer import LayerBase, _sg, _times, _wire, build_clear, build_compact, build_live, make_live
from localsnn.rtl.fixed import fit, fmt_shape, narrow, shift_round
from localsnn.rtl.lfsr import LFSR, shared_draw
from localsnn.rtl.loop import Loop
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
            raise ValueError("LIFLayer needs a layer of 'lif' neurons")
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
        G, L, N, C = self.g, self.lanes, self.N, self.C
        WPR, CPR = self.wpr, self.cpr
        nrn, cn = G.neurons, G.clf_neurons
        fell = self.traces
        learns = self.learns
        stoch_h = self.spec.layers[self.index].weight.rounding == "stochastic"
        stoch_c = self.spec.layers[self.index].classifier.weight.rounding == "stochastic"
        lane_of = lambda v: v[: self.log2l] if self.log2l else Const(0, 1)  # noqa: E731
        word_of = lambda v: v >> self.log2l  # noqa: E731

        # ---- memories ------------------------------------------------------------------------
        wmem = self._weight_memory(m, "w", fmt_shape(G.wfmt), self.params.w, WPR)
        umem = LaneMemory(m, "u", fmt_shape(nrn.potential), L, WPR)
        omem = LaneMemory(m, "o", unsigned(1), L, WPR)
        cwmem = self._weight_memory(m, "cw", fmt_shape(G.cfmt), self.params.clf_w, CPR)
        cumem = LaneMemory(m, "cu", fmt_shape(cn.potential), L, CPR)
        comem = LaneMemory(m, "co", unsigned(1), L, CPR)
        spk, spk_rd_addr, spk_count, spk_base, spk_publish = self._spike_list(m)
        mems = {"w": wmem, "u": umem, "o": omem, "cw": cwmem, "cu": cumem, "co": comem}
        if learns:
            wl = self.spec.layers[self.index]
            rbits = self.spec.lfsr.width if (wl.weight.rounding == "stochastic" or wl.classifier.weight.rounding == "stochastic") else 1
            dl_layout = data.StructLayout({"d": fmt_shape(G.efmt), "r": unsigned(rbits)})
            dlmem = LaneMemory(m, "delta", dl_layout, L, WPR)
            lfsr_h, lfsr_c = self.lfsrs  # submodules of the top, which reads and seeds them
            draw_clf = Signal()  # the shared draw network serves round:<l>.clf (else round:<l>)
            draw = shared_draw(m, [lfsr_h, lfsr_c], draw_clf)
        if fell:
            T_ = G.tfmt
            tmax = self.spec.timesteps
            emem = LaneMemory(m, "e", fmt_shape(T_), L, self.fan_in * WPR, single_port=self.spram)  # FTRACE masks stale traces
            cemem = LaneMemory(m, "ce", fmt_shape(T_), L, N * CPR, single_port=self.spram)
            fac_shape = signed(self._factor_bits())
            facmem = LaneMemory(m, "fac", fac_shape, L, WPR)
            cfacmem = LaneMemory(m, "cfac", fac_shape, L, CPR)
            xbits = max(G.x_max.bit_length(), 1)
            curmem, live, n_live = make_live(m, "in", self.fan_in, tmax, xbits)
            ccurmem, clive, n_clive = make_live(m, "hid", N, tmax, None)
            mems.update({"e": emem, "ce": cemem})

        # ---- per-class values: a memory of classifier words, read with the classifier weights ----
        # da: delta^a_k (frac f_s), written by CFWD; dw (ELL): the classifier change R(-delta^a_k),
        # or r (FELL): the class's draw, both written by CDRAW (which rewrites da as it read it)
        sbits = self.spec.learning.surrogate.format.width + 2
        err_any = Signal()
        spikes_now = Signal(C)
        if learns:
            crbits = self.spec.lfsr.width if stoch_c else 1
            # |R(-delta^a, s)| <= |delta^a| <= lut max for every shift s >= 0: dw needs no more
            # bits than da (the classifier weight's width is no bound: a narrow weight format
            # with a large surrogate gets a change larger than any weight, which saturates)
            cls_layout = data.StructLayout({"da": signed(sbits), "dw" if not fell else "r": signed(sbits) if not fell else unsigned(crbits)})
            clsmem = LaneMemory(m, "cls", cls_layout, L, CPR, block_ram=True)
            m.d.comb += clsmem.rd.en.eq(1)

        # ---- the pipeline loops -----------------------------------------------------------------
        ev_count = self.ev_count
        loops = {}

        def loop(name, outer, inner, omax, imax, at_least_one=False, throttle=False):
            lp = Loop(m, name, outer, inner, outer_max=omax, inner_max=imax, inner_at_least_one=at_least_one, throttle=throttle)
            loops[name] = lp
            return lp

        fwd = loop("fwd", WPR, ev_count, WPR, self.fan_in, True)
        cfwd = loop("cfwd", CPR, spk_count, CPR, N, True)
        if learns:
            cdr = loop("cdraw", C, 1, C, 1)
            back = loop("back", N, CPR, N, CPR)
            cupd = loop("cupd", spk_count, CPR, N, CPR, throttle=self.spram)  # reads and writes cw
            hupd = loop("hupd", ev_count, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes w
        if fell:
            lv = loop("live", ev_count, 1, self.fan_in, 1)
            clv = loop("clive", spk_count, 1, N, 1)
            ftr = loop("ftrace", n_live, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes e, w
            cftr = loop("cftrace", n_clive, CPR, N, CPR, throttle=self.spram)  # reads and writes ce, cw
            clr = loop("clear", n_live, 1, self.fan_in, 1)
            cclr = loop("cclear", n_clive, 1, N, 1)

        ev_j = self.ev.data["index"] if not self.binary else self.ev.data
        ev_x = self.ev.data["value"] if not self.binary else Const(1, 1)
        m.d.comb += self.ev.en.eq(1)
        for mem in (wmem, umem, omem, cwmem, cumem, comem) + ((dlmem,) if learns else ()) + ((emem, cemem, facmem, cfacmem, curmem, ccurmem, live, clive) if fell else ()):
            m.d.comb += mem.rd.en.eq(1)

        t1 = _wire(m, self.t + 1, "stamp")  # the stamp of this step (0 means never)
        first_step = _wire(m, self.t == 0, "first_step")

        # ---- COMPACT state (declared here, built after the FSM) ----------------------------------
        in_compact = Signal()
        compact_done = Signal()

        # ---- control FSM ------------------------------------------------------------------------
        phase_cnt = [Signal(self.phase_bits, name=f"pc_{p}") for p in self.PHASES]
        for k, sig in enumerate(phase_cnt):
            m.d.comb += self.phase_cycles[k].eq(sig)
        lr = self.lr_shift
        hid_shift = _wire(m, (lr + self.lr_base["hid"])[:6], "hid_shift")  # >= 0 for every allowed lr_shift
        clf_shift = _wire(m, (lr + self.lr_base["clf"])[:6], "clf_shift")

        with m.FSM(name="ctl") as fsm:
            with m.State("IDLE"):
                self._debug_port(m, mems)
                with m.If(self.start):
                    m.d.comb += fwd.start.eq(1)
                    for sig in phase_cnt:
                        m.d.sync += sig.eq(0)
                    m.d.sync += [err_any.eq(0), spikes_now.eq(0)]
                    with m.If(first_step):
                        m.d.sync += self.counts.eq(0)
                    if fell:
                        with m.If(first_step):
                            m.d.sync += [n_live.eq(0), n_clive.eq(0)]
                    m.next = "FWD"
                with m.If(self.finish):
                    if fell:
                        m.d.comb += clr.start.eq(1)
                        m.next = "CLEAR"
                    else:
                        m.d.comb += self.done.eq(1)
            with m.State("FWD"):
                m.d.sync += phase_cnt[0].eq(phase_cnt[0] + 1)
                with m.If(fwd.done):
                    m.next = "COMPACT"
            with m.State("COMPACT"):  # the pipeline is built below
                m.d.sync += phase_cnt[1].eq(phase_cnt[1] + 1)
                m.d.comb += in_compact.eq(1)
                with m.If(compact_done):
                    m.next = "CFWD0"
            with m.State("CFWD0"):  # spk_count is final now
                m.d.comb += spk_publish.eq(1)  # the next layer may read this step's spikes
                m.d.sync += phase_cnt[1].eq(phase_cnt[1] + 1)
                m.d.comb += cfwd.start.eq(1)
                m.next = "CFWD"
            with m.State("CFWD"):
                m.d.sync += phase_cnt[2].eq(phase_cnt[2] + 1)
                with m.If(cfwd.done):
                    if not learns:
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                    else:
                        with m.If(~self.learn | ~self.label_valid):
                            m.d.comb += self.done.eq(1)
                            m.next = "IDLE"
                        with m.Else():
                            if fell:
                                m.d.comb += lv.start.eq(1)
                                m.next = "LIVE"
                            else:
                                m.next = "CDRAW"
            if fell:
                with m.State("LIVE"):
                    m.d.sync += phase_cnt[3].eq(phase_cnt[3] + 1)
                    with m.If(lv.done):
                        m.d.comb += clv.start.eq(1)
                        m.next = "CLIVE"
                with m.State("CLIVE"):
                    m.d.sync += phase_cnt[4].eq(phase_cnt[4] + 1)
                    with m.If(clv.done):
                        m.next = "CDRAW"
            if learns:
                skip_c = C if stoch_c else 0
                skips = skip_c + (N if stoch_h else 0)

                def after_skip():
                    if fell:
                        m.d.comb += cftr.start.eq(1)
                        m.next = "CFTRACE"
                    else:
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"

                if skips:
                    skip_k = Signal(range(max(skips, 2)))  # (never 0 bits wide)
                    with m.State("SKIP"):
                        m.d.sync += [phase_cnt[5].eq(phase_cnt[5] + 1), skip_k.eq(skip_k + 1)]
                        clf_draws = [draw_clf.eq(1), lfsr_c.advance.eq(1)]
                        if skip_c == skips:  # only round:<l>.clf draws (no constant compare)
                            m.d.comb += clf_draws
                        elif skip_c == 0:
                            m.d.comb += lfsr_h.advance.eq(1)
                        else:
                            with m.If(skip_k < skip_c):
                                m.d.comb += clf_draws
                            with m.Else():
                                m.d.comb += lfsr_h.advance.eq(1)
                        with m.If(skip_k == skips - 1):
                            m.d.sync += skip_k.eq(0)
                            after_skip()
                with m.State("CDRAW"):
                    m.d.sync += phase_cnt[5].eq(phase_cnt[5] + 1)
                    with m.If(~err_any):
                        # no error: golden draws and discards C + N words; SKIP them
                        if skips:
                            m.next = "SKIP"
                        else:
                            after_skip()
                    with m.Else():
                        m.d.comb += cdr.start.eq(1)
                        m.next = "CDRAW_RUN"
                with m.State("CDRAW_RUN"):
                    m.d.sync += phase_cnt[5].eq(phase_cnt[5] + 1)
                    with m.If(cdr.done):
                        m.d.comb += back.start.eq(1)
                        m.next = "BACKPROP"
                with m.State("BACKPROP"):
                    m.d.sync += phase_cnt[6].eq(phase_cnt[6] + 1)
                    with m.If(back.done):
                        if fell:
                            m.d.comb += cftr.start.eq(1)
                            m.next = "CFTRACE"
                        else:
                            m.d.comb += cupd.start.eq(1)
                            m.next = "CUPD"
                if not fell:
                    with m.State("CUPD"):
                        m.d.sync += phase_cnt[7].eq(phase_cnt[7] + 1)
                        with m.If(cupd.done):
                            m.d.comb += hupd.start.eq(1)
                            m.next = "HUPD"
                    with m.State("HUPD"):
                        m.d.sync += phase_cnt[8].eq(phase_cnt[8] + 1)
                        with m.If(hupd.done):
                            m.d.comb += self.done.eq(1)
                            m.next = "IDLE"
            if fell:
                with m.State("CFTRACE"):
                    m.d.sync += phase_cnt[9].eq(phase_cnt[9] + 1)
                    with m.If(cftr.done):
                        m.d.comb += ftr.start.eq(1)
                        m.next = "FTRACE"
                with m.State("FTRACE"):
                    m.d.sync += phase_cnt[10].eq(phase_cnt[10] + 1)
                    with m.If(ftr.done):
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"
                with m.State("CLEAR"):
                    with m.If(clr.done):
                        m.d.comb += cclr.start.eq(1)
                        m.next = "CCLEAR"
                with m.State("CCLEAR"):
                    with m.If(cclr.done):
                        m.d.sync += [n_live.eq(0), n_clive.eq(0)]
                        m.d.comb += self.done.eq(1)
                        m.next = "IDLE"

        # ---- FWD: I = R_U(sum_j w_ji x_j); u, o = integrate(u, o, I) ----------------------------
        x1 = Signal.like(ev_x) if not self.binary else None
        j1 = Signal(len(Value.cast(ev_j)))
        s0, s1, s2 = fwd.s
        acc = [Signal(signed(self.spec.layers[self.index].accumulator), name=f"acc{k}") for k in range(L)]
        with m.If(s0.valid):
            m.d.comb += self.ev.addr.eq(s0.inner)
        with m.If(s1.valid):
            m.d.comb += [wmem.rd.addr.eq(_times(ev_j, WPR) + s1.outer), umem.rd.addr.eq(s1.outer), omem.rd.addr.eq(s1.outer)]
            if fell:
                m.d.comb += facmem.rd.addr.eq(s1.outer)
        m.d.sync += j1.eq(ev_j)
        if x1 is not None:
            m.d.sync += x1.eq(ev_x)
        xv = x1 if x1 is not None else Const(1, 1)
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
                if fell:
                    m.d.comb += facmem.wr.data[k].eq(self._factor(nrn, u_old))
            with m.If(s2.last):
                m.d.comb += [umem.wr.addr.eq(s2.outer), umem.wr.en.eq(Const(-1, L)), omem.wr.addr.eq(s2.outer), omem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    m.d.comb += [umem.wr.data[k].eq(new_u[k]), omem.wr.data[k].eq(new_o[k])]
                if fell:
                    m.d.comb += [facmem.wr.addr.eq(s2.outer), facmem.wr.en.eq(Const(-1, L))]

        # ---- COMPACT: the spike list -----------------------------------------------------------
        build_compact(m, omem, spk, WPR, L, in_compact, fwd.done, spk_count, compact_done, spk_base)

        # ---- CFWD: the classifier, and delta^a_k = (o^a_k - y_k) lut(u^a_k) --------------------
        s0, s1, s2 = cfwd.s
        cacc = [Signal(signed(self.spec.layers[self.index].classifier.accumulator), name=f"cacc{k}") for k in range(L)]
        with m.If(s0.valid):
            m.d.comb += spk_rd_addr.eq(s0.inner)
        i1 = Signal(self.idx_bits)
        m.d.sync += i1.eq(spk.rd.data[0])
        with m.If(s1.valid):
            m.d.comb += [cwmem.rd.addr.eq(_times(spk.rd.data[0], CPR) + s1.outer), cumem.rd.addr.eq(s1.outer), comem.rd.addr.eq(s1.outer)]
            if fell:
                m.d.comb += cfacmem.rd.addr.eq(s1.outer)
        with m.If(s2.valid):
            outs, outs_sg = [], []
            for k in range(L):
                prod = Mux(s2.empty, 0, cwmem.rd.data[k])
                total = _wire(m, Mux(s2.first, 0, cacc[k]) + prod, f"cfwd_total{k}")
                m.d.sync += cacc[k].eq(total)
                u_old = _wire(m, Mux(first_step, 0, cumem.rd.data[k]), f"cfwd_u_old{k}")
                o_old = Mux(first_step, 0, comem.rd.data[k])
                cur = shift_round(total, G.clf_cur_shift, cn.potential.rounding)
                u_new, o_new, _ = integrate(cn, u_old, o_old, cur)
                u_new, o_new = _wire(m, u_new, f"cfwd_u{k}"), _wire(m, o_new, f"cfwd_o{k}")
                outs_sg.append(_wire(m, _sg(cn, u_new), f"cfwd_sg{k}"))
                outs.append((u_new, o_new))
                if fell:
                    m.d.comb += cfacmem.wr.data[k].eq(self._factor(cn, u_old))
            with m.If(s2.last):
                m.d.comb += [cumem.wr.addr.eq(s2.outer), cumem.wr.en.eq(Const(-1, L)), comem.wr.addr.eq(s2.outer), comem.wr.en.eq(Const(-1, L))]
                if fell:
                    m.d.comb += [cfacmem.wr.addr.eq(s2.outer), cfacmem.wr.en.eq(Const(-1, L))]
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
                                m.d.sync += [spikes_now[c].eq(o_new), self.counts[c].eq(self.counts[c] + o_new)]
                                if learns:
                                    m.d.comb += clsmem.wr.data[k]["da"].eq(da_next[k])
                                    with m.If(da_next[k] != 0):
                                        m.d.sync += err_any.eq(1)
                if learns:  # padding lanes (classes >= C) keep delta^a = 0
                    m.d.comb += [clsmem.wr.addr.eq(s2.outer), clsmem.wr.en.eq(Const(-1, L))]
        m.d.comb += self.clf_spikes.eq(spikes_now)

        # ---- LIVE / CLIVE (FELL): rows whose traces can be nonzero ------------------------------
        if fell:
            build_live(m, lv, self.ev.addr, ev_j, ev_x, curmem, live, n_live, t1)
            build_live(m, clv, spk_rd_addr, spk.rd.data[0], None, ccurmem, clive, n_clive, t1)

        # ---- CDRAW: one round:<l>.clf draw per class, in class order; ELL: the classifier change
        # R(-delta^a_k), the same for every spiking row, by one rounding unit (one class per clock)
        if learns:
            s0, s1, s2 = cdr.s
            with m.If(s1.valid):
                m.d.comb += clsmem.rd.addr.eq(word_of(s1.outer))
            with m.If(s2.valid):
                r = draw
                m.d.comb += [draw_clf.eq(1), lfsr_c.advance.eq(stoch_c)]
                da_k = _wire(m, Array([clsmem.rd.data[k]["da"] for k in range(L)])[lane_of(s2.outer)], "cdraw_da")
                m.d.comb += [clsmem.wr.addr.eq(word_of(s2.outer)), clsmem.wr.en.eq(Const(1, L) << lane_of(s2.outer))]
                new = r if fell else _wire(m, shift_round(-da_k, clf_shift, G.cfmt.rounding, r), "cdraw_dw")
                for k in range(L):
                    m.d.comb += [clsmem.wr.data[k]["da"].eq(da_k), clsmem.wr.data[k]["r" if fell else "dw"].eq(new)]

        # ---- BACKPROP: delta_i = fit_E(R_E(lut(u_i) * sum_k w^a_ik delta^a_k)) -------------------
        if learns:
            s0, s1, s2 = back.s
            g_acc = Signal(signed(G.cfmt.width + sbits + C.bit_length() + 2))
            with m.If(s1.valid):
                m.d.comb += [cwmem.rd.addr.eq(_times(s1.outer, CPR) + s1.inner), umem.rd.addr.eq(word_of(s1.outer)), clsmem.rd.addr.eq(s1.inner)]
            with m.If(s2.valid):
                das = [clsmem.rd.data[k]["da"] for k in range(L)]
                partial = sum(cwmem.rd.data[k] * das[k] for k in range(L))
                g_total = _wire(m, Mux(s2.first, 0, g_acc) + partial, "back_g")
                m.d.sync += g_acc.eq(g_total)
                with m.If(s2.last):
                    u_i = _wire(m, Array([umem.rd.data[k] for k in range(L)])[lane_of(s2.outer)], "back_u")
                    g_sg = _wire(m, g_total * _sg(nrn, u_i), "back_g_sg")  # one multiplier: narrow reads it several times
                    delta, _ = narrow(g_sg, G.err_shift, G.efmt)
                    delta = _wire(m, delta, "back_delta")
                    r = draw
                    m.d.comb += lfsr_h.advance.eq(stoch_h)
                    m.d.comb += [dlmem.wr.addr.eq(word_of(s2.outer)), dlmem.wr.en.eq(Const(1, L) << lane_of(s2.outer))]
                    for k in range(L):
                        m.d.comb += [dlmem.wr.data[k]["d"].eq(delta), dlmem.wr.data[k]["r"].eq(r)]

        # ---- CUPD / HUPD (ELL): w^a += R(-delta^a), w += R(-delta x) -----------------------------
        if learns and not fell:
            s0, s1, s2 = cupd.s
            with m.If(s0.valid):
                m.d.comb += spk_rd_addr.eq(s0.outer)
            with m.If(s1.valid):
                m.d.comb += [cwmem.rd.addr.eq(_times(spk.rd.data[0], CPR) + s1.inner), clsmem.rd.addr.eq(s1.inner)]
            with m.If(s2.valid):
                dws = [clsmem.rd.data[k]["dw"] for k in range(L)]
                m.d.comb += [cwmem.wr.addr.eq(_times(i1, CPR) + s2.inner), cwmem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    value, _ = fit(cwmem.rd.data[k] + dws[k], G.cfmt)
                    m.d.comb += cwmem.wr.data[k].eq(value)
            s0, s1, s2 = hupd.s
            with m.If(s0.valid):
                m.d.comb += self.ev.addr.eq(s0.outer)
            with m.If(s1.valid):
                m.d.comb += [wmem.rd.addr.eq(_times(ev_j, WPR) + s1.inner), dlmem.rd.addr.eq(s1.inner)]
            with m.If(s2.valid):
                m.d.comb += [wmem.wr.addr.eq(_times(j1, WPR) + s2.inner), wmem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    dk = dlmem.rd.data[k]
                    raw = -(dk["d"] * xv) if x1 is not None else -dk["d"]
                    change = shift_round(raw, hid_shift, G.wfmt.rounding, dk["r"])
                    value, _ = fit(wmem.rd.data[k] + change, G.wfmt)
                    m.d.comb += wmem.wr.data[k].eq(value)

        # ---- CFTRACE / FTRACE (FELL): e = fit_T(R_T(e c) + x); w += R(-delta e) ------------------
        if fell:
            for lp_, lst, curm, tmem, wm, fm, rowlen, is_clf in (
                (cftr, clive, ccurmem, cemem, cwmem, cfacmem, CPR, True),
                (ftr, live, curmem, emem, wmem, facmem, WPR, False),
            ):
                s0, s1, s2 = lp_.s
                jreg = Signal(len(lst.rd.data[0]), name=f"{lp_.s[0].valid.name}_j")
                with m.If(s0.valid):
                    m.d.comb += lst.rd.addr.eq(s0.outer)
                with m.If(s1.valid):
                    j = lst.rd.data[0]
                    m.d.comb += [tmem.rd.addr.eq(_times(j, rowlen) + s1.inner), wm.rd.addr.eq(_times(j, rowlen) + s1.inner), fm.rd.addr.eq(s1.inner), curm.rd.addr.eq(j)]
                    m.d.comb += (clsmem if is_clf else dlmem).rd.addr.eq(s1.inner)
                m.d.sync += jreg.eq(lst.rd.data[0])
                with m.If(s2.valid):
                    c0 = curm.rd.data[0]
                    fresh = c0["first"] == t1
                    active = c0["last"] == t1
                    if is_clf:
                        x_now = Mux(active, 1 << T_.frac, 0)
                        dks = [clsmem.rd.data[k]["da"] for k in range(L)]
                        rks = [clsmem.rd.data[k]["r"] for k in range(L)]
                        shift = clf_shift
                        wfmt = G.cfmt
                        ncols = C
                    else:
                        x_now = Mux(active, c0["x"] << (T_.frac - G.raw_frac), 0)
                        shift = hid_shift
                        wfmt = G.wfmt
                        ncols = N
                    m.d.comb += [tmem.wr.addr.eq(_times(jreg, rowlen) + s2.inner), tmem.wr.en.eq(Const(-1, L))]
                    m.d.comb += [wm.wr.addr.eq(_times(jreg, rowlen) + s2.inner), wm.wr.en.eq(Mux(err_any, Const(-1, L), 0))]
                    for k in range(L):
                        e_old = Mux(fresh, 0, tmem.rd.data[k])
                        pad = (s2.inner * L + k) >= ncols
                        e_new, _ = fit(shift_round(e_old * fm.rd.data[k], T_.frac, T_.rounding) + x_now, T_)
                        e_new = _wire(m, Mux(pad, 0, e_new), f"{lp_.s[0].valid.name}_e{k}")
                        m.d.comb += tmem.wr.data[k].eq(e_new)
                        if is_clf:
                            d, r = dks[k], rks[k]
                        else:
                            d, r = dlmem.rd.data[k]["d"], dlmem.rd.data[k]["r"]
                        change = shift_round(-(d * e_new), shift, wfmt.rounding, r)
                        value, _ = fit(wm.rd.data[k] + change, wfmt)
                        m.d.comb += wm.wr.data[k].eq(value)
            # end of sample: forget which rows were live
            build_clear(m, clr, live, curmem)
            build_clear(m, cclr, clive, ccurmem)

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
