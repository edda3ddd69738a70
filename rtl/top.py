"""The network top: input and output streams, on-chip encoders, the layers, the register bus.

Streams (``amaranth.lib.stream``):

* ``i`` (in): one sample is the label word (a class, or ``classes`` or more for "no label",
  then nothing learns) followed by ``inputs`` pixel words, already quantized into the
  encoding format (``Golden.quantize``); for an ``events`` encoding, by every step's event
  count and events, each step taken when the first layer is ready for it
  (:func:`localsnn.chip.input_words` writes them).
* ``o`` (out): after every time step a ``STEP`` word whose data are the last layer's classifier
  spikes (bit k = class k; for a random readout, 0); after the last step a ``DECISION`` word
  with the winning class (ties: lowest index).

The core waits for ``o`` to take each word, so a host (or a testbench) can hold ``o.ready``
low and read every potential and weight through the bus between two steps.

Register bus (``bus``): ``addr = region << INDEX_BITS | index``; region 0 holds the control
registers, regions from 1 the layers' memories, element by element. The registers, the
region numbers and the memory map are the chip's contract, :mod:`localsnn.chip`
(``memory_map()`` returns ``chip.memory_map``; ``localsnn generate`` writes it as JSON).
"""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from localsnn.chip import ID_WORD, LAYER_REGIONS, REGISTERS, check_chip, event_index_bits, io_widths, layer_regions, lfsr_stream_names, memory_map, region_elements
from localsnn.golden.encode import latency_times
from localsnn.golden.lfsr import stream_seed
from localsnn.golden.params import Params, check_params, init_params
from localsnn.rtl.common import INDEX_BITS, REGION_BITS, LaneMemory, log2_exact
from localsnn.rtl.lfsr import LFSR
from localsnn.rtl.decolle import DecolleLayer
from localsnn.rtl.lif import LIFLayer
from localsnn.rtl.loop import Loop
from localsnn.spec import NetworkSpec

def bus_signature() -> wiring.Signature:
    """The register bus, from the master's side (see the module docstring)."""
    return wiring.Signature({
        "addr": Out(REGION_BITS + INDEX_BITS),
        "w_data": Out(32),
        "w_en": Out(1),
        "r_en": Out(1),
        "r_data": In(32),
        "ack": In(1),
    })




