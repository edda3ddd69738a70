"""The LFSR: maximal period, block draws equal to step-by-step draws, stream seeds."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localsnn.golden.lfsr import LFSR, TAPS, is_maximal, step, stream_seed
from localsnn.spec import LFSR_WIDTHS


def test_tap_table_covers_the_spec_widths():
    assert sorted(TAPS) == sorted(LFSR_WIDTHS)


@pytest.mark.parametrize("width", sorted(TAPS))
def test_every_tap_set_is_maximal(width):
    assert is_maximal(width)


@pytest.mark.parametrize("width", [8, 12, 16])
def test_period_by_brute_force(width):
    seed = 1
    s, n = step(seed, width), 1
    seen_zero = False
    while s != seed:
        seen_zero |= s == 0
        s = step(s, width)
        n += 1
    assert n == (1 << width) - 1 and not seen_zero


def test_a_non_maximal_polynomial_is_detected():
    # x^8 + 1 style taps (only the top bit) give a short cycle
    saved = TAPS[8]
    try:
        TAPS[8] = 1 << 7
        from localsnn.golden import lfsr

        lfsr.power.cache_clear()
        lfsr._one_step.cache_clear()
        assert not is_maximal(8)
    finally:
        TAPS[8] = saved
        from localsnn.golden import lfsr

        lfsr.power.cache_clear()
        lfsr._one_step.cache_clear()
    assert is_maximal(8)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(sorted(TAPS)), st.integers(1, (1 << 64) - 1), st.integers(0, 9000))
def test_block_draws_equal_single_draws(width, seed, n):
    seed = seed % ((1 << width) - 1) + 1
    a, b = LFSR(width, seed), LFSR(width, seed)
    single = [a.draw() for _ in range(n)]
    block = b.draws(n)
    assert block.tolist() == single
    assert a.state == b.state


@given(st.sampled_from(sorted(TAPS)), st.integers(1, 1 << 20))
def test_a_draw_is_width_steps(width, seed):
    seed = seed % ((1 << width) - 1) + 1
    s = seed
    for _ in range(width):
        s = step(s, width)
    assert LFSR(width, seed).draw() == s


def test_draws_in_pieces_continue_the_sequence():
    a, b = LFSR(32, 99), LFSR(32, 99)
    whole = a.draws(10000)
    parts = np.concatenate([b.draws(k) for k in (1, 799, 4096, 5104)])
    assert np.array_equal(whole, parts)


@given(st.integers(1, (1 << 32) - 1), st.text(min_size=1, max_size=12))
def test_stream_seeds_are_valid_and_name_dependent(master, name):
    s = stream_seed(master, name, 32)
    assert 0 < s < (1 << 32)
    assert stream_seed(master, name, 32) == s
    assert stream_seed(master, name + "x", 32) != s


def test_bad_seed_and_width_are_refused():
    with pytest.raises(ValueError, match="seed must be from 1 to 255"):
        LFSR(8, 0)
    with pytest.raises(ValueError, match="no tap table for width 7"):
        LFSR(7, 1)
