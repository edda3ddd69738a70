"""A two-level loop that issues one (outer, inner) index pair per clock into a pipeline.

Every phase of a layer is such a loop: "for each word w, for each input event e", "for each
row r of a list, for each word w". Memories have synchronous reads (data one clock after the
address), so the first stages are:

* ``s[0]``  the indices; drive the *list* memory's read address from them (or nothing);
* ``s[1]``  the list entry has arrived; drive (or register, for a shorter path) the *main*
  memories' read addresses;
* ``s[2]`` ... the phase's datapath, one register between stages (:meth:`Loop.stage` grows the
  pipeline to the stage a phase asks for: its depth is the phase's, not a constant). A phase
  reads each memory in the stage before its data are needed, computes in the stage its
  operands are ready in, with one multiplier or one add / compare chain per stage, and writes
  its memories in its last stage.

Each stage carries ``valid``, ``outer``, ``inner``, ``first`` (first inner index of an outer
step), ``last`` (last inner index) and ``final`` (the very last pair). ``done`` pulses when the
final pair leaves the last stage (:meth:`Loop.close` wires it once the datapath is built). A
loop whose outer count is 0 finishes at once. With ``inner_at_least_one`` an empty inner range
still yields one pair per outer step, flagged ``empty`` (a neuron update with no input). Counts
must not change while the loop runs.

A pair enters the pipeline every clock and never waits: the stages move in lock step, so a
value computed in stage k reaches stage k + n through n plain registers (:meth:`Loop.delay`).
Pipeline fill costs ``depth - 1`` clocks per phase, not per pair. Several pairs are in flight at
once; a phase is free of read-after-write hazards because no two pairs of one phase touch the
same memory word of a read-modify-write (their rows are distinct: docs/rtl.md, "The pipeline"),
and a phase starts only after the one before is done.

With ``throttle`` the loop issues a pair every other clock: pairs read a single-port memory
(``LaneMemory(single_port=True)``) in the odd clocks of their stage parity and write it in the
even ones, so the phase's read stage and write stage must differ by an odd number of stages
(the phase checks it: :meth:`Loop.check_rw`). Those read-modify-write phases take twice the
clocks.
"""

from __future__ import annotations

from amaranth import Cat, Mux, Signal, Value

from localsnn.chip import PIPELINES
from localsnn.errors import BadValueError


class Stage:
    def __init__(self, name: str, outer_max: int, inner_max: int) -> None:
        self.valid = Signal(name=f"{name}_valid")
        self.outer = Signal(range(max(outer_max, 2)), name=f"{name}_outer")  # never 0 bits wide
        self.inner = Signal(range(max(inner_max, 2)), name=f"{name}_inner")
        self.first = Signal(name=f"{name}_first")
        self.last = Signal(name=f"{name}_last")
        self.final = Signal(name=f"{name}_final")
        self.empty = Signal(name=f"{name}_empty")

    def fields(self):
        return (self.valid, self.outer, self.inner, self.first, self.last, self.final, self.empty)