class Network(wiring.Component):
    """The whole chip for ``spec``, with ``lanes`` datapaths per layer and initial ``params``
    (golden's seeded initial weights when None). With ``spram`` every layer keeps its weights
    (and FELL's traces) in single-port memories without initial contents, which an iCE40UP
    maps to SPRAM; the host writes the weights over the bus before the first sample (the
    memory map marks them ``host_init``; STATUS bit 1 is set until the first such write)."""

    def __init__(self, spec: NetworkSpec, lanes: int = 4, params: Params | None = None, spram: bool = False, pipeline: str = "full") -> None:
        log2_exact(lanes)
        check_chip(spec, lanes)  # a SpecError naming the field the chip does not implement
        self.spec = spec
        self.lanes = lanes
        self.spram = spram
        self.pipeline = pipeline
        self.params = params if params is not None else init_params(spec)
        check_params(spec, self.params)
        self.in_width, self.out_data = io_widths(spec)
        super().__init__({
            "i": In(stream.Signature(unsigned(self.in_width))),
            "o": Out(stream.Signature(unsigned(1 + self.out_data))),
            "bus": In(bus_signature()),
        })
        self.layer_regions = [layer_regions(i) for i in range(len(spec.layers))]
        seeds = {name: stream_seed(spec.lfsr.seed, name, spec.lfsr.width) for name in lfsr_stream_names(spec)}
        self.seeds = seeds
        enc = spec.encoding
        idx0 = event_index_bits(spec)
        if enc.binary:
            self.ev0_shape = unsigned(idx0)
        else:
            self.ev0_shape = data.StructLayout({"index": unsigned(idx0), "value": unsigned(enc.format.width)})
        self.layers = []
        for i in range(len(spec.layers)):
            ev_shape = self.ev0_shape if i == 0 else unsigned(max((spec.layers[i - 1].size - 1).bit_length(), 1))
            ev_depth = spec.inputs if i == 0 else spec.layers[i - 1].size
            engine = DecolleLayer if spec.layers[i].neuron.model == "decolle" else LIFLayer
            self.layers.append(engine(spec, i, lanes, self.params.layers[i], self.layer_regions[i], ev_shape, ev_depth, (seeds[f"round:{i}"], seeds[f"round:{i}.clf"]), spram=spram, pipeline=pipeline))

    def memory_map(self) -> list[dict]:
        """The bus's memory map (:func:`localsnn.chip.memory_map`; ``tests/test_chip.py`` holds
        it equal to the memories the layers elaborate)."""
        return memory_map(self.spec, self.lanes, self.spram)

    def elaborate(self, platform):
        m = Module()
        spec = self.spec
        enc = spec.encoding
        C, T, n_in = spec.classes, spec.timesteps, spec.inputs
        nl = len(self.layers)
        for i, layer in enumerate(self.layers):
            m.submodules[f"layer{i}"] = layer

        # ---- memories: pixels (not for events) and the first layer's event list ----------------
        # ev0 is written once per sample (direct: the nonzero pixels) or anew for every step
        # (rate, latency: the encoder; events: the host's words), after layer 0 has done the last
        fresh = enc.kind != "direct"
        pix = None if enc.per_step else LaneMemory(m, "pixels", unsigned(enc.format.width), 1, n_in)
        ev0 = LaneMemory(m, "ev0", self.ev0_shape, 1, n_in)
        ev0_count = Signal(range(n_in + 1))
        m.d.comb += ev0.rd.en.eq(1)
        if pix is not None:
            m.d.comb += pix.rd.en.eq(1)

        # ---- layer wiring: layer 0 reads ev0, layer l reads layer l-1's spike list ------------
        l0 = self.layers[0]
        m.d.comb += [ev0.rd.addr.eq(l0.ev.addr), l0.ev.data.eq(ev0.rd.data[0]), l0.ev_count.eq(ev0_count)]
        for a, b in zip(self.layers, self.layers[1:]):
            m.d.comb += [a.spk.addr.eq(b.ev.addr), b.ev.data.eq(a.spk.data), b.ev_count.eq(a.spk_count)]

        # ---- LFSRs ------------------------------------------------------------------------------
        m.submodules.lfsr_encode = enc_lfsr = LFSR(spec.lfsr.width, self.seeds["encode"])
        lfsrs = [enc_lfsr]
        for layer in self.layers:
            lfsrs += list(layer.lfsrs) if layer.lfsrs is not None else [None, None]
        for i, layer in enumerate(self.layers):
            for k, lf in enumerate(layer.lfsrs or ()):
                if lf is not None:
                    m.submodules[f"lfsr_{i}_{k}"] = lf

        # ---- control registers -----------------------------------------------------------------
        lo, hi = spec.lr_shift_range()
        ctrl_learn = Signal(init=1)
        lockstep = Signal()
        learn_mask = Signal(nl, init=sum(1 << i for i, ls in enumerate(spec.layers) if ls.learn))
        lr_shift = Signal(range(64), init=spec.learning.lr_shift)
        samples = Signal(24)
        # cycle counters 4x wider than the longest step (the encoder, then every layer's step at
        # its longest) and sample could ever make them: they never overflow
        step_max = n_in + 16 + sum(layer.step_cycles_max for layer in self.layers)
        step_bits = min((4 * step_max).bit_length(), 32)
        sample_bits = min((4 * T * step_max).bit_length(), 32)
        step_cycles = Signal(step_bits)
        sample_cycles = Signal(sample_bits)
        decision = Signal(range(C))
        label = Signal(range(C + 1))
        label_valid = Signal()
        learn_now = Signal(nl)
        steps_done = [Signal(range(T + 1), name=f"steps_done{i}") for i in range(nl)]
        running = [Signal(name=f"running{i}") for i in range(nl)]
        emitted = Signal(range(T + 1))  # STEP words taken by the host in this sample
        for i, layer in enumerate(self.layers):
            m.d.comb += [
                # a layer runs step steps_done[i]; the count moves on only when the step is done
                layer.t.eq(steps_done[i]),
                layer.label.eq(label),
                layer.label_valid.eq(label_valid),
                layer.learn.eq(learn_now[i]),
                layer.lr_shift.eq(lr_shift),
            ]
        for a, b in zip(self.layers, self.layers[1:]):
            m.d.comb += a.spk_bank.eq(b.t[0])  # layer l+1 at step s reads bank s mod 2 of layer l

        # ---- the sequencer: load a sample, run its steps through the layers, decide ---------------
        #
        # Local learning has no backward locking, so the layers form a pipeline over time steps:
        # layer l runs step s as soon as layer l-1 has finished step s (its spikes), layer l+1 has
        # finished step s-2 (it no longer reads the spike-list bank that step s overwrites) and,
        # for the last layer, the host has taken the STEP word of step s-1. With LOCKSTEP (CTRL bit
        # 1) a step starts only when the previous one is through every layer and out, so the bus
        # sees every layer at the same step.
        count = Signal(range(n_in + 1))
        step_counter = Signal(step_bits)
        sample_counter = Signal(sample_bits)
        best = Signal(range(C))
        last = self.layers[-1]
        best_count = Signal(last.counts[0].shape())
        scan = Signal(range(C + 1))
        finish_pending = Signal(nl)
        out_valid = Signal()
        out_spikes = Signal(C)
        in_run = Signal()
        enc_loop = Loop(m, "enc", n_in, 1, outer_max=n_in, inner_max=1) if enc.kind in ("rate", "latency") else None
        enc_ready = Signal()  # the events of step steps_done[0] are in ev0
        enc_busy = Signal()

        with m.FSM(name="seq") as seq:
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [
                        label.eq(Mux(self.i.payload < C, self.i.payload, C)),
                        label_valid.eq(self.i.payload < C),
                        learn_now.eq(Mux(ctrl_learn, learn_mask, 0)),
                        count.eq(0),
                        ev0_count.eq(0),
                        emitted.eq(0),
                        enc_ready.eq(0),
                        sample_counter.eq(0),
                        step_counter.eq(0),
                    ]
                    m.d.sync += [sd.eq(0) for sd in steps_done]
                    m.next = "RUN" if enc.per_step else "LOAD"
            if pix is not None:  # pixel encodings: every pixel, then the steps
                with m.State("LOAD"):
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        x = self.i.payload[: enc.format.width]
                        m.d.comb += [pix.wr.addr.eq(count), pix.wr.data[0].eq(x), pix.wr.en.eq(1)]
                        if enc.kind == "direct":  # the nonzero pixels are the events, every step
                            with m.If(x != 0):
                                m.d.comb += [ev0.wr.addr.eq(ev0_count), ev0.wr.data[0]["index"].eq(count), ev0.wr.data[0]["value"].eq(x), ev0.wr.en.eq(1)]
                                m.d.sync += ev0_count.eq(ev0_count + 1)
                        m.d.sync += count.eq(count + 1)
                        with m.If(count == n_in - 1):
                            m.d.sync += enc_ready.eq(not fresh)
                            m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += in_run.eq(1)
                with m.If((emitted == T) & ~Cat(*running).any()):
                    m.d.sync += [scan.eq(1), best.eq(0), best_count.eq(last.counts[0]), sample_cycles.eq(sample_counter)]
                    m.next = "DECIDE"
            with m.State("DECIDE"):  # argmax, the lowest index wins a tie
                with m.If(scan == C):
                    m.d.sync += decision.eq(best)
                    m.next = "EMITD"
                with m.Else():
                    cnt = Array(last.counts[c] for c in range(C))[scan]
                    with m.If(cnt > best_count):
                        m.d.sync += [best.eq(scan), best_count.eq(cnt)]
                    m.d.sync += scan.eq(scan + 1)
            with m.State("EMITD"):
                m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(decision | (1 << self.out_data))]
                with m.If(self.o.ready):
                    # a layer with nothing to clean up answers in the same clock
                    m.d.sync += finish_pending.eq(~Cat(*[layer.done for layer in self.layers]))
                    for layer in self.layers:
                        m.d.comb += layer.finish.eq(1)
                    m.next = "FINISH"
            with m.State("FINISH"):
                for i, layer in enumerate(self.layers):
                    with m.If(layer.done):
                        m.d.sync += finish_pending[i].eq(0)
                with m.If(finish_pending == 0):
                    m.d.sync += samples.eq(samples + 1)
                    m.next = "IDLE"

        # ---- the layers' schedule (in RUN) ----------------------------------------------------------
        for i, layer in enumerate(self.layers):
            s_next = steps_done[i]
            ok = in_run & ~running[i] & (s_next < T)
            if i == 0:
                ok &= enc_ready & ~enc_busy
                ok &= ~lockstep | (emitted >= s_next)
            else:
                ok &= steps_done[i - 1] > s_next
            if i < nl - 1:
                ok &= steps_done[i + 1] + 1 >= s_next
            else:
                ok &= emitted >= s_next
            with m.If(ok):
                m.d.comb += layer.start.eq(1)
                m.d.sync += running[i].eq(1)
            with m.If(running[i] & layer.done):
                m.d.sync += [running[i].eq(0), steps_done[i].eq(steps_done[i] + 1)]
                if i == 0 and fresh:
                    m.d.sync += enc_ready.eq(0)

        # the last layer's output spikes are complete in the clock after its done (a layer without
        # learning raises done while it writes its last classifier word); take them then
        capture = Signal()
        m.d.sync += capture.eq(running[-1] & last.done)
        with m.If(capture):
            m.d.sync += [out_valid.eq(1), out_spikes.eq(last.clf_spikes)]

        # ---- the STEP words -------------------------------------------------------------------------
        with m.If(in_run & out_valid):
            m.d.comb += [self.o.valid.eq(1), self.o.payload.eq(out_spikes)]
            with m.If(self.o.ready):
                m.d.sync += [out_valid.eq(0), emitted.eq(emitted + 1)]
        # a clock is the host's, not the chip's, when a STEP word waits for o and nothing else works
        # (pipelined layers may go on with later steps while the word waits: those clocks count)
        # (and, for events, when the chip waits for the host's next input word)
        ev_wait, ev_taking = Signal(), Signal()
        stalled = ((out_valid & ~self.o.ready) | ev_wait) & ~Cat(*running).any() & ~enc_busy & ~ev_taking
        with m.If(in_run & ~stalled):
            m.d.sync += [step_counter.eq(step_counter + 1), sample_counter.eq(sample_counter + 1)]
        with m.If(running[-1] & last.done):  # a STEP word is ready: the cycles since the last one
            m.d.sync += [step_cycles.eq(step_counter + 1), step_counter.eq(0)]

        # ---- on-chip encoders (rate, latency): one input per clock ------------------------------
        # (the condition for the next step's events into ev0: layer 0 is through the last step)
        t0 = steps_done[0]
        next_events = in_run & ~enc_ready & ~enc_busy & ~running[0] & (t0 < T) & (~lockstep | (emitted >= t0))
        if enc.kind in ("rate", "latency"):
            start_enc = next_events
            with m.If(start_enc):
                m.d.comb += enc_loop.start.eq(1)
                m.d.sync += [enc_busy.eq(1), ev0_count.eq(0)]
            with m.If(enc_loop.done):
                m.d.sync += [enc_busy.eq(0), enc_ready.eq(1)]
            s0, s1, s2 = enc_loop.s
            frac = enc.format.frac
            with m.If(s0.valid):
                m.d.comb += pix.rd.addr.eq(s0.outer)
            with m.If(s1.valid):
                x = pix.rd.data[0]
                if enc.kind == "rate":
                    # one draw per input per step, in input order: spike when r mod 2**frac < x
                    m.d.comb += enc_lfsr.advance.eq(1)
                    spike = enc_lfsr.next[:frac] < x
                else:
                    # latency (Ma et al. eq. 17): t_s = floor(T - T x / 2**frac + 1/2), golden's expression
                    spike = latency_times(x, T, frac) == t0
                with m.If(spike):
                    m.d.comb += [ev0.wr.addr.eq(ev0_count), ev0.wr.data[0].eq(s1.outer), ev0.wr.en.eq(1)]
                    m.d.sync += ev0_count.eq(ev0_count + 1)
            enc_loop.close()

        # ---- events: the host's words of a step, one per clock -----------------------------------
        # (localsnn.chip.input_words) the count k, then k events {index j, value v >> ...}; an event
        # is kept when j < inputs, v != 0 and the list is not full, so ev0 holds valid inputs only
        if enc.per_step:
            count_bits, idx0 = n_in.bit_length(), event_index_bits(spec)
            left = Signal(count_bits)
            with m.FSM(name="events"):
                with m.State("WAIT"):
                    with m.If(next_events):
                        m.d.sync += ev0_count.eq(0)
                        m.next = "COUNT"
                with m.State("COUNT"):
                    m.d.comb += [self.i.ready.eq(1), ev_wait.eq(~self.i.valid), ev_taking.eq(self.i.valid)]
                    with m.If(self.i.valid):
                        k = self.i.payload[:count_bits]
                        m.d.sync += left.eq(k)
                        with m.If(k == 0):
                            m.d.sync += enc_ready.eq(1)
                            m.next = "WAIT"
                        with m.Else():
                            m.next = "EVENTS"
                with m.State("EVENTS"):
                    m.d.comb += [self.i.ready.eq(1), ev_wait.eq(~self.i.valid), ev_taking.eq(self.i.valid)]
                    with m.If(self.i.valid):
                        j = self.i.payload[:idx0]
                        keep = (j < n_in) & (ev0_count < n_in)
                        if enc.binary:
                            m.d.comb += ev0.wr.data[0].eq(j)
                        else:
                            v = self.i.payload[idx0 : idx0 + enc.format.width]
                            keep &= v != 0
                            m.d.comb += [ev0.wr.data[0]["index"].eq(j), ev0.wr.data[0]["value"].eq(v)]
                        with m.If(keep):
                            m.d.comb += [ev0.wr.addr.eq(ev0_count), ev0.wr.en.eq(1)]
                            m.d.sync += ev0_count.eq(ev0_count + 1)
                        m.d.sync += left.eq(left - 1)
                        with m.If(left == 1):
                            m.d.sync += enc_ready.eq(1)
                            m.next = "WAIT"

        # ---- the register bus ---------------------------------------------------------------------
        bus = self.bus
        region = bus.addr[INDEX_BITS:]
        index = bus.addr[:INDEX_BITS]
        # a layer sees a request only for an element its memory map lists (writes: of a writable
        # memory); any other address reads 0 and ignores writes, so no index wraps onto a weight
        known_r, known_w = Signal(), Signal()
        for i, layer in enumerate(self.layers):
            for e in layer.memory_map():
                inside = (region == e["region"]) & (index < region_elements(e))
                with m.If(inside):
                    m.d.comb += known_r.eq(1)
                    if e["writable"]:
                        m.d.comb += known_w.eq(1)
        # the decode is registered in a request's first clock and acted on from its second (the
        # master holds a request until its acknowledgement): the address compares are off the
        # paths to the acknowledgement and the layers' memories
        decoded = Signal(name="bus_decoded")
        known_r_q, known_w_q, reg0_q = Signal(name="bus_known_r"), Signal(name="bus_known_w"), Signal(name="bus_reg0")
        with m.If(bus.ack):
            m.d.sync += decoded.eq(0)
        with m.Elif(bus.r_en | bus.w_en):
            m.d.sync += [decoded.eq(1), known_r_q.eq(known_r), known_w_q.eq(known_w), reg0_q.eq(region == 0)]
        for layer in self.layers:
            m.d.comb += [
                layer.dbg.region.eq(region),
                layer.dbg.index.eq(index),
                layer.dbg.w_data.eq(bus.w_data),
                layer.dbg.w_en.eq(bus.w_en & decoded & known_w_q),
                layer.dbg.r_en.eq(bus.r_en & decoded & known_r_q),
            ]
        # region 0 answers in the request's second clock; a request still present in the clock
        # after its acknowledgement is a new one (the master drops its enable after the
        # acknowledging edge)
        reg0_now = decoded & reg0_q
        with m.If(reg0_now & (bus.r_en | bus.w_en)):
            m.d.comb += bus.ack.eq(1)
        weights_pending = Signal(init=int(self.spram))  # no weight written since reset (SPRAM)
        for regions in self.layer_regions:
            with m.If(bus.w_en & bus.ack & known_w_q & (region == regions["w"])):
                m.d.sync += weights_pending.eq(0)
        rdata = Signal(32)
        with m.Switch(index):
            with m.Case(REGISTERS["ID"][0]):
                m.d.comb += rdata.eq(ID_WORD)
            with m.Case(REGISTERS["CTRL"][0]):
                m.d.comb += rdata.eq(Cat(ctrl_learn, lockstep))
            with m.Case(REGISTERS["LEARN_MASK"][0]):
                m.d.comb += rdata.eq(learn_mask)
            with m.Case(REGISTERS["LR_SHIFT"][0]):
                m.d.comb += rdata.eq(lr_shift)
            with m.Case(REGISTERS["STATUS"][0]):
                m.d.comb += rdata.eq(Cat(~seq.ongoing("IDLE"), weights_pending) | (samples << 8))
            with m.Case(REGISTERS["STEP_CYCLES"][0]):
                m.d.comb += rdata.eq(step_cycles)
            with m.Case(REGISTERS["SAMPLE_CYCLES"][0]):
                m.d.comb += rdata.eq(sample_cycles)
            with m.Case(REGISTERS["DECISION"][0]):
                m.d.comb += rdata.eq(decision)
            with m.Case(REGISTERS["STEP"][0]):
                m.d.comb += rdata.eq(emitted)
            base = REGISTERS["LFSR_BASE"][0]
            for k, lf in enumerate(lfsrs):
                if lf is not None:
                    with m.Case(base + k):
                        m.d.comb += rdata.eq(lf.state)
            pbase = REGISTERS["PHASE_BASE"][0]
            for i, layer in enumerate(self.layers):
                for p in range(len(layer.PHASES)):
                    with m.Case(pbase + LAYER_REGIONS * i + p):
                        m.d.comb += rdata.eq(layer.phase_cycles[p])
        layer_rdata = Signal(32)
        layer_ack = Signal()
        for layer in self.layers:
            with m.If(layer.dbg.ack):
                m.d.comb += [layer_rdata.eq(layer.dbg.r_data), layer_ack.eq(1)]
        with m.If(reg0_q):
            m.d.comb += bus.r_data.eq(rdata)
        with m.Elif(Mux(bus.w_en, known_w_q, known_r_q)):
            m.d.comb += [bus.r_data.eq(layer_rdata), bus.ack.eq(layer_ack)]
        with m.Elif(decoded & (bus.r_en | bus.w_en)):  # no such element: read 0, ignore writes
            m.d.comb += bus.ack.eq(1)
        with m.If(reg0_now & bus.w_en):
            with m.Switch(index):
                with m.Case(REGISTERS["CTRL"][0]):
                    m.d.sync += [ctrl_learn.eq(bus.w_data[0]), lockstep.eq(bus.w_data[1])]
                with m.Case(REGISTERS["LEARN_MASK"][0]):
                    m.d.sync += learn_mask.eq(bus.w_data[:nl])
                with m.Case(REGISTERS["LR_SHIFT"][0]):
                    in_range = (bus.w_data <= hi) if lo == 0 else ((bus.w_data >= lo) & (bus.w_data <= hi))
                    with m.If(in_range):
                        m.d.sync += lr_shift.eq(bus.w_data)
                for k, lf in enumerate(lfsrs):
                    if lf is not None:
                        with m.Case(base + k):
                            m.d.comb += [lf.load.eq(1), lf.load_value.eq(bus.w_data[: lf.width])]
        return m
