"""CRC-16 of the D2D adapter: RTL (hdl/d2d/crc.py) against the bit-serial golden model.

Why every 1-, 2- and 3-bit error in a 128-byte window is detected (Hamming distance >= 4)
----------------------------------------------------------------------------------------
G(x) = x^16 + x^15 + x^2 + 1 = (x + 1)(x^15 + x + 1). A codeword is the 1024 message bits plus
16 CRC bits, n = 1040 bits; an error pattern E(x) (degree < 1040) is missed iff G divides E.
- 1 bit, E = x^i: G has more than one term, so it does not divide a monomial.
- 2 bits, E = x^i (x^j + 1), 0 < j < 1040: p(x) = x^15 + x + 1 has p(0) = 1, so it is coprime to
  x^i; it divides x^j + 1 only if its order divides j. p is primitive (checked below), so its
  order is 2^15 - 1 = 32767 > 1039: no 2-bit error is missed.
- 3 bits (any odd weight): E(1) = 1, so (x + 1) does not divide E, hence neither does G.
So d_min >= 4 for any codeword up to 32767 bits, far more than 1040. The tests check the primitive
order, the factorisation, and exhaustively check all 1-, 2- and 3-bit syndromes for a full window.
"""

import os

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from diestack.hdl.d2d.crc import CRC16, xpow_mod
from diestack.sim.d2d import golden


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


# --------------------------------------------------------------------------------------------
# golden model sanity, from the polynomial and a public check value
# --------------------------------------------------------------------------------------------

def _bitrev16(v):
    return int(f"{v:016b}"[::-1], 2)


def test_golden_check_value():
    # Processing LSB-first with an unreflected register and no output reflection equals the
    # bit-reversal of the published CRC-16/ARC check value 0xBB3D ("123456789", poly 0x8005,
    # refin/refout true, init 0). Independent confirmation of bit order and polynomial.
    assert golden.crc16(b"123456789") == _bitrev16(0xBB3D) == 0xBCDD
    assert golden.crc16_window(b"") == 0
    # single bit at position 0 (byte 0 bit 0, processed first) = x^(1023+16) mod G
    one = bytes([1]) + bytes(127)
    assert golden.crc16_window(one) == xpow_mod(1023 + 16)


def _polymul(a, b):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        b >>= 1
    return r


