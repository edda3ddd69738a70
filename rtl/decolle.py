"""A hidden layer of DECOLLE neurons with its fixed random readout and the DECOLLE rule: the
hardware of golden's ``Golden._decolle_step`` (Kaiser et al. eq. 4, 7-8).

Per-input traces P and Q live in one-lane memories indexed by input; the refractory trace R,
the bias, the potential U and the spike S per neuron in lane memories like the LIF layer's.
Only inputs seen in the sample can have nonzero traces, so the layer keeps them in a live list
and touches only those.

=========== ========================================= ===================================
phase        loop                                      golden
=========== ========================================= ===================================
PLIST        live inputs                               rows j with P_j != 0
FWD          word w, P-list entry                      U = R(sum W P + b) - R(rho R); S; R update
COMPACT      spike words                               spike list
READOUT      classifier word, spike                    Y = G S (and the decision counts)
BACKPROP     neuron i, classifier word                 d_i = fit_E(R(lut(U_i) sum_k H_ik (Y_k - Yhat_k)))
HUPD         P-list entry, word                        W += R(-d P)
BUPD         word                                      b += R(-d 2**f_P)
LIVE         input events                              rows whose traces become nonzero
TRACES       live inputs                               Q += (1-beta)(x - Q); P += (1-alpha)(Q - P) (Q or Q')
=========== ========================================= ===================================
"""

from __future__ import annotations

from types import SimpleNamespace

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from localsnn.errors import BadValueError
from localsnn.chip import PHASES, SPRAM_KEYS
from localsnn.golden.params import LayerParams
from localsnn.rtl.common import LaneMemory
from localsnn.rtl.fixed import fit, fmt_shape, shift_round_stages
from localsnn.rtl.layer import LayerBase, _rows, _shift_register, _times, _tree_sum, _wire, build_clear, build_compact, build_live, make_live
from localsnn.rtl.lfsr import LFSR
from localsnn.rtl.loop import Loop
from localsnn.rtl.phases import Phases
from localsnn.rtl.neuron import approach_stages
from localsnn.spec import NetworkSpec, advance_traces, fires


