"""Property tests of the fixed-point helpers: every rounding mode, saturation and wrapping."""

from fractions import Fraction
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localsnn.golden.fixed import fit, narrow, shift_round, shift_round_inplace, storage_dtype
from localsnn.spec import FixedFormat

ints = st.integers(min_value=-(1 << 40), max_value=1 << 40)
shifts = st.integers(min_value=0, max_value=20)


@given(ints, shifts)
def test_floor_is_floor_division(v, s):
    assert shift_round(v, s, "floor") == math.floor(Fraction(v, 1 << s))


@given(ints, shifts)
def test_nearest_is_round_half_up(v, s):
    expected = math.floor(Fraction(v, 1 << s) + Fraction(1, 2))
    assert shift_round(v, s, "nearest") == expected


@given(ints, st.integers(min_value=1, max_value=12))
def test_stochastic_is_floor_or_ceil_and_unbiased(v, s):
    # over every random addend r in [0, 2**s) the results average to v / 2**s exactly
    results = [shift_round(v, s, "stochastic", r) for r in range(1 << s)]
    exact = Fraction(v, 1 << s)
    assert set(results) <= {math.floor(exact), math.ceil(exact)}
    assert Fraction(sum(results), 1 << s) == exact


@given(ints, st.integers(min_value=1, max_value=12), st.integers(min_value=0, max_value=(1 << 62)))
def test_stochastic_uses_only_low_bits_of_the_random_word(v, s, r):
    assert shift_round(v, s, "stochastic", r) == shift_round(v, s, "stochastic", r & ((1 << s) - 1))


@given(ints, st.integers(min_value=-8, max_value=0), st.sampled_from(["floor", "nearest", "stochastic"]))
def test_non_positive_shift_is_exact_left_shift(v, s, mode):
    assert shift_round(v, s, mode, 12345) == v * (1 << -s)


@given(st.lists(ints, min_size=1, max_size=20), shifts, st.sampled_from(["floor", "nearest", "stochastic"]), st.integers(0, 1 << 30))
def test_array_and_inplace_forms_agree_with_scalars(vals, s, mode, r):
    arr = np.array(vals, dtype=np.int64)
    expected = [shift_round(v, s, mode, r) for v in vals]
    assert shift_round(arr, s, mode, np.int64(r)).tolist() == expected
    assert shift_round_inplace(arr.copy(), s, mode, np.int64(r)).tolist() == expected


formats = st.builds(
    lambda w, f, signed, ov: FixedFormat(w, min(f, w), signed, ov),
    st.integers(2, 24),
    st.integers(0, 24),
    st.booleans(),
    st.sampled_from(["saturate", "wrap"]),
)


@given(formats, st.lists(st.integers(-(1 << 30), 1 << 30), min_size=1, max_size=30))
def test_fit_saturates_or_wraps_and_counts(fmt, vals):
    arr = np.array(vals, dtype=np.int64)
    out, over = fit(arr, fmt)
    inside = [fmt.min_int <= v <= fmt.max_int for v in vals]
    assert over == inside.count(False)
    for v, o, ok in zip(vals, out.tolist(), inside):
        if ok:
            assert o == v
        elif fmt.overflow == "saturate":
            assert o == (fmt.min_int if v < fmt.min_int else fmt.max_int)
        else:  # two's complement: the same low `width` bits, value inside the range
            assert (o - v) % (1 << fmt.width) == 0 and fmt.min_int <= o <= fmt.max_int
    # scalars behave the same
    for v, o in zip(vals, out.tolist()):
        assert fit(v, fmt)[0] == o


@given(formats, ints, shifts)
def test_narrow_is_round_then_fit(fmt, v, s):
    rounded = shift_round(v, s, fmt.rounding if fmt.rounding != "stochastic" else "floor")
    fmt2 = FixedFormat(fmt.width, fmt.frac, fmt.signed, fmt.overflow, "floor")
    assert narrow(v, s, fmt2) == fit(rounded, fmt2)


@given(formats)
def test_format_range_and_storage_dtype(fmt):
    if fmt.signed:
        assert fmt.min_int == -(1 << (fmt.width - 1)) and fmt.max_int == (1 << (fmt.width - 1)) - 1
    else:
        assert fmt.min_int == 0 and fmt.max_int == (1 << fmt.width) - 1
    info = np.iinfo(storage_dtype(fmt))
    assert info.min <= fmt.min_int and fmt.max_int <= info.max
    assert fmt.describe() == f"{'s' if fmt.signed else 'u'}{fmt.width}.{fmt.frac}"


@settings(max_examples=50)
@given(formats, st.integers(-(1 << 20), 1 << 20))
def test_represent_accepts_exactly_the_representable_values(fmt, k):
    value = k / (1 << fmt.frac)
    if fmt.min_int <= k <= fmt.max_int:
        assert fmt.represent(value, "x") == k
    else:
        with pytest.raises(ValueError, match="outside the range"):
            fmt.represent(value, "x")


def test_stochastic_without_random_words_is_an_error():
    with pytest.raises(ValueError, match="random words"):
        shift_round(5, 2, "stochastic")
