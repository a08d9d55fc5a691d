"""cocotb testbench: two D2D PHYs (a ``d2d_phy_pair`` top, die A and die B) over the channel model.

The job folder (``$DIESTACK_JOB``) holds ``job.json``::

    {"lanes": 16, "ui": 8, "seed": 1, "nbeats": 20, "cap": 6000,
     "ab": {...ChannelConfig fields...}, "ba": {...}}

The test trains the link (both ``start`` high), checks both dies reach ACTIVE, then sends random
beats both ways and checks they arrive exactly and in order. It writes ``result.json`` with the
training clocks, the final states and the lane controls.
"""

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge

from .channel import Channel, ChannelConfig, _u, connect

ACTIVE = 7


@cocotb.test()
async def train_and_exchange(dut):
    job = Path(os.environ["DIESTACK_JOB"])
    cfg = json.loads((job / "job.json").read_text())
    seed = int(cfg["seed"])
    dut._log.info(f"seed={seed}")
    rng = np.random.default_rng(seed)
    geo = dict(lanes=cfg["lanes"], ui_per_cycle=cfg["ui"])
    ab = Channel(ChannelConfig(**geo, **{"seed": seed, **cfg.get("ab", {})}))
    ba = Channel(ChannelConfig(**geo, **{"seed": seed + 1, **cfg.get("ba", {})}))
    for d in ("a", "b"):
        for name in ("start", "retrain_req", "tx_valid", "tx_data"):
            getattr(dut, f"{d}_{name}").value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    cocotb.start_soon(connect(dut.clk, ab, dut.a_lanes_tx, dut.b_lanes_rx, dut.a_lanes_tx_valid,
                              dut.b_lanes_rx_valid, dut.a_sb_tx, dut.b_sb_rx))
    cocotb.start_soon(connect(dut.clk, ba, dut.b_lanes_tx, dut.a_lanes_rx, dut.b_lanes_tx_valid,
                              dut.a_lanes_rx_valid, dut.b_sb_tx, dut.a_sb_rx))
    for _ in range(3):
        await RisingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    dut.a_start.value = 1
    dut.b_start.value = 1

    cycles = 0
    while cycles < cfg["cap"]:
        await FallingEdge(dut.clk)
        cycles += 1
        if _u(dut.a_link_up.value) and _u(dut.b_link_up.value):
            break
    states = (_u(dut.a_state.value), _u(dut.b_state.value))
    assert states == (ACTIVE, ACTIVE), f"seed={seed}: states {states} after {cycles} clocks"

    width_bytes = len(dut.a_tx_data) // 8
    n = int(cfg["nbeats"])
    beats = {d: [int.from_bytes(rng.integers(0, 256, width_bytes, dtype=np.uint8).tobytes(), "little")
                 for _ in range(n)] for d in ("a", "b")}
    sent = {"a": 0, "b": 0}
    got = {"a": [], "b": []}          # got["a"]: what B received from A
    for _ in range(20 * n + 100):
        # at the falling edge: outputs of the last rising edge are stable; drive the next inputs
        await FallingEdge(dut.clk)
        for d, other in (("a", "b"), ("b", "a")):
            if _u(getattr(dut, f"{other}_rx_valid").value):
                got[d].append(_u(getattr(dut, f"{other}_rx_data").value))
        if len(got["a"]) >= n and len(got["b"]) >= n:
            break
        for d in ("a", "b"):
            tx_valid = getattr(dut, f"{d}_tx_valid")
            if sent[d] < n:
                tx_valid.value = 1
                getattr(dut, f"{d}_tx_data").value = beats[d][sent[d]]
                # tx_ready depends only on registers, so it is valid now for the coming edge
                if _u(getattr(dut, f"{d}_tx_ready").value):
                    sent[d] += 1
            else:
                tx_valid.value = 0
    for d in ("a", "b"):
        assert got[d] == beats[d], f"seed={seed}: beats from die {d} differ ({len(got[d])} of {n})"
    result = {
        "train_cycles": cycles,
        "states": states,
        "a_tx_reverse": _u(dut.a_tx_reverse.value),
        "b_tx_reverse": _u(dut.b_tx_reverse.value),
        "a_tx_width": _u(dut.a_tx_width.value),
        "b_rx_repair": _u(dut.b_rx_repair.value),
        "a_tx_repair": _u(dut.a_tx_repair.value),
    }
    (job / "result.json").write_text(json.dumps(result))
