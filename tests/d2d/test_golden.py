"""Golden models: flit packer/unpacker, Go-Back-N scoreboard, and the lane channel model."""

import os
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from diestack.hdl.common.params import ConfigError
from diestack.sim.d2d import golden
from diestack.sim.d2d.channel import Channel, ChannelConfig, bits_to_word, word_to_bits


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


# --------------------------------------------------------------------------------------------
# flit formats
# --------------------------------------------------------------------------------------------

def test_byte_maps_are_consistent():
    for name, f in golden.FORMATS.items():
        used = list(range(f.header_bytes)) + list(f.payload_index)
        for lo, hi, pos in f.windows:
            used += [pos, pos + 1]
            assert hi - lo <= golden.CRC_WINDOW_BYTES
            assert not (lo <= pos < hi), f"{name}: CRC inside its own window"
        assert sorted(used) == list(range(f.size)), f"{name}: bytes unused or used twice"
    assert golden.payload_fraction("68") == 64 / 68
    assert golden.payload_fraction("256") == golden.payload_fraction("256lo") == 248 / 256
    assert golden.payload_fraction("raw") == 1.0
    # latency-optimized: each 128B half is checked by a window inside that half
    lo_fmt = golden.flit_format("256lo")
    assert [(w[0] // 128, w[2] // 128) for w in lo_fmt.windows] == [(0, 0), (1, 1)]


def test_header_bit_positions():
    # Written from the docstring table, not from pack_header's own loop.
    h = golden.pack_header("68", pid=0b10, ack=0b01, cred=0b11, num=0x2A5)
    assert h == bytes([0b10_01_11_10, 0xA5])
    h = golden.pack_header("256", pid=1, acknum=0x301)
    assert h == bytes([0b01_00_00_00, 0, 0b11, 0x01])
    with pytest.raises(ConfigError, match="num"):
        golden.pack_header("68", num=1024)
    with pytest.raises(ConfigError, match="acknum"):
        golden.pack_header("68", acknum=1)
    assert golden.ack_number({"pid": 0, "num": 7, "acknum": 3}) == 7
    assert golden.ack_number({"pid": 2, "num": 7, "acknum": 3}) == 3


def test_crc_bytes_of_a_packed_flit():
    payload = bytes(range(64))
    flit = golden.pack_flit("68", payload, pid=1, num=3)
    assert flit[2:66] == payload
    crc = golden.crc16_window(flit[:66])
    assert flit[66] == crc & 0xFF and flit[67] == crc >> 8          # d2d.md §1.4 output mapping


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(sorted(golden.FORMATS)), data=st.data())
def test_pack_unpack_round_trip(fmt, data):
    f = golden.flit_format(fmt)
    payload = data.draw(st.binary(min_size=f.payload_bytes, max_size=f.payload_bytes))
    fields = {}
    if f.header_bytes:
        fields = {name: data.draw(st.integers(0, (1 << sum(m - l + 1 for _, m, l in sl)) - 1))
                  for name, sl in f.fields.items()}
    flit = golden.pack_flit(fmt, payload, **fields)
    assert len(flit) == f.size
    header, out, ok = golden.unpack_flit(fmt, flit)
    assert out == payload and header == fields and all(ok) and len(ok) == len(f.windows)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_latency_optimized_halves_fail_independently(data):
    payload = data.draw(st.binary(min_size=248, max_size=248))
    flit = bytearray(golden.pack_flit("256lo", payload, pid=2, num=9))
    half = data.draw(st.integers(0, 1))
    flit[data.draw(st.integers(128 * half, 128 * half + 127))] ^= 1 << data.draw(st.integers(0, 7))
    ok = golden.unpack_flit("256lo", bytes(flit))[2]
    assert ok[half] is False and ok[1 - half] is True


# --------------------------------------------------------------------------------------------
# scoreboard
# --------------------------------------------------------------------------------------------

def test_scoreboard_accepts_exact_and_flags_faults():
    items = [bytes([i]) * 4 for i in range(10)]

    def fresh():
        sb = golden.GoBackNScoreboard(seed=1)
        for i in items:
            sb.sent(0, i)
        return sb

    sb = fresh()
    for i in items:
        sb.received(0, i)
    assert sb.finish() == 10
    sb = fresh()
    sb.received(0, items[0])
    with pytest.raises(golden.ScoreboardError, match="duplicate"):
        sb.received(0, items[0])
    sb = fresh()
    with pytest.raises(golden.ScoreboardError, match="reorder"):
        sb.received(0, items[1])
    sb = fresh()
    with pytest.raises(golden.ScoreboardError, match="corrupt"):
        sb.received(0, b"zzzz")
    sb = fresh()
    sb.received(0, items[0])
    with pytest.raises(golden.ScoreboardError, match="loss"):
        sb.finish()


# --------------------------------------------------------------------------------------------
# channel model
# --------------------------------------------------------------------------------------------

def test_channel_config_validation():
    with pytest.raises(ConfigError, match="ber"):
        ChannelConfig(ber=0.9)
    with pytest.raises(ConfigError, match="stuck_lane"):
        ChannelConfig(lanes=16, stuck_lane=16)
    with pytest.raises(ConfigError, match="burst_len"):
        ChannelConfig(burst_every=100)


def test_word_bits_round_trip():
    rng = np.random.default_rng(_seed(3))
    for lanes, ui in ((16, 8), (34, 8), (68, 16), (5, 3)):
        bits = rng.integers(0, 2, (lanes, ui), dtype=np.uint8)
        w = bits_to_word(bits)
        assert w < 1 << (lanes * ui)
        assert np.array_equal(word_to_bits(w, lanes, ui), bits)
        # lane i occupies bits [i*U, (i+1)*U), UI 0 lowest
        assert (w >> (2 * ui + 1)) & 1 == bits[2, 1]


@pytest.mark.parametrize("ber", [1e-2, 1e-4])
def test_ber_statistics(ber):
    seed = _seed(11)
    ch = Channel(lanes=16, ui_per_cycle=8, ber=ber, seed=seed)
    T = 200_000 if ber < 1e-3 else 20_000
    out = ch.transmit(np.zeros((T, 16, 8), np.uint8))
    n = out.size
    errs = int(out.sum())
    mean, sd = n * ber, np.sqrt(n * ber * (1 - ber))
    assert abs(errs - mean) < 5 * sd, f"seed={seed}: {errs} errors, expected {mean:.0f} +- {sd:.0f}"
    assert errs == ch.flipped
    # uniform over lanes and UIs: chi-square with 127 dof, 5-sigma-ish bound
    per_pos = out.sum(axis=0).reshape(-1)
    expected = errs / per_pos.size
    chi2 = float(((per_pos - expected) ** 2 / expected).sum())
    assert chi2 < 127 + 6 * np.sqrt(2 * 127), f"seed={seed}: chi2 {chi2:.1f}"
    # gaps are geometric: their mean is 1/ber within 5 sigma
    idx = np.flatnonzero(out.reshape(-1))
    gaps = np.diff(idx)
    sd_mean = np.sqrt((1 - ber)) / ber / np.sqrt(len(gaps))
    assert abs(gaps.mean() - 1 / ber) < 5 * sd_mean, f"seed={seed}"


@pytest.mark.parametrize("extra", [{}, {"stuck_lane": 4, "stuck_value": 1, "reverse": True}])
def test_ber_same_seed_same_errors_and_step_equals_transmit(extra):
    """The per-cycle path (with its no-unpack fast path) equals the vectorised block path."""
    seed = _seed(5)
    a = Channel(lanes=18, ber=1e-3, burst_every=997, burst_len=12, latency=2, seed=seed, **extra)
    b = Channel(lanes=18, ber=1e-3, burst_every=997, burst_len=12, latency=2, seed=seed, **extra)
    rng = np.random.default_rng(seed)
    block = rng.integers(0, 2, (300, 18, 8), dtype=np.uint8)
    whole = a.transmit(block)
    stepped = np.stack([word_to_bits(b.step(bits_to_word(w)), 18, 8) for w in block])
    assert np.array_equal(whole, stepped), f"seed={seed}"


def test_burst_placement():
    # bursts every 1000 bits of the (cycle, lane, UI) numbered stream, each inverting 12 UIs of one lane
    P, U, N, L = 16, 8, 1000, 12
    ch = Channel(lanes=P, ui_per_cycle=U, burst_every=N, burst_len=L)
    T = 100
    out = ch.transmit(np.zeros((T, P, U), np.uint8))
    want = np.zeros((T, P, U), np.uint8)
    for k in range(1, T * P * U // N + 1):
        g = k * N
        lane, t0 = (g // U) % P, (g // (P * U)) * U + g % U
        for t in range(t0, t0 + L):
            if t // U < T:
                want[t // U, lane, t % U] ^= 1
    assert np.array_equal(out, want)
    assert ch.bursts == T * P * U // N


def test_stuck_lane_reversal_latency():
    seed = _seed(9)
    rng = np.random.default_rng(seed)
    P, U, lat = 18, 8, 3
    block = rng.integers(0, 2, (50, P, U), dtype=np.uint8)
    ch = Channel(lanes=P, ui_per_cycle=U, stuck_lane=4, stuck_value=1, reverse=True, latency=lat)
    out = ch.transmit(block)
    assert not out[:lat].any()
    got = out[lat:]
    sent = block[:-lat]
    for j in range(P):                       # RX lane j carries TX lane P-1-j
        i = P - 1 - j
        if i == 4:
            assert got[:, j, :].all()
        else:
            assert np.array_equal(got[:, j, :], sent[:, i, :]), f"seed={seed} lane {j}"
    # valid lane and sideband have the same latency and are not corrupted
    vs = [ch.step_valid(v) for v in (1, 0, 1, 1, 0, 0)]
    assert vs == [0, 0, 0, 1, 0, 1]
    sb = [ch.step_sideband(b) for b in (1, 1, 0, 1, 0)]
    assert sb == [0, 0, 0, 1, 1]
    noisy = Channel(lanes=4, sideband_ber=0.1, seed=seed)
    flips = sum(noisy.step_sideband(0) for _ in range(5000))
    assert flips == noisy.sideband_flipped and 350 < flips < 650, f"seed={seed}"


def test_channel_carries_a_megabyte_quickly():
    seed = _seed(21)
    rng = np.random.default_rng(seed)
    P, U = 64, 8
    T = (1 << 23) // (P * U) + 1                 # >= 1 MiB of lane bits
    block = rng.integers(0, 2, (T, P, U), dtype=np.uint8)
    ch = Channel(lanes=P, ui_per_cycle=U, ber=1e-5, latency=4, seed=seed)
    t0 = time.perf_counter()
    out = ch.transmit(block)
    dt = time.perf_counter() - t0
    assert ch.bits >= 8 << 20
    diff = int((out[4:] != block[:-4]).sum())
    assert abs(diff - ch.flipped) <= 50, f"seed={seed}"   # flips in the last 4 cycles still in flight
    print(f"1 MiB through the channel in {dt * 1e3:.1f} ms")
    assert dt < 5.0