def test_generator_factorisation_and_primitive_factor():
    g = (1 << 16) | golden.CRC_POLY
    assert _polymul(0b11, (1 << 15) | 0b11) == g            # (x+1)(x^15+x+1)
    # order of x modulo p = x^15+x+1 is 32767 = 7*31*151: x^32767 == 1, x^(32767/q) != 1
    p_low = 0b11

    def xpow_p(k):
        result, base = 1, 2
        while k:
            if k & 1:
                result = _mulmod15(result, base)
            base = _mulmod15(base, base)
            k >>= 1
        return result

    def _mulmod15(a, b):
        r = 0
        for i in range(15):
            if (b >> i) & 1:
                r ^= a
            carry = (a >> 14) & 1
            a = (a << 1) & 0x7FFF
            if carry:
                a ^= p_low
        return r

    assert xpow_p(32767) == 1
    for q in (7, 31, 151):
        assert xpow_p(32767 // q) != 1


def _single_bit_syndromes():
    """Syndrome of each single-bit error in a 1040-bit codeword (128 B message + 16 CRC bits)."""
    base = golden.crc16_window(bytes(128))
    syn = []
    for i in range(1024):
        msg = bytearray(128)
        msg[i // 8] = 1 << (i % 8)
        syn.append(golden.crc16_window(bytes(msg)) ^ base)  # linear code (init 0): E -> CRC(E)
    syn += [1 << k for k in range(16)]                      # an error in CRC bit C[k]
    return np.array(syn, dtype=np.int64)


def test_exhaustive_1_2_3_bit_errors_detected():
    syn = _single_bit_syndromes()
    assert np.all(syn != 0), "a 1-bit error is undetected"
    assert len(np.unique(syn)) == len(syn), "a 2-bit error is undetected (equal syndromes)"
    # 3-bit error i<j<k undetected iff syn[i]^syn[j] == syn[k]: check all pairs against the set.
    present = np.zeros(1 << 16, dtype=bool)
    present[syn] = True
    i, j = np.triu_indices(len(syn), k=1)
    assert not present[syn[i] ^ syn[j]].any(), "a 3-bit error is undetected"


@settings(max_examples=200, deadline=None)
@given(msg=st.binary(min_size=0, max_size=128),
       flips=st.lists(st.integers(0, 1023), min_size=1, max_size=3, unique=True))
def test_property_golden_detects_up_to_3_bit_errors(msg, flips):
    msg = msg + bytes(128 - len(msg))
    bad = bytearray(msg)
    for b in flips:
        bad[b // 8] ^= 1 << (b % 8)
    assert golden.crc16_window(bytes(bad)) != golden.crc16_window(msg)


@settings(max_examples=100, deadline=None)
@given(fmt=st.sampled_from(["68", "256", "256lo"]), data=st.data())
def test_property_flit_errors_in_a_window_detected(fmt, data):
    """1..3 flipped bits anywhere inside one CRC window of a flit (CRC bytes included) are caught."""
    f = golden.flit_format(fmt)
    payload = data.draw(st.binary(min_size=f.payload_bytes, max_size=f.payload_bytes))
    flit = bytearray(golden.pack_flit(fmt, payload, pid=1, num=data.draw(st.integers(0, 1023))))
    lo, hi, pos = f.windows[data.draw(st.integers(0, len(f.windows) - 1))]
    covered = list(range(lo, hi)) + [pos, pos + 1]
    bits = data.draw(st.lists(st.integers(0, 8 * len(covered) - 1), min_size=1, max_size=3, unique=True))
    for b in bits:
        flit[covered[b // 8]] ^= 1 << (b % 8)
    assert not all(golden.unpack_flit(fmt, bytes(flit))[2])


# --------------------------------------------------------------------------------------------
# RTL vs golden
# --------------------------------------------------------------------------------------------

def run_crc_rtl(bpc, windows, rng):
    """Feed ``windows`` (list of message bytes, each <= 128) to a CRC16(bpc) with random gaps.

    Returns (comb_results, reg_results): the CRC seen on ``crc_comb`` at each last beat and on
    ``crc`` at each ``done`` strobe.
    """
    dut = CRC16(bpc)
    comb, reg = [], []
    gaps = rng.random(100000) < 0.2
    plan = []
    for msg in windows:
        nbeats = max(1, -(-len(msg) // bpc))
        padded = msg + bytes(nbeats * bpc - len(msg))
        for b in range(nbeats):
            plan.append((int.from_bytes(padded[b * bpc:(b + 1) * bpc], "little"), b == 0, b == nbeats - 1))

    async def bench(ctx):
        k = 0
        for word, start, last in plan:
            while gaps[k % len(gaps)]:
                k += 1
                # an idle cycle with garbage data must be ignored
                ctx.set(dut.valid, 0)
                ctx.set(dut.data, int(rng.integers(0, 1 << 62)))
                ctx.set(dut.start, int(rng.integers(0, 2)))
                ctx.set(dut.last, int(rng.integers(0, 2)))
                await ctx.tick()
                if ctx.get(dut.done):
                    reg.append(ctx.get(dut.crc))
            k += 1
            ctx.set(dut.valid, 1)
            ctx.set(dut.data, word)
            ctx.set(dut.start, start)
            ctx.set(dut.last, last)
            if last:
                comb.append(ctx.get(dut.crc_comb))
            await ctx.tick()
            if ctx.get(dut.done):
                reg.append(ctx.get(dut.crc))
        ctx.set(dut.valid, 0)
        await ctx.tick()
        if ctx.get(dut.done):
            reg.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return comb, reg


@pytest.mark.parametrize("bpc,nwin", [(1, 6), (4, 20), (16, 40), (64, 40), (128, 20)])
def test_rtl_matches_golden(bpc, nwin):
    seed = _seed(1000 + bpc)
    rng = np.random.default_rng(seed)
    lengths = list(rng.integers(0, 129, nwin))
    lengths[:2] = [128, 66]                    # full window and the 68B flit's message
    windows = [rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in lengths]
    comb, reg = run_crc_rtl(bpc, windows, rng)
    want = [golden.crc16_window(w) for w in windows]
    assert len(reg) == len(want), f"seed={seed}: {len(reg)} done strobes for {len(want)} windows"
    assert len(comb) == len(want), f"seed={seed}: {len(comb)} last beats for {len(want)} windows"
    for i, (w, c, r) in enumerate(zip(want, comb, reg)):
        assert c == w and r == w, (f"seed={seed} bpc={bpc} window {i} len {len(windows[i])}: "
                                   f"golden {w:04x} comb {c:04x} reg {r:04x}")


def test_rtl_sampled_error_detection():
    """RTL CRC of windows with 1-3 random bit flips never equals the golden CRC of the clean one."""
    seed = _seed(77)
    rng = np.random.default_rng(seed)
    clean, bad = [], []
    for _ in range(40):
        msg = rng.integers(0, 256, 128, dtype=np.uint8)
        e = msg.copy()
        for b in rng.choice(1024, int(rng.integers(1, 4)), replace=False):
            e[b // 8] ^= np.uint8(1 << (b % 8))
        clean.append(msg.tobytes())
        bad.append(e.tobytes())
    _, reg = run_crc_rtl(16, bad, rng)
    assert len(reg) == len(bad), f"seed={seed}: {len(reg)} done strobes for {len(bad)} windows"
    for i, (c, r) in enumerate(zip(clean, reg)):
        assert r == golden.crc16_window(bad[i]), f"seed={seed} window {i}: RTL != golden"
        assert r != golden.crc16_window(c), f"seed={seed} window {i}: error not detected"


def test_constructor_validation():
    for bad in (0, 3, 256, "16", True):
        with pytest.raises(TypeError, match="bytes_per_cycle"):
            CRC16(bad)