class DecolleLayer(LayerBase):
    PHASES = PHASES["decolle"]
    SPRAM_KEYS = SPRAM_KEYS["decolle"]  # the readout G and the feedback H are fixed

    def __init__(self, spec: NetworkSpec, index: int, lanes: int, params: LayerParams, regions: dict[str, int], ev_shape, ev_depth: int, lfsr_seeds: tuple[int, int], spram: bool = False, pipeline: str = "full") -> None:
        if spec.layers[index].neuron.model != "decolle":
            raise BadValueError("DecolleLayer needs a layer of 'decolle' neurons")
        clf = spec.layers[index].classifier
        counts_bits = clf.accumulator + spec.timesteps.bit_length() + 1
        super().__init__(spec, index, lanes, params, regions, ev_shape, ev_depth, signed(counts_bits), spram, pipeline)
        self.lfsr_seeds = lfsr_seeds
        self.lfsrs = (LFSR(spec.lfsr.width, lfsr_seeds[0]), None) if self.learns else None

    def elaborate(self, platform):
        m = Module()
        b = SimpleNamespace(learns=self.learns)
        self._memories(m, b)
        self._loops(m, b)
        self._control(m, b)
        self._plist(m, b)
        self._fwd(m, b)
        # ---- COMPACT -----------------------------------------------------------------------------------
        build_compact(m, b.omem, b.spk, self.wpr, self.lanes, b.in_compact, b.loops["fwd"].done, b.spk_count, b.compact_done, b.spk_base)
        self._readout(m, b)
        if b.learns:
            self._backprop(m, b)
            self._hupd(m, b)
            self._bupd(m, b)
        # ---- LIVE and TRACES: Q += (1-beta)(x - Q), P += (1-alpha)(Q - P) on live inputs ----------
        build_live(m, b.loops["live"], self.ev.addr, b.ev_j, b.ev_x if self.g.pixel_input else None, b.curmem, b.live, b.n_live, b.t1)
        self._traces(m, b)
        build_clear(m, b.loops["clear"], b.live, b.curmem)
        for lp in b.loops.values():
            lp.close()
        m.d.comb += self.busy.eq(~b.fsm.ongoing("IDLE"))
        return m

    def _memories(self, m, b) -> None:
        """The layer's memories (``b.mems``: those on the bus), its live list and its draws."""
        G, L, N, WPR, CPR = self.g, self.lanes, self.N, self.wpr, self.cpr
        P_ = G.pfmt
        b.wmem = self._weight_memory(m, "w", fmt_shape(G.wfmt), self.params.w, WPR)
        b.bmem = LaneMemory(m, "bias", fmt_shape(G.wfmt), L, WPR, init=_rows([self.params.bias], L, WPR))
        b.umem = LaneMemory(m, "u", fmt_shape(G.neurons.potential), L, WPR)
        b.omem = LaneMemory(m, "o", unsigned(1), L, WPR)
        b.rmem = LaneMemory(m, "r", fmt_shape(P_), L, WPR)
        b.pmem = LaneMemory(m, "p", fmt_shape(P_), 1, self.fan_in)
        b.qmem = LaneMemory(m, "q", fmt_shape(P_), 1, self.fan_in)
        b.gmem = LaneMemory(m, "g", fmt_shape(G.cfmt), L, N * CPR, init=_rows(self.params.clf_w, L, CPR))
        b.hmem = LaneMemory(m, "h", fmt_shape(G.hfmt), L, N * CPR, init=_rows(self.params.feedback, L, CPR))
        b.ybits = self.spec.layers[self.index].classifier.accumulator
        b.ymem = LaneMemory(m, "y", signed(b.ybits), L, CPR)
        b.idx_in = max((self.fan_in - 1).bit_length(), 1)
        b.plist = LaneMemory(m, "plist", data.StructLayout({"index": unsigned(b.idx_in), "value": fmt_shape(P_)}), 1, self.fan_in)
        b.spk, b.spk_rd_addr, b.spk_count, b.spk_base, b.spk_publish = self._spike_list(m)
        # the raw pixel (not P, whose format is G.x_max's): a direct input's integer bits too
        xbits = self.spec.encoding.format.width if G.pixel_input else None
        b.curmem, b.live, b.n_live = make_live(m, "in", self.fan_in, self.spec.timesteps, xbits)
        b.mems = {"w": b.wmem, "bias": b.bmem, "u": b.umem, "o": b.omem, "r": b.rmem, "p": b.pmem, "q": b.qmem, "cw": b.gmem, "h": b.hmem, "y": b.ymem}
        if b.learns:
            wl = self.spec.layers[self.index]
            rbits = self.spec.lfsr.width if wl.weight.rounding == "stochastic" else 1
            b.dlmem = LaneMemory(m, "delta", data.StructLayout({"d": fmt_shape(G.efmt), "r": unsigned(rbits)}), L, WPR)
            b.lfsr_h = self.lfsrs[0]  # a submodule of the top, which reads and seeds it
            b.stoch = wl.weight.rounding == "stochastic"
        for mem in list(b.mems.values()) + [b.plist, b.curmem, b.live] + ([b.dlmem] if b.learns else []):
            m.d.comb += mem.rd.en.eq(1)
        m.d.comb += self.ev.en.eq(1)

    def _loops(self, m, b) -> None:
        """The phases' pipelined loops (``b.loops`` by name), the stamps, the learning-rate shift,
        the input event's fields and the phase counters."""
        N, WPR, CPR = self.N, self.wpr, self.cpr
        b.n_pl = Signal(range(self.fan_in + 1))
        b.t1 = _wire(m, self.t + 1, "stamp")
        b.first_step = _wire(m, self.t == 0, "first_step")  # for the start of a step
        # the same, registered, for the datapaths (t holds still while the layer runs a step,
        # and they read it several clocks after the start)
        b.first_step_r = Signal(name="first_step_r")
        m.d.sync += b.first_step_r.eq(b.first_step)
        lr = self.lr_shift
        b.hid_shift = _shift_register(m, lr, self.lr_base["hid"], "hid_shift")
        b.ev_j = self.ev.data["index"] if not self.binary else self.ev.data
        b.ev_x = self.ev.data["value"] if not self.binary else Const(1, 1)
        b.loops = loops = {}

        def loop(name, outer, inner, omax, imax, at_least_one=False, throttle=False):
            loops[name] = Loop(m, name, outer, inner, outer_max=omax, inner_max=imax, inner_at_least_one=at_least_one, throttle=throttle, pipeline=self.pipeline)

        loop("plist", b.n_live, 1, self.fan_in, 1)
        loop("fwd", WPR, b.n_pl, WPR, self.fan_in, True)
        loop("readout", CPR, b.spk_count, CPR, N, True)
        loop("live", self.ev_count, 1, self.fan_in, 1)
        loop("traces", b.n_live, 1, self.fan_in, 1)
        loop("clear", b.n_live, 1, self.fan_in, 1)
        if b.learns:
            loop("back", N, CPR, N, CPR)
            loop("hupd", b.n_pl, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes w
            loop("bupd", WPR, 1, WPR, 1)
        # COMPACT's handshake (the pipeline is built after the FSM)
        b.in_compact = Signal()
        b.compact_done = Signal()
        b.phases = Phases(m, self.PHASES, self.phase_bits, self.phase_cycles)

    def _control(self, m, b) -> None:
        """The control FSM: the chain of phases of a step (module docstring), and the end of a
        sample (CLEAR). A state ``X0`` starts phase X's loop (and counts as X)."""
        ph, lp = b.phases, b.loops
        with m.FSM(name="ctl") as b.fsm:
            with m.State("IDLE"):
                self._debug_port(m, b.mems)
                with m.If(self.start):
                    ph.clear()
                    with m.If(b.first_step):
                        m.d.sync += [self.counts.eq(0), b.n_live.eq(0)]
                    m.next = "PLIST0"
                with m.If(self.finish):
                    m.d.comb += lp["clear"].start.eq(1)
                    m.next = "CLEAR"
            with m.State("PLIST0"):  # n_live is final (reset at t = 0)
                ph.count("PLIST")
                m.d.comb += lp["plist"].start.eq(1)
                m.d.sync += b.n_pl.eq(0)
                m.next = "PLIST"
            ph.run("PLIST", lp["plist"].done, ph.go("FWD0"))
            with m.State("FWD0"):
                ph.count("FWD")
                ph.go("FWD", lp["fwd"].start)()
            ph.run("FWD", lp["fwd"].done, ph.go("COMPACT"))
            with m.State("COMPACT"):
                ph.count("COMPACT")
                m.d.comb += b.in_compact.eq(1)
                with m.If(b.compact_done):
                    m.next = "READOUT0"
            with m.State("READOUT0"):
                m.d.comb += b.spk_publish.eq(1)  # the next layer may read this step's spikes
                ph.count("READOUT")
                ph.go("READOUT", lp["readout"].start)()
            ph.run("READOUT", lp["readout"].done, lambda: self._after_readout(m, b))
            if b.learns:
                ph.run("BACKPROP", lp["back"].done, ph.go("HUPD", lp["hupd"].start))
                ph.run("HUPD", lp["hupd"].done, ph.go("BUPD", lp["bupd"].start))
                ph.run("BUPD", lp["bupd"].done, ph.go("LIVE", lp["live"].start))
            ph.run("LIVE", lp["live"].done, ph.go("TRACES0"))
            with m.State("TRACES0"):  # n_live is final
                ph.count("TRACES")
                ph.go("TRACES", lp["traces"].start)()
            ph.run("TRACES", lp["traces"].done, ph.go("IDLE", self.done))
            with m.State("CLEAR"):
                with m.If(lp["clear"].done):
                    m.d.sync += b.n_live.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

    def _after_readout(self, m, b) -> None:
        """After READOUT: learning (BACKPROP) where the layer learns from a label at this step;
        the traces move whether or not the layer learns (LIVE)."""
        lp = b.loops
        if b.learns:
            with m.If(self.learn & self.label_valid):
                m.d.comb += lp["back"].start.eq(1)
                m.next = "BACKPROP"
            with m.Else():
                m.d.comb += lp["live"].start.eq(1)
                m.next = "LIVE"
        else:
            m.d.comb += lp["live"].start.eq(1)
            m.next = "LIVE"

    def _plist(self, m, b) -> None:
        """PLIST: ``(j, P_j)`` for the live inputs with ``P_j != 0``."""
        live, pmem, plist, n_pl = b.live, b.pmem, b.plist, b.n_pl
        s0, s1, s2 = b.loops["plist"].s
        jreg = Signal(b.idx_in)
        with m.If(s0.valid):
            m.d.comb += live.rd.addr.eq(s0.outer)
        with m.If(s1.valid):
            m.d.comb += pmem.rd.addr.eq(live.rd.data[0])
        m.d.sync += jreg.eq(live.rd.data[0])
        with m.If(s2.valid & (pmem.rd.data[0] != 0)):
            m.d.comb += [plist.wr.addr.eq(n_pl), plist.wr.data[0]["index"].eq(jreg), plist.wr.data[0]["value"].eq(pmem.rd.data[0]), plist.wr.en.eq(1)]
            m.d.sync += n_pl.eq(n_pl + 1)

    def _fwd(self, m, b) -> None:
        """FWD: ``U = R_U(sum W P + b 2**f_P) - R_U(rho R); S = [U > theta]`` (``spec.fires``); ``R += (1-gamma)(S - R)``.

        Stages: 0 the P-list entry's address; 1 the entry (registered); 2 the weight row's
        address; 3 the weights (registered); 4 the products ``W P``; 5 the accumulation; 6 (at
        the word's last entry) the bias and ``R`` arrive, ``+ b 2**f_P`` and ``rho R``; 7 their
        roundings; 8 the difference; 9 ``fit_U``; 10 the spike; 10-14 ``approach_stages`` of
        ``R``; 15 the writes."""
        G, L, N, WPR = self.g, self.lanes, self.N, self.wpr
        nrn, P_, plist = G.neurons, G.pfmt, b.plist
        wmem, bmem, umem, omem, rmem = b.wmem, b.bmem, b.umem, b.omem, b.rmem
        lp = b.loops["fwd"]
        D, st = lp.delay, lp.stage
        lp.clocked(0, 2, 5)  # reads (and 5: the accumulation)
        acc = [Signal(signed(self.spec.layers[self.index].accumulator), name=f"acc{k}") for k in range(L)]
        with m.If(st(0).valid):
            m.d.comb += plist.rd.addr.eq(st(0).inner)
        j2 = D(plist.rd.data[0]["index"], 1, 1, "fwd_j")
        pv4 = D(plist.rd.data[0]["value"], 3, 1, "fwd_p")
        with m.If(st(2).valid):
            m.d.comb += wmem.rd.addr.eq(_times(j2, WPR) + st(2).outer)
        with m.If(st(5).valid):
            m.d.comb += [bmem.rd.addr.eq(st(5).outer), rmem.rd.addr.eq(st(5).outer)]
        b.one_p = one_p = 1 << P_.frac
        rnd = nrn.potential.rounding
        news = []
        for k in range(L):
            w4 = D(wmem.rd.data[k], 1, 3, f"fwd_w{k}")
            prod5 = D(Mux(st(4).empty, 0, w4 * pv4), 1, 4, f"fwd_prod{k}")
            total = _wire(m, Mux(st(5).first, 0, acc[k]) + prod5, f"fwd_total{k}")
            with m.If(st(5).valid):
                m.d.sync += acc[k].eq(total)
            # stage 6: acc holds the word's sum
            r_old = _wire(m, Mux(b.first_step_r, 0, rmem.rd.data[k]), f"fwd_r_old{k}")
            cur, n = shift_round_stages(lp, 7, D(acc[k] + bmem.rd.data[k] * one_p, 1, 6), G.cur_shift, rnd)
            refr, _ = shift_round_stages(lp, 7, D(G.rho * r_old, 1, 6), P_.frac, rnd)
            u9 = D(cur - refr, 1, 7 + n)
            u10 = D(fit(u9, nrn.potential)[0], 1, 8 + n)
            pad = (st(9 + n).outer * L + k) >= N
            s_new = _wire(m, fires("decolle", u10, nrn.theta) & ~pad, f"fwd_s{k}")
            r_new, nr = approach_stages(lp, 9 + n, D(r_old, 3 + n, 6), s_new * one_p, G.gamma, P_)
            ws = 9 + n + nr
            news.append((D(Mux(pad, 0, u10), nr, 9 + n), D(s_new, nr, 9 + n), Mux(st(ws).outer * L + k >= N, 0, r_new)))
        wst = st(ws)
        with m.If(wst.valid & wst.last):
            m.d.comb += [umem.wr.addr.eq(wst.outer), omem.wr.addr.eq(wst.outer), rmem.wr.addr.eq(wst.outer)]
            m.d.comb += [umem.wr.en.eq(Const(-1, L)), omem.wr.en.eq(Const(-1, L)), rmem.wr.en.eq(Const(-1, L))]
            for k, (u_w, s_w, r_w) in enumerate(news):
                m.d.comb += [umem.wr.data[k].eq(u_w), omem.wr.data[k].eq(s_w), rmem.wr.data[k].eq(r_w)]

    def _readout(self, m, b) -> None:
        """READOUT: ``Y = G S``, summed into the decision counts.

        Stages: 0 the spike's address; 1 the spike (registered); 2 the readout row's address;
        3 its words (registered); 4 the accumulation; 5 (at the last spike) ``Y`` written and
        counted."""
        L, C, CPR, gmem, ymem = self.lanes, self.C, self.cpr, b.gmem, b.ymem
        lp = b.loops["readout"]
        D, st = lp.delay, lp.stage
        lp.clocked(0, 2, 4)  # reads; the accumulation
        yacc = [Signal(signed(b.ybits), name=f"yacc{k}") for k in range(L)]
        with m.If(st(0).valid):
            m.d.comb += b.spk_rd_addr.eq(st(0).inner)
        i2 = D(b.spk.rd.data[0], 1, 1, "ro_i")
        with m.If(st(2).valid):
            m.d.comb += gmem.rd.addr.eq(_times(i2, CPR) + st(2).outer)
        for k in range(L):
            g4 = D(gmem.rd.data[k], 1, 3, f"ro_g{k}")
            total = _wire(m, Mux(st(4).first, 0, yacc[k]) + Mux(st(4).empty, 0, g4), f"ro_total{k}")
            with m.If(st(4).valid):
                m.d.sync += yacc[k].eq(total)
        ws = st(5)  # yacc holds the word's sums
        with m.If(ws.valid & ws.last):
            m.d.comb += [ymem.wr.addr.eq(ws.outer), ymem.wr.en.eq(Const(-1, L))]
            with m.Switch(ws.outer):
                for w in range(CPR):
                    with m.Case(w):
                        for k in range(L):
                            c = w * L + k
                            if c >= C:
                                m.d.comb += ymem.wr.data[k].eq(0)
                                continue
                            m.d.comb += ymem.wr.data[k].eq(yacc[k])
                            m.d.sync += self.counts[c].eq(self.counts[c] + yacc[k])

    def _backprop(self, m, b) -> None:
        """BACKPROP: ``d_i = fit_E(R_E(lut(U_i) * sum_k H_ik (Y_k - Yhat_k)))`` with its draw.

        Stages: 1 the feedback row's word and ``Y`` are read; 2 registered; 3 ``Y - Yhat``; 4
        the lanes' products; 5 their sum; 6 the accumulation; 7 (at the row's last word)
        ``U_i`` arrives, its lane; 8 its surrogate; 9 the product; 10 the rounding; 11
        ``fit_E``; 12 the draw and the write."""
        G, L, C, CPR = self.g, self.lanes, self.C, self.cpr
        hmem, ymem, umem, dlmem, lfsr_h = b.hmem, b.ymem, b.umem, b.dlmem, b.lfsr_h
        lp = b.loops["back"]
        D, st = lp.delay, lp.stage
        lp.clocked(1, 6)  # reads (and 6: the accumulation)
        err_acc = Signal(signed(G.hfmt.width + b.ybits + C.bit_length() + 2))
        with m.If(st(1).valid):
            m.d.comb += [hmem.rd.addr.eq(_times(st(1).outer, CPR) + st(1).inner), ymem.rd.addr.eq(st(1).inner)]
        terms = []
        for k in range(L):
            h3 = D(hmem.rd.data[k], 1, 2)
            y3 = D(ymem.rd.data[k], 1, 2)
            target = Mux(st(3).inner * L + k == self.label, 1 << G.cfmt.frac, 0)
            diff4 = D(y3 - target, 1, 3)
            terms.append(D(D(h3, 1, 3) * diff4, 1, 4, f"back_p{k}"))  # stage 5
        partial = D(_tree_sum(terms), 1, 5, "back_partial")  # stage 6
        self._deltas(m, lp, 6, err_acc, partial, umem, dlmem, lfsr_h.next, lfsr_h.advance, b.stoch)

    def _hupd(self, m, b) -> None:
        """HUPD: ``W += R(-d P)`` over the P list: 0 the entry's address, 1 the entry
        (registered), then ``_update_words`` from stage 2."""
        G, WPR, lp = self.g, self.wpr, b.loops["hupd"]
        D, st = lp.delay, lp.stage
        with m.If(st(0).valid):
            m.d.comb += b.plist.rd.addr.eq(st(0).outer)
        lp.clocked(0)  # (and stage 2: _update_words)
        j2 = D(b.plist.rd.data[0]["index"], 1, 1, "hupd_j")
        p2 = D(b.plist.rd.data[0]["value"], 1, 1, "hupd_p")
        self._update_words(m, lp, 2, b.wmem, _wire(m, _times(j2, WPR) + st(2).inner, "hupd_addr"), b.dlmem, st(2).inner, p2, b.hid_shift, G.wfmt)

    def _bupd(self, m, b) -> None:
        """BUPD: ``b += R(-d 2**f_P)`` (the bias is a weight on a constant input 1.0):
        ``_update_words`` from stage 1."""
        lp = b.loops["bupd"]
        self._update_words(m, lp, 1, b.bmem, lp.stage(1).outer, b.dlmem, lp.stage(1).outer, Const(b.one_p), b.hid_shift, self.g.wfmt)

    def _traces(self, m, b) -> None:
        """TRACES: ``Q += (1-beta)(x - Q); P += (1-alpha)(Q - P)`` on the live inputs, ``P`` from
        the ``Q`` before or after its update as the spec's ``trace_order`` says
        (``spec.advance_traces``: with "decolle-public" the two updates are in series).

        Stages: 0 the live row's address; 1 the row (registered); 2 its ``P``, ``Q`` and stamps
        are read; 3 ``fresh``, ``active``, the input; then ``approach_stages`` (5 each: in
        series or side by side) and the writes."""
        G, P_, nrn = self.g, self.g.pfmt, self.g.neurons
        live, pmem, qmem, curmem = b.live, b.pmem, b.qmem, b.curmem
        lp = b.loops["traces"]
        D, st = lp.delay, lp.stage
        lp.clocked(0, 2)
        with m.If(st(0).valid):
            m.d.comb += live.rd.addr.eq(st(0).outer)
        j2 = D(live.rd.data[0], 1, 1, "tr_j")
        with m.If(st(2).valid):
            m.d.comb += [pmem.rd.addr.eq(j2), qmem.rd.addr.eq(j2), curmem.rd.addr.eq(j2)]
        c0 = curmem.rd.data[0]
        fresh = c0["first"] == b.t1
        active = c0["last"] == b.t1
        x_in = (c0["x"] << (P_.frac - G.raw_frac)) if G.pixel_input else Const(b.one_p)
        x_now = _wire(m, Mux(active, x_in, 0), "tr_x")
        p_old = _wire(m, Mux(fresh, 0, pmem.rd.data[0]), "tr_p")
        q_old = _wire(m, Mux(fresh, 0, qmem.rd.data[0]), "tr_q")

        # the values travel with their stage, (value, stage), through the one definition of the order
        def step(old, decay):
            def go(target):
                value, k = target
                new, n = approach_stages(lp, k, D(old, k - 3, 3), value, decay, P_)
                return new, k + n
            return go

        (p_new, kp), (q_new, kq) = advance_traces(G.trace_order, (q_old, 3), (x_now, 3), step(p_old, nrn.decay), step(q_old, G.beta))
        ws = max(kp, kq)
        wst = st(ws)
        p_w, q_w, addr = D(p_new, ws - kp, kp), D(q_new, ws - kq, kq), D(j2, ws - 2, 2)
        with m.If(wst.valid):
            m.d.comb += [pmem.wr.addr.eq(addr), pmem.wr.data[0].eq(p_w), pmem.wr.en.eq(1), qmem.wr.addr.eq(addr), qmem.wr.data[0].eq(q_w), qmem.wr.en.eq(1)]
