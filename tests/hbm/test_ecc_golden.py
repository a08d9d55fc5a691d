"""The golden SECDED (72,64) model: every single-bit error corrected, every double-bit error detected.

Random words with a printed seed (override with DIESTACK_SEED).
"""

import itertools
import os
import random

import pytest

from diestack.sim.hbm.ecc import (CORRECTED, OK, UNCORRECTABLE, decode, decode_burst, decode_word,
                                  encode, encode_burst, encode_word, flip)

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(1 << 30)))


def words(n, rng):
    edge = [0, (1 << 64) - 1, 1, 1 << 63, 0x5555555555555555, 0xAAAAAAAAAAAAAAAA]
    return edge + [rng.getrandbits(64) for _ in range(n)]


def test_known_answers():
    # Worked by hand from the construction: data bit 0 sits at Hamming position 3 = 0b011, so it
    # feeds c0 and c1; the overall parity is 1 (data) ^ 1 ^ 1 = 1 -> check = 0b1000_0011.
    assert encode(0) == 0
    assert encode(1) == 0x83
    # data bit 63 sits at position 71 = 0b1000111: c0, c1, c2, c6; parity 1 ^ 4 ones -> 1
    assert encode(1 << 63) == 0b1100_0111
    # data bit 1 at position 5 = 0b101: c0, c2; parity 1 ^ 2 ones = 1
    assert encode(2) == 0b1000_0101
    assert encode_word(1) == 1 | 0x83 << 64


def test_linear_and_even_weight():
    rng = random.Random(SEED)
    for a, b in zip(words(50, rng), words(50, rng)):
        assert encode(a ^ b) == encode(a) ^ encode(b), f"seed {SEED}"
        assert encode_word(a).bit_count() % 2 == 0, f"seed {SEED}"


def test_every_single_bit_error_is_corrected():
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    for d in words(40, rng):
        cw = encode_word(d)
        assert decode_word(cw) == (d, OK)
        for bit in range(72):
            assert decode_word(flip(cw, [bit])) == (d, CORRECTED), f"seed {SEED} data {d:#x} bit {bit}"


def test_every_double_bit_error_is_detected():
    print(f"seed {SEED}")
    rng = random.Random(SEED + 1)
    for d in words(6, rng):
        cw = encode_word(d)
        for a, b in itertools.combinations(range(72), 2):
            _, status = decode_word(flip(cw, [a, b]))
            assert status == UNCORRECTABLE, f"seed {SEED} data {d:#x} bits {a},{b}"


def test_triple_errors_never_pass_as_ok():
    """Distance 4: three flips are never a codeword (they may mis-correct, but never read as ok)."""
    rng = random.Random(SEED + 2)
    for _ in range(2000):
        d = rng.getrandbits(64)
        bits = rng.sample(range(72), 3)
        _, status = decode_word(flip(encode_word(d), bits))
        assert status != OK, f"seed {SEED} bits {bits}"


def test_burst_layout_and_counts():
    rng = random.Random(SEED + 3)
    data = rng.getrandbits(256)
    coded = encode_burst(data, 4)
    assert coded.bit_length() <= 288
    for k in range(4):
        w = (coded >> (72 * k)) & ((1 << 72) - 1)
        assert w & ((1 << 64) - 1) == (data >> (64 * k)) & ((1 << 64) - 1)
        assert w >> 64 == encode((data >> (64 * k)) & ((1 << 64) - 1))
    assert decode_burst(coded, 4) == (data, 0, 0)
    bad = flip(coded, [5, 72 + 70, 144 + 1, 144 + 2])     # word 0, 1: single; word 2: double
    out, corrected, uncorrectable = decode_burst(bad, 4)
    assert (corrected, uncorrectable) == (2, 1), f"seed {SEED}"
    mask = ((1 << 64) - 1) << 128
    assert out & ~mask == data & ~mask


def test_rejects_wide_data():
    with pytest.raises(ValueError):
        encode(1 << 64)
    assert decode(0, 0) == (0, OK)
