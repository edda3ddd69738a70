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
TRACES       live inputs                               Q += (1-beta)(x - Q); P += (1-alpha)(Q - P)
=========== ========================================= ===================================
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from localsnn.chip import PHASES, SPRAM_KEYS
from localsnn.golden.params import LayerParams
from localsnn.rtl.common import LaneMemory
from localsnn.rtl.fixed import fit, fmt_shape, narrow, shift_round
from localsnn.rtl.layer import LayerBase, _rows, _sg, _times, _wire, build_clear, build_compact, build_live, make_live
from localsnn.rtl.lfsr import LFSR
from localsnn.rtl.loop import Loop
from localsnn.rtl.neuron import leak_complement
from localsnn.spec import NetworkSpec


class DecolleLayer(LayerBase):
    PHASES = PHASES["decolle"]
    SPRAM_KEYS = SPRAM_KEYS["decolle"]  # the readout G and the feedback H are fixed

    def __init__(self, spec: NetworkSpec, index: int, lanes: int, params: LayerParams, regions: dict[str, int], ev_shape, ev_depth: int, lfsr_seeds: tuple[int, int], spram: bool = False) -> None:
        if spec.layers[index].neuron.model != "decolle":
            raise ValueError("DecolleLayer needs a layer of 'decolle' neurons")
        clf = spec.layers[index].classifier
        counts_bits = clf.accumulator + spec.timesteps.bit_length() + 1
        super().__init__(spec, index, lanes, params, regions, ev_shape, ev_depth, signed(counts_bits), spram)
        self.lfsr_seeds = lfsr_seeds
        self.lfsrs = (LFSR(spec.lfsr.width, lfsr_seeds[0]), None) if self.learns else None

    def elaborate(self, platform):
        m = Module()
        G, L, N, C = self.g, self.lanes, self.N, self.C
        WPR, CPR = self.wpr, self.cpr
        nrn = G.neurons
        learns = self.learns
        word_of = lambda v: v >> self.log2l  # noqa: E731
        lane_of = lambda v: v[: self.log2l] if self.log2l else Const(0, 1)  # noqa: E731
        P_ = G.pfmt
        tmax = self.spec.timesteps
        clf = self.spec.layers[self.index].classifier

        # ---- memories ----------------------------------------------------------------------------
        wmem = self._weight_memory(m, "w", fmt_shape(G.wfmt), self.params.w, WPR)
        bmem = LaneMemory(m, "bias", fmt_shape(G.wfmt), L, WPR, init=_rows([self.params.bias], L, WPR))
        umem = LaneMemory(m, "u", fmt_shape(nrn.potential), L, WPR)
        omem = LaneMemory(m, "o", unsigned(1), L, WPR)
        rmem = LaneMemory(m, "r", fmt_shape(P_), L, WPR)
        pmem = LaneMemory(m, "p", fmt_shape(P_), 1, self.fan_in)
        qmem = LaneMemory(m, "q", fmt_shape(P_), 1, self.fan_in)
        gmem = LaneMemory(m, "g", fmt_shape(G.cfmt), L, N * CPR, init=_rows(self.params.clf_w, L, CPR))
        hmem = LaneMemory(m, "h", fmt_shape(G.hfmt), L, N * CPR, init=_rows(self.params.feedback, L, CPR))
        ybits = clf.accumulator
        ymem = LaneMemory(m, "y", signed(ybits), L, CPR)
        idx_in = max((self.fan_in - 1).bit_length(), 1)
        plist = LaneMemory(m, "plist", data.StructLayout({"index": unsigned(idx_in), "value": fmt_shape(P_)}), 1, self.fan_in)
        spk, spk_rd_addr, spk_count, spk_base, spk_publish = self._spike_list(m)
        # the raw pixel (not P, whose format is G.x_max's): a direct input's integer bits too
        xbits = self.spec.encoding.format.width if G.pixel_input else None
        curmem, live, n_live = make_live(m, "in", self.fan_in, tmax, xbits)
        mems = {"w": wmem, "bias": bmem, "u": umem, "o": omem, "r": rmem, "p": pmem, "q": qmem, "cw": gmem, "h": hmem, "y": ymem}
        if learns:
            wl = self.spec.layers[self.index]
            rbits = self.spec.lfsr.width if wl.weight.rounding == "stochastic" else 1
            dlmem = LaneMemory(m, "delta", data.StructLayout({"d": fmt_shape(G.efmt), "r": unsigned(rbits)}), L, WPR)
            lfsr_h = self.lfsrs[0]  # a submodule of the top, which reads and seeds it
            stoch = wl.weight.rounding == "stochastic"
        for mem in list(mems.values()) + [plist, curmem, live] + ([dlmem] if learns else []):
            m.d.comb += mem.rd.en.eq(1)
        m.d.comb += self.ev.en.eq(1)

        n_pl = Signal(range(self.fan_in + 1))
        t1 = _wire(m, self.t + 1, "stamp")
        first_step = _wire(m, self.t == 0, "first_step")
        lr = self.lr_shift
        hid_shift = _wire(m, (lr + self.lr_base["hid"])[:6], "hid_shift")
        ev_j = self.ev.data["index"] if not self.binary else self.ev.data
        ev_x = self.ev.data["value"] if not self.binary else Const(1, 1)

        def loop(name, outer, inner, omax, imax, at_least_one=False, throttle=False):
            return Loop(m, name, outer, inner, outer_max=omax, inner_max=imax, inner_at_least_one=at_least_one, throttle=throttle)

        pl = loop("plist", n_live, 1, self.fan_in, 1)
        fwd = loop("fwd", WPR, n_pl, WPR, self.fan_in, True)
        ro = loop("readout", CPR, spk_count, CPR, N, True)
        lv = loop("live", self.ev_count, 1, self.fan_in, 1)
        tr = loop("traces", n_live, 1, self.fan_in, 1)
        clr = loop("clear", n_live, 1, self.fan_in, 1)
        if learns:
            back = loop("back", N, CPR, N, CPR)
            hupd = loop("hupd", n_pl, WPR, self.fan_in, WPR, throttle=self.spram)  # reads and writes w
            bupd = loop("bupd", WPR, 1, WPR, 1)

        in_compact = Signal()
        compact_done = Signal()
        phase_cnt = [Signal(self.phase_bits, name=f"pc_{p}") for p in self.PHASES]
        for k, sig in enumerate(phase_cnt):
            m.d.comb += self.phase_cycles[k].eq(sig)

        def count(name):
            k = self.PHASES.index(name)
            m.d.sync += phase_cnt[k].eq(phase_cnt[k] + 1)

        # ---- control FSM ---------------------------------------------------------------------------
        with m.FSM(name="ctl") as fsm:
            with m.State("IDLE"):
                self._debug_port(m, mems)
                with m.If(self.start):
                    for sig in phase_cnt:
                        m.d.sync += sig.eq(0)
                    with m.If(first_step):
                        m.d.sync += [self.counts.eq(0), n_live.eq(0)]
                    m.next = "PLIST0"
                with m.If(self.finish):
                    m.d.comb += clr.start.eq(1)
                    m.next = "CLEAR"
            with m.State("PLIST0"):  # n_live is final (reset at t = 0)
                count("PLIST")
                m.d.comb += pl.start.eq(1)
                m.d.sync += n_pl.eq(0)
                m.next = "PLIST"
            with m.State("PLIST"):
                count("PLIST")
                with m.If(pl.done):
                    m.next = "FWD0"
            with m.State("FWD0"):
                count("FWD")
                m.d.comb += fwd.start.eq(1)
                m.next = "FWD"
            with m.State("FWD"):
                count("FWD")
                with m.If(fwd.done):
                    m.next = "COMPACT"
            with m.State("COMPACT"):
                count("COMPACT")
                m.d.comb += in_compact.eq(1)
                with m.If(compact_done):
                    m.next = "READOUT0"
            with m.State("READOUT0"):
                m.d.comb += spk_publish.eq(1)  # the next layer may read this step's spikes
                count("READOUT")
                m.d.comb += ro.start.eq(1)
                m.next = "READOUT"
            with m.State("READOUT"):
                count("READOUT")
                with m.If(ro.done):
                    # the traces move whether or not the layer learns
                    if learns:
                        with m.If(self.learn & self.label_valid):
                            m.d.comb += back.start.eq(1)
                            m.next = "BACKPROP"
                        with m.Else():
                            m.d.comb += lv.start.eq(1)
                            m.next = "LIVE"
                    else:
                        m.d.comb += lv.start.eq(1)
                        m.next = "LIVE"
            if learns:
                with m.State("BACKPROP"):
                    count("BACKPROP")
                    with m.If(back.done):
                        m.d.comb += hupd.start.eq(1)
                        m.next = "HUPD"
                with m.State("HUPD"):
                    count("HUPD")
                    with m.If(hupd.done):
                        m.d.comb += bupd.start.eq(1)
                        m.next = "BUPD"
                with m.State("BUPD"):
                    count("BUPD")
                    with m.If(bupd.done):
                        m.d.comb += lv.start.eq(1)
                        m.next = "LIVE"
            with m.State("LIVE"):
                count("LIVE")
                with m.If(lv.done):
                    m.next = "TRACES0"
            with m.State("TRACES0"):  # n_live is final
                count("TRACES")
                m.d.comb += tr.start.eq(1)
                m.next = "TRACES"
            with m.State("TRACES"):
                count("TRACES")
                with m.If(tr.done):
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"
            with m.State("CLEAR"):
                with m.If(clr.done):
                    m.d.sync += n_live.eq(0)
                    m.d.comb += self.done.eq(1)
                    m.next = "IDLE"

        # ---- PLIST: (j, P_j) for the live inputs with P_j != 0 ---------------------------------------
        s0, s1, s2 = pl.s
        jreg = Signal(idx_in)
        with m.If(s0.valid):
            m.d.comb += live.rd.addr.eq(s0.outer)
        with m.If(s1.valid):
            m.d.comb += pmem.rd.addr.eq(live.rd.data[0])
        m.d.sync += jreg.eq(live.rd.data[0])
        with m.If(s2.valid & (pmem.rd.data[0] != 0)):
            m.d.comb += [plist.wr.addr.eq(n_pl), plist.wr.data[0]["index"].eq(jreg), plist.wr.data[0]["value"].eq(pmem.rd.data[0]), plist.wr.en.eq(1)]
            m.d.sync += n_pl.eq(n_pl + 1)

        # ---- FWD: U = R_U(sum W P + b 2**f_P) - R_U(rho R); S = [U >= theta]; R += (1-gamma)(S - R)
        s0, s1, s2 = fwd.s
        acc = [Signal(signed(self.spec.layers[self.index].accumulator), name=f"acc{k}") for k in range(L)]
        pv1 = Signal.like(plist.rd.data[0]["value"])
        with m.If(s0.valid):
            m.d.comb += plist.rd.addr.eq(s0.inner)
        with m.If(s1.valid):
            m.d.comb += [wmem.rd.addr.eq(_times(plist.rd.data[0]["index"], WPR) + s1.outer), bmem.rd.addr.eq(s1.outer), rmem.rd.addr.eq(s1.outer)]
        m.d.sync += pv1.eq(plist.rd.data[0]["value"])
        one_p = 1 << P_.frac
        with m.If(s2.valid):
            m.d.comb += [umem.wr.addr.eq(s2.outer), omem.wr.addr.eq(s2.outer), rmem.wr.addr.eq(s2.outer)]
            with m.If(s2.last):
                m.d.comb += [umem.wr.en.eq(Const(-1, L)), omem.wr.en.eq(Const(-1, L)), rmem.wr.en.eq(Const(-1, L))]
            for k in range(L):
                prod = Mux(s2.empty, 0, wmem.rd.data[k] * pv1)
                total = _wire(m, Mux(s2.first, 0, acc[k]) + prod, f"fwd_total{k}")
                m.d.sync += acc[k].eq(total)
                r_old = _wire(m, Mux(first_step, 0, rmem.rd.data[k]), f"fwd_r_old{k}")
                cur = shift_round(total + bmem.rd.data[k] * one_p, G.cur_shift, nrn.potential.rounding)
                refr = shift_round(G.rho * r_old, P_.frac, nrn.potential.rounding)
                u_new, _ = fit(cur - refr, nrn.potential)
                u_new = _wire(m, u_new, f"fwd_u{k}")
                pad = (s2.outer * L + k) >= N
                s_new = _wire(m, (u_new >= nrn.theta) & ~pad, f"fwd_s{k}")
                r_new, _ = fit(r_old + leak_complement(s_new * one_p - r_old, G.gamma, P_.rounding), P_)
                m.d.comb += [umem.wr.data[k].eq(Mux(pad, 0, u_new)), omem.wr.data[k].eq(s_new), rmem.wr.data[k].eq(Mux(pad, 0, r_new))]

        # ---- COMPACT -----------------------------------------------------------------------------------
        build_compact(m, omem, spk, WPR, L, in_compact, fwd.done, spk_count, compact_done, spk_base)

        # ---- READOUT: Y = G S, summed into the decision counts ----------------------------------------
        s0, s1, s2 = ro.s
        yacc = [Signal(signed(ybits), name=f"yacc{k}") for k in range(L)]
        with m.If(s0.valid):
            m.d.comb += spk_rd_addr.eq(s0.inner)
        with m.If(s1.valid):
            m.d.comb += gmem.rd.addr.eq(_times(spk.rd.data[0], CPR) + s1.outer)
        with m.If(s2.valid):
            ys = []
            for k in range(L):
                total = _wire(m, Mux(s2.first, 0, yacc[k]) + Mux(s2.empty, 0, gmem.rd.data[k]), f"ro_total{k}")
                m.d.sync += yacc[k].eq(total)
                ys.append(total)
            with m.If(s2.last):
                m.d.comb += [ymem.wr.addr.eq(s2.outer), ymem.wr.en.eq(Const(-1, L))]
                with m.Switch(s2.outer):
                    for w in range(CPR):
                        with m.Case(w):
                            for k in range(L):
                                c = w * L + k
                                if c >= C:
                                    m.d.comb += ymem.wr.data[k].eq(0)
                                    continue
                                m.d.comb += ymem.wr.data[k].eq(ys[k])
                                m.d.sync += self.counts[c].eq(self.counts[c] + ys[k])

        # ---- BACKPROP: d_i = fit_E(R_E(lut(U_i) * sum_k H_ik (Y_k - Yhat_k))) -----------------------
        if learns:
            s0, s1, s2 = back.s
            err_acc = Signal(signed(G.hfmt.width + ybits + C.bit_length() + 2))
            with m.If(s1.valid):
                m.d.comb += [hmem.rd.addr.eq(_times(s1.outer, CPR) + s1.inner), ymem.rd.addr.eq(s1.inner), umem.rd.addr.eq(word_of(s1.outer))]
            with m.If(s2.valid):
                terms = []
                for k in range(L):
                    cls = s2.inner * L + k
                    target = Mux(cls == self.label, 1 << G.cfmt.frac, 0)
                    terms.append(hmem.rd.data[k] * (ymem.rd.data[k] - target))
                err_total = _wire(m, Mux(s2.first, 0, err_acc) + sum(terms), "back_err")
                m.d.sync += err_acc.eq(err_total)
                with m.If(s2.last):
                    u_i = _wire(m, Array([umem.rd.data[k] for k in range(L)])[lane_of(s2.outer)], "back_u")
                    d, _ = narrow(err_total * _sg(nrn, u_i), G.err_shift, G.efmt)
                    d = _wire(m, d, "back_d")
                    m.d.comb += lfsr_h.advance.eq(stoch)
                    m.d.comb += [dlmem.wr.addr.eq(word_of(s2.outer)), dlmem.wr.en.eq(Const(1, L) << lane_of(s2.outer))]
                    for k in range(L):
                        m.d.comb += [dlmem.wr.data[k]["d"].eq(d), dlmem.wr.data[k]["r"].eq(lfsr_h.next)]

            # ---- HUPD: W += R(-d P) over the P list; BUPD: b += R(-d 2**f_P) ----------------------
            s0, s1, s2 = hupd.s
            j2 = Signal(idx_in)
            with m.If(s0.valid):
                m.d.comb += plist.rd.addr.eq(s0.outer)
            with m.If(s1.valid):
                m.d.comb += [wmem.rd.addr.eq(_times(plist.rd.data[0]["index"], WPR) + s1.inner), dlmem.rd.addr.eq(s1.inner)]
            m.d.sync += j2.eq(plist.rd.data[0]["index"])
            with m.If(s2.valid):
                m.d.comb += [wmem.wr.addr.eq(_times(j2, WPR) + s2.inner), wmem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    dk = dlmem.rd.data[k]
                    change = shift_round(-(dk["d"] * pv1), hid_shift, G.wfmt.rounding, dk["r"])
                    value, _ = fit(wmem.rd.data[k] + change, G.wfmt)
                    m.d.comb += wmem.wr.data[k].eq(value)
            s0, s1, s2 = bupd.s
            with m.If(s1.valid):
                m.d.comb += [bmem.rd.addr.eq(s1.outer), dlmem.rd.addr.eq(s1.outer)]
            with m.If(s2.valid):
                m.d.comb += [bmem.wr.addr.eq(s2.outer), bmem.wr.en.eq(Const(-1, L))]
                for k in range(L):
                    dk = dlmem.rd.data[k]
                    change = shift_round(-(dk["d"] * one_p), hid_shift, G.wfmt.rounding, dk["r"])
                    value, _ = fit(bmem.rd.data[k] + change, G.wfmt)
                    m.d.comb += bmem.wr.data[k].eq(value)

        # ---- LIVE and TRACES: Q += (1-beta)(x - Q), P += (1-alpha)(Q - P) on live inputs ----------
        build_live(m, lv, self.ev.addr, ev_j, ev_x if G.pixel_input else None, curmem, live, n_live, t1)
        s0, s1, s2 = tr.s
        jt = Signal(idx_in)
        with m.If(s0.valid):
            m.d.comb += live.rd.addr.eq(s0.outer)
        with m.If(s1.valid):
            j = live.rd.data[0]
            m.d.comb += [pmem.rd.addr.eq(j), qmem.rd.addr.eq(j), curmem.rd.addr.eq(j)]
        m.d.sync += jt.eq(live.rd.data[0])
        with m.If(s2.valid):
            c0 = curmem.rd.data[0]
            fresh = c0["first"] == t1
            active = c0["last"] == t1
            x_in = (c0["x"] << (P_.frac - G.raw_frac)) if G.pixel_input else Const(one_p)
            x_now = _wire(m, Mux(active, x_in, 0), "tr_x")
            p_old = _wire(m, Mux(fresh, 0, pmem.rd.data[0]), "tr_p")
            q_old = _wire(m, Mux(fresh, 0, qmem.rd.data[0]), "tr_q")
            p_new, _ = fit(p_old + leak_complement(q_old - p_old, nrn.decay, P_.rounding), P_)
            q_new, _ = fit(q_old + leak_complement(x_now - q_old, G.beta, P_.rounding), P_)
            m.d.comb += [pmem.wr.addr.eq(jt), pmem.wr.data[0].eq(p_new), pmem.wr.en.eq(1), qmem.wr.addr.eq(jt), qmem.wr.data[0].eq(q_new), qmem.wr.en.eq(1)]
        build_clear(m, clr, live, curmem)

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m
