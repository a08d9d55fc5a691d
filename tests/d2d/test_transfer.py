"""End-to-end D2D transfers: die A -> channel model -> die B through the RTL adapters (cocotb).

Every case checks byte-exactness of the file, the golden Go-Back-N scoreboard inside the
testbench (in order, no loss, no duplicates per stream) and that no receive buffer overflowed.
The default suite uses one Verilog build (x16, 256B flits) on Verilator; the other formats and
widths, Icarus and the >= 1 MB runs are ``slow`` (and ``diestack bench d2d --fault-mb 1``).
Seeds are printed; override with DIESTACK_SEED.
"""

import os
import random

import pytest

from diestack.flows.d2d import transfer
from diestack.sim.runner import available


def _seed(default):
    s = int(os.environ.get("DIESTACK_SEED", default))
    print(f"seed={s}")
    return s


def _data(seed, n):
    return random.Random(seed).randbytes(n)


def _need(sim):
    if sim not in available():
        pytest.skip(f"{sim} not installed")


def _check(data, out, m, seed, **expect):
    msg = f"seed={seed} metrics={ {k: v for k, v in m.items() if k not in ('counters', 'config')} }"
    assert m["completed"], msg
    assert m["scoreboard"] == "ok", msg
    assert out == data, "bytes differ: " + msg
    assert m["overflow"] == 0, msg
    assert m["counters"]["b_refused"] + m["counters"]["a_refused"] >= 0
    rl = m["rtl_latency"]
    assert rl["count"] == m["payloads"], msg
    assert (rl["min"], rl["max"]) == (m["latency_min"], m["latency_max"]), \
        f"RTL latency counters disagree with the testbench: {rl}: " + msg
    for k, v in expect.items():
        assert v(m[k]), f"{k}={m[k]}: " + msg
    print({k: m[k] for k in ("goodput", "crc_errors", "replays", "retrains", "latency_avg",
                             "pipeline_latency_max", "cycles")})


@pytest.mark.parametrize("ber", [0.0, 1e-5, 1e-4])
def test_ber_sweep(ber):
    _need("verilator")
    seed = _seed(11)
    data = _data(seed, 12000)
    out, m = transfer(data, ber=ber, seed=seed, sim="verilator")
    if ber == 0:
        _check(data, out, m, seed, goodput=lambda g: g >= 0.95, crc_errors=lambda n: n == 0,
               replays=lambda n: n == 0, pipeline_latency_max=lambda n: n <= 8)
    elif ber == 1e-4:
        _check(data, out, m, seed, crc_errors=lambda n: n > 0, replays=lambda n: n > 0)
    else:
        _check(data, out, m, seed)


def test_stuck_lane_at_bringup_repaired_by_training():
    _need("verilator")
    seed = _seed(19)
    data = _data(seed, 6000)
    out, m = transfer(data, stuck_lane=9, stuck_value=1, seed=seed, sim="verilator")
    _check(data, out, m, seed, crc_errors=lambda n: n == 0)
    assert [9, 16] in m["lanes_bringup"]["a"]["repaired"], m["lanes_bringup"]


def test_burst_errors():
    _need("verilator")
    seed = _seed(12)
    data = _data(seed, 12000)
    out, m = transfer(data, burst_every=30000, burst_len=24, seed=seed, sim="verilator")
    _check(data, out, m, seed, crc_errors=lambda n: n > 0)


def test_stuck_lane_mid_transfer_retrains_and_repairs():
    """A lane sticks at 0 mid-transfer: CRC errors -> replays -> retry escalation -> the PHY
    retrains, its lane test finds the lane and repairs it onto a spare (slot 16, the first spare
    of the x16 group); the replay buffer resends what was lost and the transfer completes exactly."""
    _need("verilator")
    seed = _seed(13)
    data = _data(seed, 24000)
    out, m = transfer(data, ber=1e-6, stuck_lane=5, stuck_after=300, seed=seed, sim="verilator")
    _check(data, out, m, seed, retrains=lambda n: n >= 1, phy_retrains=lambda n: n >= 1)
    assert m["lanes_bringup"]["a"]["repaired"] == [], m["lanes_bringup"]
    assert [5, 16] in m["lanes_final"]["a"]["repaired"], m["lanes_final"]


def test_reversed_wiring_and_backpressure():
    _need("verilator")
    seed = _seed(14)
    data = _data(seed, 12000)
    out, m = transfer(data, reverse=True, backpressure=0.5, ber=1e-5, seed=seed, sim="verilator")
    _check(data, out, m, seed)
    assert m["lanes_final"]["a"]["reversed"] and m["lanes_final"]["b"]["reversed"], m["lanes_final"]
    assert m["counters"]["a_credit_stall_cycles"] > 0, "back-pressure never reached the sender"


@pytest.mark.slow
@pytest.mark.parametrize("flit,lanes", [("256lo", 16), ("68", 16), ("256", 32), ("256lo", 64)])
def test_formats_and_widths(flit, lanes):
    _need("verilator")
    seed = _seed(15)
    data = _data(seed, 20000)
    out, m = transfer(data, flit=flit, lanes=lanes, ber=1e-5, seed=seed, sim="verilator")
    _check(data, out, m, seed)
    if flit == "256lo":
        out, m = transfer(data, flit=flit, lanes=lanes, seed=seed, sim="verilator")
        _check(data, out, m, seed, pipeline_latency_max=lambda n: n <= 8)


@pytest.mark.slow
def test_raw_mode_clean_channel():
    _need("verilator")
    seed = _seed(16)
    data = _data(seed, 8000)
    out, m = transfer(data, flit="raw", seed=seed, sim="verilator")
    _check(data, out, m, seed)


@pytest.mark.slow
def test_icarus_small_transfer():
    _need("icarus")
    seed = _seed(17)
    data = _data(seed, 1500)
    out, m = transfer(data, ber=1e-4, seed=seed, sim="icarus")
    _check(data, out, m, seed)


@pytest.mark.slow
@pytest.mark.parametrize("case", [dict(ber=1e-5), dict(burst_every=100_000, burst_len=16),
                                  dict(stuck_lane=3, stuck_after=2000), dict(backpressure=0.3)])
def test_one_megabyte_fault_cases(case):
    _need("verilator")
    seed = _seed(18)
    data = _data(seed, 1 << 20)
    out, m = transfer(data, seed=seed, sim="verilator", **case)
    _check(data, out, m, seed)
