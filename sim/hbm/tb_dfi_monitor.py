"""cocotb testbench for the DFI monitor on the DFIPlayer test top (tests/hbm/test_dfi_monitor.py).

Each test plays a hand-written per-cycle DFI script through the player, lets the monitor feed the
device model, and writes what it saw to ``$DIESTACK_JOB/<test>.json`` (and the command log CSV) for
the pytest side to check against expectations written from the script by hand.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from ...hdl.hbm.timing import resolve
from .device import TimingViolation
from .dfi_monitor import DFIMonitor

ROW = {"ACT": 1, "PRE": 2, "PREA": 3, "REFab": 4, "REFpb": 5}
COL = {"RD": 1, "WR": 2, "RDA": 3, "WRA": 4}
A, B, C = (0, 0, 0), (0, 0, 1), (0, 1, 0)
X = int.from_bytes(bytes(range(100, 132)), "little")

LEGAL = {
    0: {"row": ("ACT", A, 5)},
    12: {"col": ("WR", A, 3)},
    14: {"row": ("ACT", C, 9)},
    17: {"wr": (X, 0)},                       # WR at 12 + WL 5
    27: {"row": ("ACT", B, 7), "col": ("RD", A, 3)},
    40: {"row": ("PRE", A, 0)},
    61: {"row": ("PRE", B, 0)},
    62: {"row": ("PRE", C, 0)},
    76: {"row": ("REFab", (0, 0, 0), 0)},
}
ILLEGAL = {
    0: {"row": ("ACT", A, 5)},
    10: {"col": ("RD", A, 3)},                # tRCD_RD is 14
    20: {"wr": (X, 0)},                       # write data with no WR before it
}


SAMPLE = os.environ.get("DIESTACK_DFI_SAMPLE", "falling")


def job():
    return Path(os.environ["DIESTACK_JOB"])


async def play(dut, script, cycles):
    """Drive ``script`` (cycle -> bus entries); record the cycles in which rd_count changes."""
    seen = []
    last = dut.rd_count.value.to_unsigned()   # the player is not reset between cocotb tests
    for n in range(cycles):
        await RisingEdge(dut.clk)
        e = script.get(n, {})
        if "row" in e:
            cmd, (sid, bg, ba), addr = e["row"]
            dut.play__row_valid.value = 1
            dut.play__row_cmd.value = ROW[cmd]
            dut.play__row_sid.value, dut.play__row_bg.value, dut.play__row_ba.value = sid, bg, ba
            dut.play__row_addr.value = addr
        else:
            dut.play__row_valid.value = 0
        if "col" in e:
            cmd, (sid, bg, ba), addr = e["col"]
            dut.play__col_valid.value = 1
            dut.play__col_cmd.value = COL[cmd]
            dut.play__col_sid.value, dut.play__col_bg.value, dut.play__col_ba.value = sid, bg, ba
            dut.play__col_addr.value = addr
        else:
            dut.play__col_valid.value = 0
        if "wr" in e:
            dut.play__wrdata_en.value = 1
            dut.play__wrdata.value, dut.play__wrdata_mask.value = e["wr"]
        else:
            dut.play__wrdata_en.value = 0
        await ReadOnly()
        count = dut.rd_count.value.to_unsigned()
        if count != last:
            seen.append(n)
            last = count
    return seen


def idle(dut):
    for name in ("row_valid", "row_cmd", "row_sid", "row_bg", "row_ba", "row_addr", "col_valid",
                 "col_cmd", "col_sid", "col_bg", "col_ba", "col_addr", "wrdata_en", "wrdata",
                 "wrdata_mask"):
        getattr(dut, f"play__{name}").value = 0
    dut.rst.value = 0


def report(name, mon, dut, seen):
    out = mon.summary()
    out.update(rd_count=len(seen), rd_last=str(dut.rd_last.value.to_unsigned()),
               rd_seen_cycles=seen, log=[list(e) for e in mon.log])
    (job() / f"{name}.json").write_text(json.dumps(out))
    mon.write_command_log(job() / f"{name}.csv")


@cocotb.test()
async def legal_script(dut):
    idle(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    mon = DFIMonitor(dut, dut.clk, resolve("hbm2"), channel=3, pseudo_channel=1, sample=SAMPLE)
    mon.start()
    seen = await play(dut, LEGAL, 100)
    report("legal_script", mon, dut, seen)
    mon.check()


@cocotb.test()
async def illegal_script_counted(dut):
    idle(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    mon = DFIMonitor(dut, dut.clk, resolve("hbm2"), on_violation="count", sample=SAMPLE)
    mon.start()
    seen = await play(dut, ILLEGAL, 60)
    report("illegal_script_counted", mon, dut, seen)
    mon.check()                               # count mode: never raises


@cocotb.test()
async def illegal_script_end_mode_raises(dut):
    idle(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    mon = DFIMonitor(dut, dut.clk, resolve("hbm2"), sample=SAMPLE)
    mon.start()
    await play(dut, ILLEGAL, 30)
    try:
        mon.check()
    except AssertionError as e:
        (job() / "end_mode.txt").write_text(str(e))
    else:
        raise AssertionError("end mode did not raise on a violation")


@cocotb.test(expect_error=TimingViolation)
async def illegal_script_immediate(dut):
    idle(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    mon = DFIMonitor(dut, dut.clk, resolve("hbm2"), on_violation="immediate", sample=SAMPLE)
    mon.start()
    (job() / "immediate_started.txt").write_text("started")
    await play(dut, ILLEGAL, 40)              # the violation is at cycle 10: the test ends there
    (job() / "immediate_finished.txt").write_text("the monitor did not stop the test")


@cocotb.test(skip=os.environ.get("DIESTACK_DFI_PERF") is None)
async def monitor_throughput(dut):
    """Cycles per second of the monitor alone (run on demand: DIESTACK_DFI_PERF=<cycles>)."""
    import time
    cycles = int(os.environ["DIESTACK_DFI_PERF"])
    idle(dut)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    if os.environ.get("DIESTACK_DFI_PERF_BARE") is None:
        mon = DFIMonitor(dut, dut.clk, resolve("hbm2"), sample=SAMPLE)
        mon.start()
    t0 = time.perf_counter()
    for _ in range(cycles):
        await RisingEdge(dut.clk)
    dt = time.perf_counter() - t0
    (job() / "perf.json").write_text(json.dumps({"cycles": cycles, "seconds": dt}))
