"""A two-level loop that issues one (outer, inner) index pair per clock into a 3-stage pipeline.

Every phase of a layer is such a loop: "for each word w, for each input event e", "for each
row r of a list, for each word w". Memories have synchronous reads (data one clock after the
address), so the stages are:

* ``s[0]``  the indices; drive the *list* memory's read address from them (or nothing);
* ``s[1]``  the list entry has arrived; drive the *main* memories' read addresses;
* ``s[2]``  the main data has arrived; compute, drive write ports.

Each stage carries ``valid``, ``outer``, ``inner``, ``first`` (first inner index of an outer
step), ``last`` (last inner index) and ``final`` (the very last pair). ``done`` pulses when the
final pair leaves stage 2. A loop whose outer count is 0 finishes at once. With
``inner_at_least_one`` an empty inner range still yields one pair per outer step, flagged
``empty`` (a neuron update with no input). Counts must not change while the loop runs.

With ``throttle`` the loop issues a pair every other clock, so a pair's memory read (stage 1)
never falls in the clock of another pair's write (stage 2): the read-modify-write phases of a
single-port memory (``LaneMemory(single_port=True)``) take twice the clocks.
"""

from __future__ import annotations

from amaranth import Mux, Signal, Value


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

    def __init__(self, m, name: str, outer, inner, *, outer_max: int, inner_max: int, inner_at_least_one: bool = False, throttle: bool = False) -> None:
        self.start = Signal(name=f"{name}_start")
        self.busy = Signal(name=f"{name}_busy")
        self.done = Signal(name=f"{name}_done")
        self.s = [Stage(f"{name}_s{k}", outer_max, inner_max) for k in range(3)]
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
        for a, b in ((self.s[0], self.s[1]), (self.s[1], self.s[2])):
            m.d.sync += [dst.eq(src) for src, dst in zip(a.fields(), b.fields())]
        # done: the final pair leaves stage 2, or the loop had nothing to do
        nothing = Signal(name=f"{name}_nothing")
        m.d.sync += nothing.eq(self.start & ((outer == 0) | (n_inner == 0)))
        m.d.comb += [
            self.done.eq((self.s[2].valid & self.s[2].final) | nothing),
            self.busy.eq(running | self.s[1].valid | self.s[2].valid),
        ]