class Loop:
    """Build the loop into module ``m``. ``outer`` / ``inner`` are ints or signals (counts)."""

    def __init__(self, m, name: str, outer, inner, *, outer_max: int, inner_max: int, inner_at_least_one: bool = False, throttle: bool = False, pipeline: str = "full") -> None:
        if pipeline not in PIPELINES:
            raise BadValueError(f"loop {name!r}: pipeline {pipeline!r}; allowed: {', '.join(PIPELINES)}")
        self.m = m
        self.full = pipeline == "full"
        # the stage boundaries that are registers in a compact pipeline: after the index and after
        # the list read, and after every stage that reads a memory or loads an accumulator (clocked())
        self._required = {1, 2}
        self._fixed = False
        self.name = name
        self.throttle = throttle
        self._maxes = (outer_max, inner_max)
        self.start = Signal(name=f"{name}_start")
        self.busy = Signal(name=f"{name}_busy")
        self.done = Signal(name=f"{name}_done")
        self.s = [Stage(f"{name}_s0", outer_max, inner_max)]
        self._closed = False
        self._delays = 0
        # the pipeline's registers (stage fields, delays), (register, value): added to the module
        # by close(), outside any m.If of the phase that asked for them, so they load every clock
        self._regs: list = []
        self._wires: list = []  # (signal, value): the merged stages' wires
        outer = Value.cast(outer)
        inner = Value.cast(inner)
        running = Signal(name=f"{name}_running")
        o = Signal(range(max(outer_max, 1) + 1), name=f"{name}_o")
        i = Signal(range(max(inner_max, 1) + 1), name=f"{name}_i")
        n_inner = Signal(range(max(inner_max, 1) + 1), name=f"{name}_ninner")
        empty = inner == 0
        m.d.comb += n_inner.eq(Mux(empty & inner_at_least_one, 1, inner))
        s0 = self.s[0]
        issue = Signal(name=f"{name}_issue")  # a pair enters stage 0 in this clock
        if throttle:
            gap = Signal(name=f"{name}_gap")  # the clock after an issue: none
            m.d.comb += issue.eq(running & ~gap)
            m.d.sync += gap.eq(issue)
        else:
            m.d.comb += issue.eq(running)
        last_inner = i == n_inner - 1
        last_outer = o == outer - 1
        m.d.comb += [
            s0.valid.eq(issue),
            s0.outer.eq(o),
            s0.inner.eq(i),
            s0.first.eq(i == 0),
            s0.last.eq(last_inner),
            s0.final.eq(last_inner & last_outer),
            s0.empty.eq(empty),
        ]
        with m.If(self.start):
            m.d.sync += [o.eq(0), i.eq(0), running.eq((outer != 0) & (n_inner != 0))]
        with m.Elif(issue):
            with m.If(last_inner):
                m.d.sync += [i.eq(0), o.eq(o + 1)]
                with m.If(last_outer):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += i.eq(i + 1)
        self._running = running
        self._nothing = Signal(name=f"{name}_nothing")
        m.d.sync += self._nothing.eq(self.start & ((outer == 0) | (n_inner == 0)))
        self.stage(2)

    def clocked(self, *stages: int) -> None:
        """The stages whose results reach the next stage one clock later in every pipeline:
        those that read a memory (its data arrive a clock after the address) and those that load
        a register of the phase's own (an accumulator, read back in the next stage). Called
        before the phase's datapath asks for stages past 2 or for delays."""
        if self._fixed:
            raise BadValueError(f"loop {self.name!r}: clocked() after the pipeline's stages were used")
        self._required |= {k + 1 for k in stages}

    def phys(self, k: int) -> int:
        """The clock (physical stage) of logical stage ``k``: ``k`` in a full pipeline; in a
        compact one, the number of register boundaries up to it."""
        if k > 2:
            self._fixed = True
        return k if self.full else sum(1 for b in range(1, k + 1) if b in self._required)

    def stage(self, k: int) -> Stage:
        """Logical stage ``k`` (the pipeline grows to it: each physical stage is the one before,
        one clock later)."""
        if self._closed:
            raise BadValueError(f"loop {self.name!r}: stage {k} asked for after the loop was closed")
        k = self.phys(k)
        while len(self.s) <= k:
            prev = self.s[-1]
            nxt = Stage(f"{self.name}_s{len(self.s)}", *self._maxes)
            self._regs += [(dst, src) for src, dst in zip(prev.fields(), nxt.fields())]
            self.s.append(nxt)
        return self.s[k]

    @property
    def depth(self) -> int:
        return len(self.s)

    def close(self) -> None:
        """Wire ``done`` and ``busy`` to the last stage (called once the phase's datapath is
        built)."""
        if self._closed:
            return
        self._closed = True
        self.m.d.sync += [reg.eq(value) for reg, value in self._regs]
        self.m.d.comb += [wire.eq(value) for wire, value in self._wires]
        last = self.s[-1]
        in_flight = [st.valid for st in self.s[1:]]
        self.m.d.comb += [
            # done: the final pair leaves the last stage, or the loop had nothing to do
            self.done.eq((last.valid & last.final) | self._nothing),
            self.busy.eq(self._running | Cat(*in_flight).any()),
        ]

    def check_rw(self, read_stage: int, write_stage: int) -> None:
        """A throttled loop's single-port memory is read in ``read_stage`` and written in
        ``write_stage``: never in the same clock for two pairs issued two clocks apart."""
        if self.throttle and (self.phys(write_stage) - self.phys(read_stage)) % 2 == 0:
            raise BadValueError(f"loop {self.name!r}: a throttled phase reads in stage {read_stage} and writes in stage {write_stage}; they must differ by an odd number")

    def delay(self, value, n: int, at: int, name: str | None = None):
        """``value``, computed in logical stage ``at``, in stage ``at + n``: as many plain
        registers as there are clocks between the two (``n`` in a full pipeline; none where a
        compact one merges the stages). The registers load every clock wherever this is called
        (even inside an ``m.If``: :meth:`close` adds them)."""
        if self._closed:
            raise BadValueError(f"loop {self.name!r}: a delay asked for after the loop was closed")
        value = Value.cast(value)
        n = self.phys(at + n) - self.phys(at)
        self._delays += 1
        base = name or f"{self.name}_d{self._delays}"
        if n == 0:
            if isinstance(value, Signal):
                return value
            # a wire, not the expression: Amaranth does not share equal subexpressions, so every
            # use of an expression would build its logic again (a multiplier per use)
            wire = Signal(value.shape(), name=f"{base}_w")
            self._wires.append((wire, value))
            return wire
        for k in range(n):
            reg = Signal(value.shape(), name=f"{base}_{k + 1}")
            self._regs.append((reg, value))
            value = reg
        return value
