"""cocotb testbench for tests/mac_design.py: random int8 stimulus against a Python sum."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def mac_random(dut):
    seed = int(os.environ["MAC_SEED"])
    rng = random.Random(seed)
    dut._log.info("seed %d", seed)
    dut.a.value = 0
    dut.b.value = 0
    dut.clr.value = 1
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    dut.clr.value = 0
    expected = 0
    for _ in range(200):
        a, b = rng.choice([-128, 127, rng.randint(-128, 127)]), rng.randint(-128, 127)
        dut.a.value = a
        dut.b.value = b
        expected += a * b
        await RisingEdge(dut.clk)
    dut.a.value = 0
    await ReadOnly()
    # MAC_BREAK lets a test prove that a wrong expectation is reported as a failure.
    expected += int(os.environ.get("MAC_BREAK", "0"))
    got = dut.acc.value.to_signed()
    assert got == expected, f"seed {seed}: acc {got} != {expected}"
