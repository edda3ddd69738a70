"""The bit-accurate golden model: LIF / DECOLLE layers, local classifiers, online learning.

This module IS the specification of the hardware. It works on numpy integers only; every
right shift rounds and every narrowing saturates (or wraps) as the spec says, and every
overflow is counted. Notation below: ``R_F(v, s)`` is ``v`` shifted right by ``s`` with the
rounding of format ``F`` (:func:`~localsnn.golden.fixed.shift_round`), ``fit_F`` brings a value
into ``F``'s range, ``f_X`` is the number of fractional bits of quantity X.

Time step ``t`` of a sample, for every hidden layer ``l`` in order (input first):

**LIF layer** (Ma et al. eq. 2-3), inputs ``x`` (pixels, frac ``f_in``, or spikes, frac 0)::

    I[t]  = R_U(sum_j w_ji x_j[t], f_w + f_in - f_u)            synaptic current
    u[t]  = fit_U(D(u[t-1] - theta o[t-1]) + I[t])                 leak, soft reset
    o[t]  = [u[t] >= theta]

with ``D(v) = R_U(v * d, f_d)`` (multiply) or ``v - R_U(v, k)`` (shift form), ``d =
exp(-1/tau)``. The spiking classifier is the same neuron fed with ``o[t]``.

**DECOLLE layer** (Kaiser et al. eq. 4), with per-input traces P, Q and refractory R::

    U[t]   = fit_U(R_U(sum_j W_ji P_j[t] + b_i 2**f_p, f_w + f_p - f_u) - R_U(rho R_i[t], f_p))
    S[t]   = [U[t] > theta]      (strict: localsnn.spec.fires)
    Y_k[t] = sum_i G_ik S_i[t]                                  fixed random readout
    Q[t+1] = Q + R_P((1-beta)(S_in[t] - Q)),  P[t+1] = P + R_P((1-alpha)(Q[t] - P))
             (trace_order "decolle-public": Q[t+1] in place of Q[t]; spec.advance_traces),
    R[t+1] = R + R_P((1-gamma)(S[t] - R))

**Learning** (when the layer learns; ``y_k = [k == label]`` every step; ``lut`` is the spec's
surrogate table indexed by ``|u - theta|``; ``eta = 2**-lr_shift``):

* ELL (eq. 5-7): ``da_k = (o^a_k - y_k) * lut(u^a_k)``; ``dl_i = fit_E(R_E(lut(u_i) * sum_k
  w^a_ik da_k, ...))``; ``dw^a_ik = R_Wa(-da_k o_i, s_a)``; ``dw_ji = R_W(-dl_i x_j, s_l)``.
  The classifier weights used to carry the error back are those of the forward pass (before
  this step's update).
* FELL (eq. 12-14): as ELL with the presynaptic term replaced by the eligibility traces
  ``e_ji[t] = R_T(e_ji[t-1] * c_i, f_T) + x_j[t]`` where ``c_i = du_i[t]/du_i[t-1] =
  D(1 - theta lut(u_i[t-1]))`` in frac ``f_T`` (the reset term included); likewise ``e^a_ik``.
* DECOLLE (eq. 7-8): ``err_i = sum_k H_ik (Y_k - Yhat_k)`` (``Yhat`` one-hot, ``H`` the
  sign-concordant feedback), ``d_i = fit_E(R_E(err_i lut(U_i), ...))``, ``dW_ji = R_W(-d_i
  P_j, s)``, ``db_i = R_W(-d_i 2**f_p, s)``; the refractory dependency is dropped.

Updates are applied at the end of the step (the next step sees them), or, with
``accumulate = K``, summed at full precision and applied every K steps and at the end of the
sample. Stochastic rounding adds the low ``s`` bits of one draw per postsynaptic neuron per
applied update from the block's own LFSR (``round:<l>``, ``round:<l>.clf``), drawn for every
neuron of the block in index order, so the sequence does not depend on the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from localsnn.errors import BadValueError
from localsnn.golden.encode import Encoder, quantize_pixels
from localsnn.golden.fixed import IntTypes, bits_of, fit, narrow, shift_round, shift_round_inplace
from localsnn.golden.lfsr import LFSR, stream_names
from localsnn.golden.params import Params, check_params, init_params
from localsnn.spec import Decay, FixedFormat, NetworkSpec, advance_traces, fires

# ---------------------------------------------------------------------------------------------
# Neuron arithmetic shared by the per-sample and the batched paths
# ---------------------------------------------------------------------------------------------


def leak(v, decay: Decay, rounding: str):
    """``d * v``: ``R(v * d, f_d)`` or, in shift form, ``v - R(v, k)``."""
    if decay.mode == "shift":
        return v - shift_round(v, decay.shift, rounding)
    return shift_round(v * decay.multiplier, decay.frac, rounding)


def leak_complement(v, decay: Decay, rounding: str):
    """``(1 - d) * v``: ``R(v * (2**f_d - d), f_d)`` or, in shift form, ``R(v, k)``."""
    if decay.mode == "shift":
        return shift_round(v, decay.shift, rounding)
    return shift_round(v * ((1 << decay.frac) - decay.multiplier), decay.frac, rounding)


def surrogate(u, theta: int, table: np.ndarray, index_shift: int):
    """``lut[|u - theta| >> index_shift]``, 0 beyond the table."""
    idx = np.abs(u - theta) >> index_shift
    return np.where(idx < len(table), table[np.minimum(idx, len(table) - 1).astype(np.int64)], 0)


@dataclass(frozen=True)
class NeuronConstants:
    """The integer constants of one population of neurons, taken from the spec once."""

    theta: int
    decay: Decay
    potential: FixedFormat
    lut: np.ndarray
    lut_shift: int
    current_bits: int  # signed width of the largest synaptic current, in potential units

    @property
    def bits(self) -> int:
        """Signed width of ``D(u - theta o) + I`` (the batched path's integer type)."""
        mult = self.decay.multiplier.bit_length() if self.decay.mode == "multiply" else 0
        return max(self.potential.width + 1 + mult, self.current_bits) + 1

    def integrate(self, u, o, current):
        """Eq. 2-3: ``u = fit_U(D(u - theta o) + I)``, ``o = [u >= theta]``. Returns (u, o, overflows)."""
        v = leak(u - self.theta * o, self.decay, self.potential.rounding) + current
        u, over = fit(v, self.potential)
        return u, (u >= self.theta).astype(u.dtype), over

    def sg(self, u):
        return surrogate(u, self.theta, self.lut, self.lut_shift)


class LayerConstants:
    """The integer constants of hidden layer ``index`` and its classifier, derived from the spec
    once: golden computes with them and the RTL (``rtl/layer.py``) sizes and wires its datapath
    from them, so no shift, width or factor is derived twice. Besides the formats (``wfmt``,
    ``cfmt``, ``efmt``, ``tfmt``, ``pfmt``, ``hfmt``) and the neuron populations (``neurons``,
    ``clf_neurons``: :class:`NeuronConstants`):

    * ``err_shift``: the hidden error's narrowing ``delta = R_E(g sigma'(u), err_shift)``, from
      the fractional bits of the product to the error format's (LIF: ``g`` in
      ``cfmt.frac + f_s``, DECOLLE: ``H (Y - Yhat)`` in ``hfmt.frac + cfmt.frac``);
    * ``shift``, ``clf_shift``: the weight-update shifts (``spec.update_shifts()``, learning
      rate included) and ``shift_base``, ``clf_shift_base``: the same without the learning-rate
      shift, to which the chip adds its LR_SHIFT register;
    * :meth:`factor_constants`: FELL's ``c = D(1 - theta lut(u))`` constants.
    """

    def __init__(self, spec: NetworkSpec, index: int, ints: IntTypes | None = None) -> None:
        self.index = index
        self.ints = ints = ints if ints is not None else IntTypes()
        ls = spec.layers[index]
        self.spec = ls
        self.size = ls.size
        self.fan_in = spec.fan_in(index)
        self.classes = spec.classes
        self.model = ls.neuron.model
        self.x_max, self.in_frac = spec.input_format(index)
        #: the raw input is multi-bit pixels (direct encoding into the first layer), not spikes:
        #: decided by the encoding, never by the pixels' format (integer pixels, frac 0, are
        #: still values, not spikes of value 1)
        self.pixel_input = index == 0 and not spec.encoding.binary
        # fractional bits of the raw input values (pixels, or 0 for spikes)
        self.raw_frac = spec.encoding.format.frac if self.pixel_input else 0
        self.wfmt = ls.weight
        lrn = spec.learning
        self.rule = spec.rule  # the registry's entry (localsnn.rules)
        self.traces = spec.rule.traces  # FELL's eligibility traces are the presynaptic factor
        self.efmt = lrn.error
        self.tfmt = lrn.trace
        sur = lrn.surrogate
        self.f_s = sur.format.frac
        table = np.array(sur.table, dtype=ints.wide)
        n = ls.neuron
        self.cur_shift = ls.weight.frac + self.in_frac - n.potential.frac
        self.neurons = NeuronConstants(n.threshold_int, n.alpha, n.potential, table, n.potential.frac - sur.step_frac, ls.accumulator - self.cur_shift)
        clf = ls.classifier
        self.clf_kind = clf.kind
        self.cfmt = clf.weight
        if clf.kind == "spiking":
            cn = clf.neuron
            self.clf_cur_shift = clf.weight.frac - cn.potential.frac
            self.clf_neurons = NeuronConstants(cn.threshold_int, cn.alpha, cn.potential, table, cn.potential.frac - sur.step_frac, clf.accumulator - self.clf_cur_shift)
        else:
            self.hfmt = clf.feedback
        if self.model == "decolle":
            self.beta, self.gamma = n.beta, n.gamma
            self.trace_order = n.trace_order
            self.pfmt = n.trace
            self.f_p = n.trace.frac
            self.rho = n.rho_int
            self.one_p = 1 << n.trace.frac
        shifts = spec.update_shifts()
        self.shift = shifts.get(f"{index}")
        self.clf_shift = shifts.get(f"{index}.clf")
        lr = spec.learning.lr_shift
        self.shift_base = self.shift - lr if self.shift is not None else 0
        self.clf_shift_base = self.clf_shift - lr if self.clf_shift is not None else 0
        if self.model == "decolle":
            self.err_shift = self.hfmt.frac + self.cfmt.frac + self.f_s - self.efmt.frac
        else:
            self.err_shift = self.cfmt.frac + 2 * self.f_s - self.efmt.frac
        # type of the per-synapse products -delta * pre plus the rounding addend (up to 2**s
        # for an update shift s): derived from the formats and the shifts
        if self.traces:
            pre_bits = self.tfmt.width
        elif self.model == "decolle":
            pre_bits = self.pfmt.width + 1
        else:
            pre_bits = self.x_max.bit_length() + 1
        prod = self.efmt.width + pre_bits + 1
        sh = self.shift or 0
        # v + 2**(s-1) (nearest) or v + (r mod 2**s) (stochastic) for |v| < 2**(prod-1)
        addend = {"floor": prod, "nearest": max(prod, sh) + 1, "stochastic": max(prod + 1, sh + 2)}[self.wfmt.rounding]
        # (only a learning layer forms them; the spec checks their widths only then)
        self.upd_dtype = ints.of(max(prod, addend)) if self.shift is not None else ints.wide
        if self.traces:
            # FELL's trace products e * c: |c| is bounded by the spec's fell_factor_bound (it
            # grows with theta * lut_max), plus the rounding addend 2**(f_T - 1)
            self.trace_dtypes = tuple(ints.of(self.tfmt.width + bits_of(spec.fell_factor_bound(nrn)) + 1) for nrn in (n, clf.neuron))


    def factor_constants(self, nrn: NeuronConstants) -> tuple[int, int]:
        """FELL's ``c = R_T(D(1 - theta lut(u[t-1])), shift)``: ``1`` in the product's fractional
        bits ``f_u + f_s`` (``f_u`` the potential's, ``f_s`` the surrogate's) and the shift
        from there to the trace format's, for the layer's or the classifier's ``nrn``."""
        frac = nrn.potential.frac + self.f_s
        return 1 << frac, frac - self.tfmt.frac

# ---------------------------------------------------------------------------------------------
# Records and counters
# ---------------------------------------------------------------------------------------------

COUNTERS = (
    "input_events",  # nonzero presynaptic values read (rows of w touched by the forward pass)
    "synaptic_ops",  # input_events * layer size
    "spikes",
    "clf_spikes",
    "updates",  # hidden weights changed by a nonzero amount
    "clf_updates",
    "update_rows",  # rows of w written by learning (one row = the synapses of one input)
    "error_steps",  # learning steps with a nonzero classifier error (weights may change)
    "overflow_potential",
    "overflow_clf_potential",
    "overflow_weight",
    "overflow_clf_weight",
    "overflow_error",
    "overflow_trace",
)


def new_counters(layers: int) -> list[dict[str, int]]:
    return [dict.fromkeys(COUNTERS, 0) for _ in range(layers)]


@dataclass
class LayerRecord:
    """Every time step of one layer in one sample (arrays with a leading time axis)."""

    spikes: np.ndarray  # (T, size) 0/1
    potential: np.ndarray  # (T, size)
    clf_spikes: np.ndarray | None  # (T, classes) spiking classifier
    clf_potential: np.ndarray | None  # (T, classes) spiking classifier
    readout: np.ndarray | None  # (T, classes) random readout Y
    counts: np.ndarray  # (classes,) spike counts or summed readout
    decision: int


@dataclass
class SampleRecord:
    label: int | None
    layers: list[LayerRecord]
    weights: list[Params] | None = None  # after every step, when asked for
    counters: list[dict[str, int]] = field(default_factory=list)
    #: cumulative counters after every step (``step_counters[t][layer]``), when recording
    step_counters: list[list[dict[str, int]]] | None = None
    #: the first layer's input at every step (pixels or spikes), when recording
    inputs: np.ndarray | None = None

    @property
    def decision(self) -> int:
        return self.layers[-1].decision


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------


class Golden:
    """The chip, in integers. ``params`` are updated in place by learning.

    ``run_sample`` is the reference (one sample, every step, learning as the chip does it,
    optionally recording everything); ``infer`` is the batched inference path (learning off),
    which gives exactly the same spikes, only faster.
    """

    def __init__(self, spec: NetworkSpec, params: Params | None = None, *, exact: bool = False) -> None:
        self.spec = spec
        self.params = params if params is not None else init_params(spec)
        check_params(spec, self.params)
        #: the integer types (``exact``: Python integers everywhere, the reference of the fast ones)
        self.ints = ints = IntTypes(exact)
        for ls, lp in zip(spec.layers, self.params.layers):  # int32 storage where the format fits it
            fmts = {"w": ls.weight, "bias": ls.weight, "clf_w": ls.classifier.weight, "feedback": ls.classifier.feedback}
            for name, arr in lp.arrays().items():
                setattr(lp, name, arr.astype(ints.of(fmts[name].width), copy=False))
        self.layers = [LayerConstants(spec, i, ints) for i in range(len(spec.layers))]
        self.counters = new_counters(len(self.layers))
        self.seed()

    # -- random streams -----------------------------------------------------------------------

    def seed(self, seed: int | None = None) -> None:
        """(Re)start every LFSR stream from the spec's master seed (or ``seed``)."""
        master = self.spec.lfsr.seed if seed is None else seed
        width = self.spec.lfsr.width
        self.streams = {name: LFSR.stream(width, master, name) for name in stream_names(len(self.layers))}
        self.encoder = Encoder(self.spec.encoding, self.spec.timesteps, self.streams["encode"])

    def stream_states(self) -> dict[str, int]:
        return {k: v.state for k, v in self.streams.items()}

    def set_stream_states(self, states: dict[str, int]) -> None:
        for k, v in states.items():
            self.streams[k].state = int(v)

    def quantize(self, pixels, max_value: int) -> np.ndarray:
        return quantize_pixels(pixels, max_value, self.spec.encoding.format)

    # -- per-sample reference path ------------------------------------------------------------

    def run_sample(
        self,
        x: np.ndarray,
        label: int | None = None,
        *,
        learn: bool | list[bool] = True,
        record: bool = True,
        record_weights: bool = False,
    ) -> SampleRecord:
        """Run one sample through every time step: ``x`` quantized pixels, shape ``(inputs,)``,
        or an ``events`` encoding's values, ``(timesteps, inputs)`` (``spec.sample_shape``).

        With ``learn`` (a bool, or one per layer; a layer also needs ``learn = true`` in its
        spec and a rule other than ``none``) and a ``label``, the weights learn online.
        """
        spec = self.spec
        T = spec.timesteps
        nl = len(self.layers)
        learn_l = [learn] * nl if isinstance(learn, bool) else list(learn)
        if len(learn_l) != nl:
            raise BadValueError(f"learn has {len(learn_l)} entries; the network has {nl} layers")
        learn_l = [bool(a) and self.spec.layers[i].learn and spec.rule.learns and label is not None for i, a in enumerate(learn_l)]
        if any(learn_l) and not 0 <= int(label) < spec.classes:
            raise BadValueError(f"label {label} is outside 0..{spec.classes - 1}")
        x = self._check_inputs(np.asarray(x, dtype=np.int64), spec.sample_shape, "a sample")
        inputs = self.encoder.sample_inputs(x).astype(self.ints.wide)
        states = [self._new_state(L, lp) for L, lp in zip(self.layers, self.params.layers)]
        counters = new_counters(nl)
        recs = [self._new_record(L, T) for L in self.layers] if record else None
        weights = [] if record_weights else None
        step_counters = [] if record else None
        counts = [_zeros(spec.classes, self.ints.wide) for _ in self.layers]
        for t in range(T):
            inp = inputs[t]
            for i, L in enumerate(self.layers):
                st = states[i]
                lp = self.params.layers[i]
                apply_now = (t + 1) % spec.learning.accumulate == 0 or t == T - 1
                if L.model == "lif":
                    out = self._lif_step(L, lp, st, inp, label, learn_l[i], apply_now, counters[i])
                else:
                    out = self._decolle_step(L, lp, st, inp, label, learn_l[i], apply_now, counters[i])
                spikes, pot, cspk, cpot, readout = out
                counts[i] += cspk if readout is None else readout
                if recs is not None:
                    r = recs[i]
                    r["spikes"][t] = spikes
                    r["potential"][t] = pot
                    if readout is None:
                        r["clf_spikes"][t] = cspk
                        r["clf_potential"][t] = cpot
                    else:
                        r["readout"][t] = readout
                inp = spikes
            if weights is not None:
                for st in states:
                    st["view"].flush()
                weights.append(self.params.copy())
            if step_counters is not None:
                step_counters.append([dict(c) for c in counters])
        for st in states:
            st["view"].flush()
        for a, b in zip(self.counters, counters):
            for k in a:
                a[k] += b[k]
        layers = []
        for i, L in enumerate(self.layers):
            dec = int(np.argmax(counts[i]))
            if recs is not None:
                r = recs[i]
                layers.append(LayerRecord(counts=counts[i], decision=dec, **r))
            else:
                layers.append(LayerRecord(None, None, None, None, None, counts[i], dec))
        return SampleRecord(label=label, layers=layers, weights=weights, counters=counters, step_counters=step_counters, inputs=inputs if record else None)

    @staticmethod
    def _new_record(L: LayerConstants, T: int) -> dict[str, np.ndarray | None]:
        C = L.classes
        spiking = L.clf_kind == "spiking"
        return {
            "spikes": np.zeros((T, L.size), dtype=np.int8),
            "potential": np.zeros((T, L.size), dtype=np.int64),
            "clf_spikes": np.zeros((T, C), dtype=np.int8) if spiking else None,
            "clf_potential": np.zeros((T, C), dtype=np.int64) if spiking else None,
            "readout": None if spiking else np.zeros((T, C), dtype=np.int64),
        }

    def _new_state(self, L: LayerConstants, lp) -> dict:
        wide = self.ints.wide

        def z(n):
            return _zeros(n, wide)

        st = {"u": z(L.size), "o": z(L.size)}
        st["view"] = _RowView(lp.w, cache=True)
        st["cview"] = _RowView(lp.clf_w, cache=False)
        if L.clf_kind == "spiking":
            st["cu"] = z(L.classes)
            st["co"] = z(L.classes)
        if L.model == "decolle":
            st["P"] = z(L.fan_in)
            st["Q"] = z(L.fan_in)
            st["R"] = z(L.size)
        return st

    # .. learning helpers ......................................................................

    def _rand(self, name: str, n: int, fmt: FixedFormat):
        """One draw per postsynaptic neuron for stochastic rounding, else None."""
        if fmt.rounding != "stochastic":
            return None
        return self.streams[name].draws(n).astype(self.ints.wide)

    def _update_block(self, view: "_RowView", rows, raw, shift, fmt, rand, c, kind):
        """``w[rows] = fit_W(w[rows] + R_W(raw, shift))`` with the per-neuron random words
        broadcast along the rows; ``raw`` is (len(rows), cols), or (cols,) for the same change
        on every row. Counts changed weights, written rows and overflows."""
        if len(rows) == 0:
            return
        if rand is not None:
            rand = rand.astype(raw.dtype, copy=False)
        dw = shift_round_inplace(raw, shift, fmt.rounding, rand)
        nz = int(np.count_nonzero(dw))
        if not nz:
            return
        block = view.rows(rows)
        block += dw.astype(block.dtype, copy=False)
        over = view.fit(fmt)
        c["clf_updates" if kind == "clf" else "updates"] += nz * (len(rows) if dw.ndim == 1 else 1)
        c["overflow_clf_weight" if kind == "clf" else "overflow_weight"] += over
        if kind != "clf":
            c["update_rows"] += len(rows)

    def _learn_block(self, st, key, view, rows, raw, shift, fmt, rand, apply_now, c, kind):
        """Apply this step's raw change ``-delta * pre`` now, or accumulate it at full precision
        (``learning.accumulate > 1``) and apply the sum when ``apply_now``. ``raw`` is None when
        the change is zero."""
        if self.spec.learning.accumulate == 1:
            if raw is not None:
                self._update_block(view, rows, raw, shift, fmt, rand, c, kind)
            return
        acc = st.get(key)
        if acc is None:
            acc = st[key] = _zeros(view.w.shape, self.ints.wide)
        if raw is not None and len(rows):
            acc[rows] += raw
        if apply_now:
            touched = np.flatnonzero(acc.any(axis=1))
            self._update_block(view, touched, acc[touched], shift, fmt, rand, c, kind)
            acc[:] = 0

    # .. LIF layer with a spiking classifier (ELL / FELL / none) ...............................

    def _lif_step(self, L: LayerConstants, lp, st, inp, label, learn, apply_now, c):
        nrn, cn = L.neurons, L.clf_neurons
        view, cview = st["view"], st["cview"]
        rows = np.flatnonzero(inp)
        vals = inp[rows]
        c["input_events"] += len(rows)
        c["synaptic_ops"] += len(rows) * L.size
        fell = learn and L.traces
        if fell:
            # c_i = du[t]/du[t-1] = D(1 - theta * lut(u[t-1])), computed from the previous potential
            c_l = self._fell_factor(nrn, st["u"], L)
            c_a = self._fell_factor(cn, st["cu"], L)
        # forward, hidden layer: I = R_U(sum_j w_ji x_j, f_w + f_in - f_u)
        acc = _weighted_rows(view.rows(rows), vals, L.wfmt.max_abs)
        cur = shift_round(acc, L.cur_shift, nrn.potential.rounding)
        u, o, over = nrn.integrate(st["u"], st["o"], cur)
        c["overflow_potential"] += over
        c["spikes"] += int(o.sum())
        # forward, classifier (binary input o)
        srows = np.flatnonzero(o)
        cacc = cview.w[srows].astype(self.ints.wide).sum(axis=0) if len(srows) else _zeros(L.classes, self.ints.wide)
        ccur = shift_round(cacc, L.clf_cur_shift, cn.potential.rounding)
        cu, co, over = cn.integrate(st["cu"], st["co"], ccur)
        c["overflow_clf_potential"] += over
        c["clf_spikes"] += int(co.sum())
        if fell:
            self._fell_traces(L, st, rows, vals, srows, c_l, c_a, c)
        if learn:
            crand = self._rand(f"round:{L.index}.clf", L.classes, L.cfmt) if apply_now else None
            rand = self._rand(f"round:{L.index}", L.size, L.wfmt) if apply_now else None
            y = _zeros(L.classes, self.ints.wide)
            y[int(label)] = 1
            # delta^a_k = (o^a_k - y_k) * sigma'(u^a_k)       (eq. 4, 5, 7)
            da = (co - y) * cn.sg(cu)
            craw = raw = None
            crows = rows_l = rows
            if da.any():
                c["error_steps"] += 1
                # delta^l_i = sigma'(u_i) * sum_k w^a_ik delta^a_k  (eq. 6: du^a/do^l = w^a)
                g = cview.w.astype(self.ints.wide) @ da
                dl, over = narrow(g * nrn.sg(u), L.err_shift, L.efmt)
                c["overflow_error"] += over
                dl = dl.astype(L.upd_dtype)
                if not L.traces:
                    # dw^a_ik = -eta delta^a_k o^l_i ; dw_ji = -eta delta^l_i x_j
                    crows, craw = srows, -da
                    raw = -dl if not L.pixel_input else np.multiply.outer(vals.astype(L.upd_dtype), -dl)
                else:
                    # FELL: the presynaptic term is the eligibility trace (eq. 13, 14)
                    crows, craw = st["ce"].rows, st["ce"].e * -da[None, :]
                    rows_l = st["e"].rows
                    raw = st["e"].e * -dl[None, :] if dl.any() else None
            self._learn_block(st, "cacc", cview, crows, craw, L.clf_shift, L.cfmt, crand, apply_now, c, "clf")
            self._learn_block(st, "acc", view, rows_l, raw, L.shift, L.wfmt, rand, apply_now, c, "hidden")
        st["u"], st["o"], st["cu"], st["co"] = u, o, cu, co
        return o, u, co, cu, None

    def _fell_factor(self, nrn: NeuronConstants, u_prev, L: LayerConstants):
        """``c = D(1 - theta lut(u[t-1]))`` in the trace format's fractional bits."""
        one, shift = L.factor_constants(nrn)
        one_minus = one - nrn.theta * nrn.sg(u_prev)  # frac f_u + f_s
        return shift_round(leak(one_minus, nrn.decay, L.tfmt.rounding), shift, L.tfmt.rounding)

    def _fell_traces(self, L: LayerConstants, st, rows, vals, srows, c_l, c_a, c):
        """Eq. 12: ``e[t] = R_T(e[t-1] * c, f_T) + x[t]`` for the layer and its classifier."""
        if "e" not in st:
            st["e"] = _Traces(L.fan_in, L.size, L.upd_dtype, L.trace_dtypes[0])
            st["ce"] = _Traces(L.size, L.classes, self.ints.wide, L.trace_dtypes[1])
        c["overflow_trace"] += st["e"].step(c_l, rows, vals << (L.tfmt.frac - L.raw_frac), L.tfmt)
        c["overflow_trace"] += st["ce"].step(c_a, srows, np.full(len(srows), 1 << L.tfmt.frac, dtype=np.int64).astype(self.ints.wide), L.tfmt)

    # .. DECOLLE layer with a random readout ...................................................

    def _decolle_step(self, L: LayerConstants, lp, st, inp, label, learn, apply_now, c):
        nrn = L.neurons
        P, Q, R = st["P"], st["Q"], st["R"]
        rows = np.flatnonzero(P)
        c["input_events"] += len(rows)
        c["synaptic_ops"] += len(rows) * L.size
        # U = R_U(sum_j W_ji P_j + b_i 2**f_p, f_w + f_p - f_u) - R_U(rho R_i, f_p)   (eq. 4)
        acc = _weighted_rows(st["view"].rows(rows), P[rows], L.wfmt.max_abs) + lp.bias.astype(self.ints.wide) * L.one_p
        v = shift_round(acc, L.cur_shift, nrn.potential.rounding) - shift_round(L.rho * R, L.f_p, nrn.potential.rounding)
        U, over = fit(v, nrn.potential)
        c["overflow_potential"] += over
        S = fires("decolle", U, nrn.theta).astype(np.int64).astype(self.ints.wide)
        c["spikes"] += int(S.sum())
        # Y = G S   (random readout, eq. 8)
        Y = lp.clf_w[np.flatnonzero(S)].astype(self.ints.wide).sum(axis=0) if S.any() else _zeros(L.classes, self.ints.wide)
        if learn:
            c["error_steps"] += 1  # the DECOLLE error is formed (and used) at every learning step
            rand = self._rand(f"round:{L.index}", L.size, L.wfmt) if apply_now else None
            target = _zeros(L.classes, self.ints.wide)
            target[int(label)] = 1 << L.cfmt.frac
            # error_i = sum_k H_ik (Y_k - Yhat_k); delta_i = error_i * sigma'(U_i)   (eq. 8)
            err = lp.feedback.astype(self.ints.wide) @ (Y - target)
            d, over = narrow(err * nrn.sg(U), L.err_shift, L.efmt)
            c["overflow_error"] += over
            # dW_ji = -eta delta_i P_j ; the bias is a weight on a constant P = 1.0
            raw = np.multiply.outer(P[rows].astype(L.upd_dtype), -d.astype(L.upd_dtype)) if d.any() else None
            self._learn_block(st, "acc", st["view"], rows, raw, L.shift, L.wfmt, rand, apply_now, c, "hidden")
            self._learn_bias(L, lp, st, d, rand, apply_now, c)
        # traces for the next step: Q <- Q + (1-beta)(S_in - Q); P <- P + (1-alpha)(Q - P), with
        # the Q the spec's trace_order says (localsnn.spec.advance_traces); R likewise
        rnd = L.pfmt.rounding
        x = inp.astype(self.ints.wide) << (L.f_p - L.raw_frac)
        over = []

        def move(v, target, decay):
            moved, o = fit(v + leak_complement(target - v, decay, rnd), L.pfmt)
            over.append(o)
            return moved

        Pn, Qn = advance_traces(L.trace_order, Q, x, lambda t: move(P, t, nrn.decay), lambda t: move(Q, t, L.beta))
        Rn = move(R, S * L.one_p, L.gamma)
        c["overflow_trace"] += sum(over)
        st["P"], st["Q"], st["R"] = Pn, Qn, Rn
        return S, U, None, None, Y

    def _learn_bias(self, L: LayerConstants, lp, st, d, rand, apply_now, c):
        raw = -(d * L.one_p)
        fmt = L.wfmt
        if self.spec.learning.accumulate > 1:
            acc = st.setdefault("bacc", _zeros(L.size, self.ints.wide))
            acc += raw
            if not apply_now:
                return
            raw = acc.copy()
            acc[:] = 0
        # the bias shares its neuron's random word of this step with the neuron's weights
        db = shift_round(raw, L.shift, fmt.rounding, rand)
        if np.any(db):
            b, over = fit(lp.bias.astype(self.ints.wide) + db, fmt)
            lp.bias[:] = b
            c["updates"] += int(np.count_nonzero(db))
            c["overflow_weight"] += over

    # -- batched inference ---------------------------------------------------------------------

    def infer(self, X: np.ndarray, batch: int = 1000) -> np.ndarray:
        """Decision counts of every layer's classifier for quantized samples ``X`` (B, inputs),
        or (B, timesteps, inputs) for an ``events`` encoding, learning off: returns (layers, B,
        classes). Same integers as :meth:`run_sample`."""
        X = np.asarray(X)
        shape = self.spec.sample_shape
        if X.ndim != 1 + len(shape) or X.shape[1:] != shape:
            raise BadValueError(f"samples must have shape (B, {', '.join(map(str, shape))}); got {X.shape}")
        out = [self._infer_batch(self._check_inputs(X[k : k + batch].astype(np.int64), X.shape[1:], "samples")) for k in range(0, len(X), batch)]
        return np.concatenate(out, axis=1) if out else np.zeros((len(self.layers), 0, self.spec.classes), dtype=np.int64)

    def _check_inputs(self, x: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        """``x`` (int64) if its trailing axes are ``shape`` and its values are what the
        encoding takes (pixels or event values ``0 .. format.max_int``), else a BadValueError."""
        spec = self.spec
        if x.shape[x.ndim - len(shape):] != shape or x.ndim < len(shape):
            per = f"{spec.timesteps} steps x {spec.inputs} inputs" if spec.encoding.per_step else f"{spec.inputs} inputs"
            raise BadValueError(f"{what} has {per}; got shape {x.shape}")
        top = spec.encoding.format.max_int
        if x.size and (x.min() < 0 or x.max() > top):
            raise BadValueError(f"{what}: input values must be 0..{top} ({spec.encoding.format.describe()}, quantized); got {x.min()} to {x.max()}")
        return x

    def _infer_batch(self, X):
        T = self.spec.timesteps
        B = len(X)
        seq = self.encoder.sample_inputs(X)  # (B, T, n)
        result = []
        direct = self.spec.encoding.kind == "direct"
        for i, L in enumerate(self.layers):
            lp = self.params.layers[i]
            last = i == len(self.layers) - 1
            spikes = np.zeros((B, T, L.size), dtype=np.int8)
            nrn = L.neurons
            dt = self.ints.of(nrn.bits)
            if L.model == "lif":
                u = _zeros((B, L.size), dt)
                o = np.zeros_like(u)
                const = None
                if i == 0 and direct:  # the input current is the same at every step
                    const = shift_round(_matmul(seq[:, 0], lp.w, L.wfmt.max_abs), L.cur_shift, nrn.potential.rounding).astype(dt)
                for t in range(T):
                    cur = const if const is not None else shift_round(_matmul(seq[:, t], lp.w, L.wfmt.max_abs), L.cur_shift, nrn.potential.rounding).astype(dt)
                    u, o, _ = nrn.integrate(u, o, cur)
                    spikes[:, t] = o
                # the classifier sees o[t] at step t whatever its own state: all steps in one product
                cn = L.clf_neurons
                ccur = shift_round(_matmul(spikes.reshape(B * T, L.size), lp.clf_w, L.cfmt.max_abs), L.clf_cur_shift, cn.potential.rounding)
                cdt = self.ints.of(cn.bits)
                ccur = ccur.reshape(B, T, L.classes).astype(cdt)
                cu = _zeros((B, L.classes), cdt)
                co = np.zeros_like(cu)
                counts = _zeros((B, L.classes), self.ints.wide)
                for t in range(T):
                    cu, co, _ = cn.integrate(cu, co, ccur[:, t])
                    counts += co
            else:
                P = _zeros((B, L.fan_in), self.ints.wide)
                Q = P.copy()
                R = _zeros((B, L.size), self.ints.wide)
                rnd = L.pfmt.rounding
                bias = lp.bias.astype(self.ints.wide) * L.one_p
                for t in range(T):
                    acc = _matmul(P, lp.w, L.wfmt.max_abs) + bias
                    v = shift_round(acc, L.cur_shift, nrn.potential.rounding) - shift_round(L.rho * R, L.f_p, nrn.potential.rounding)
                    U, _ = fit(v, nrn.potential)
                    S = fires("decolle", U, nrn.theta).astype(np.int64).astype(self.ints.wide)
                    x = seq[:, t].astype(self.ints.wide) << (L.f_p - L.raw_frac)
                    P, Q = advance_traces(
                        L.trace_order, Q, x,
                        lambda target, P=P: fit(P + leak_complement(target - P, nrn.decay, rnd), L.pfmt)[0],
                        lambda target, Q=Q: fit(Q + leak_complement(target - Q, L.beta, rnd), L.pfmt)[0],
                    )
                    R = fit(R + leak_complement(S * L.one_p - R, L.gamma, rnd), L.pfmt)[0]
                    spikes[:, t] = S
                counts = _matmul(spikes.reshape(B * T, L.size), lp.clf_w, L.cfmt.max_abs).reshape(B, T, L.classes).sum(axis=1)
            result.append(counts)
            if not last:
                seq = spikes
        return np.stack(result)


def _zeros(shape, dtype) -> np.ndarray:
    """Zeros of ``dtype``; for ``object`` (exact integers) they are Python ints."""
    return np.zeros(shape, dtype=np.int64).astype(dtype, copy=False)


def _exact_dtype(max_abs_sum: int):
    """int32 when every partial sum provably fits it, else int64 (the spec's accumulator
    check proves the worst case fits 63 bits)."""
    return np.int32 if max_abs_sum < (1 << 31) else np.int64


def _weighted_rows(block: np.ndarray, vals: np.ndarray, w_max: int) -> np.ndarray:
    """``sum_j vals_j * block[j]`` exactly (``|block| <= w_max``), as int64 (or as Python
    integers where ``block`` holds them)."""
    if block.dtype == object or vals.dtype == object:
        out = _zeros(block.shape[1], object)
        for v, row in zip(vals, block):
            out = out + int(v) * row.astype(object)
        return out
    if len(vals) == 0:
        return np.zeros(block.shape[1], dtype=np.int64)
    if vals.min() == 1 and vals.max() == 1:
        return block.sum(axis=0, dtype=np.int64)
    dt = _exact_dtype(int(np.abs(vals).sum()) * w_max)
    out = np.einsum("j,ji->i", vals.astype(dt), block.astype(dt, copy=False), dtype=dt)
    return out.astype(np.int64)


def _matmul(x: np.ndarray, w: np.ndarray, w_max: int) -> np.ndarray:
    """Exact integer ``x @ w`` (``|w| <= w_max``; x sparse in practice: spikes, pixels,
    traces), as int64 (or as Python integers where either holds them)."""
    # imported here: scipy.sparse takes a second to import, which every co-simulation's
    # simulator process (one sample at a time, never here) would pay
    import scipy.sparse as sp

    if x.dtype == object or w.dtype == object:
        return x.astype(object) @ w.astype(object)
    dt = _exact_dtype(int(np.abs(x).sum(axis=1).max(initial=0)) * w_max)
    xs = sp.csr_matrix(x.astype(dt, copy=False))
    return np.asarray(xs @ w.astype(dt, copy=False), dtype=np.int64)


class _Traces:
    """FELL's per-synapse eligibility traces, kept for the rows (inputs) active so far in the
    sample, in order of first activity; every other row's trace is 0 and stays 0
    (``e = R(0 * c) + 0``), so it is not stored."""

    def __init__(self, n_rows: int, cols: int, dtype, work_dtype) -> None:
        self.rows = np.zeros(0, dtype=np.int64)
        self.e = np.zeros((0, cols), dtype=dtype)
        self._pos = np.full(n_rows, -1, dtype=np.int64)
        self.work_dtype = work_dtype  # of e * c (see LayerConstants.trace_dtypes)

    def step(self, factor: np.ndarray, new_rows: np.ndarray, new_vals: np.ndarray, fmt: FixedFormat) -> int:
        """``e = fit_T(R_T(e * factor, f_T) + x)`` with ``x`` (already in trace units) on
        ``new_rows``; returns the overflow count."""
        fresh = new_rows[self._pos[new_rows] < 0]
        if len(fresh):
            self._pos[fresh] = len(self.rows) + np.arange(len(fresh))
            self.rows = np.concatenate([self.rows, fresh])
            self.e = np.concatenate([self.e, np.zeros((len(fresh), self.e.shape[1]), dtype=np.int64).astype(self.e.dtype)])
        dt = self.work_dtype
        e = self.e.astype(dt, copy=False)  # worked on in place
        e *= factor.astype(dt)[None, :]
        shift_round_inplace(e, fmt.frac, fmt.rounding)
        if len(new_rows) == len(self.rows) and np.array_equal(new_rows, self.rows):
            e += new_vals.astype(dt)[:, None]  # every live row is active (direct input)
        elif len(new_rows):
            e[self._pos[new_rows]] += new_vals.astype(dt)[:, None]
        e, over = fit(e, fmt)
        self.e = e.astype(self.e.dtype, copy=False)
        return over


class _RowView:
    """The rows of a weight matrix that the current step works on.

    With ``cache``, the rows stay gathered while the same rows are asked for again (a
    direct-coded input touches the same rows at every step of a sample) and are written back
    when other rows are needed or on :meth:`flush`. Without, every update is written back at
    once.
    """

    def __init__(self, w: np.ndarray, cache: bool) -> None:
        self.w = w
        self.cache = cache
        self._rows = None
        self._block = None

    def rows(self, rows: np.ndarray) -> np.ndarray:
        r = self._rows
        if r is not None and (r is rows or (len(r) == len(rows) and np.array_equal(r, rows))):
            return self._block
        self.flush()
        self._rows, self._block = rows, self.w[rows]
        return self._block

    def fit(self, fmt: FixedFormat) -> int:
        """Fit the gathered rows into ``fmt`` (after an update). Returns the overflow count."""
        block, over = fit(self._block, fmt)
        if over:
            self._block[...] = block
        if not self.cache:
            self.flush()
        return over

    def flush(self) -> None:
        if self._rows is not None:
            self.w[self._rows] = self._block
            self._rows = self._block = None
