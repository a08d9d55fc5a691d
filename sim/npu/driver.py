"""Register-map driver of ``npu_top`` over AXI4-Lite (cocotbext-axi ``AxiLiteMaster``).

Register map (the same table as :mod:`diestack.hdl.npu.control`, which is authoritative):

======  =====================  =================================================================
0x000   ID                     0x4E505531 ("NPU1")
0x004   VERSION                0x00010000
0x008   CFG_ARRAY              [7:0] R, [15:8] C, [17:16] dataflows (1 ws, 2 os, 3 both)
0x00C   CFG_SP                 [23:0] scratchpad rows, [31:24] banks
0x010   CFG_ACC                [23:0] accumulator rows, [31:24] banks
0x014   CFG_AXI                [15:0] AXI data bits, [23:16] max reads in flight
0x018   CFG_QUEUE              command queue depth
0x01C   CFG_WIDTHS             [7:0] 8, [15:8] 32, [23:16] AXI address bits, [31:24] ID bits
0x020   STATUS                 [0] busy, [1] queue full, [2] queue empty, [3] error, [24:8] level
0x024   DONE_COUNT             commands completed
0x028   IRQ_ENABLE             [0]
0x02C   IRQ_STATUS             [0] pending, write 1 to clear
0x030   ERROR                  [0] queue overflow [1] GEMM rejected [2] AXI error [3] bad opcode
0x034   QUEUE_FREE             free queue entries
0x040   CMD0..CMD15            command words; 0x080 CMD_PUSH pushes them
0x0C0   PERF_CTRL              [0] clear counters
0x0C4.. PERF_*                 CYCLES, COMPUTE_SPAN, COMPUTE_CYCLES, MACS_LO, MACS_HI,
                               STALL_DMA_RD, STALL_DMA_WR, STALL_QUEUE, COMMANDS
======  =====================  =================================================================
"""

from cocotb.triggers import ClockCycles
import logging
import random

import cocotb
from cocotb.clock import Clock
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from ...hdl.npu.control import (REGS, CMD_WORDS, OP_GEMM, OP_CONFIG, OP_MVIN, OP_MVOUT,
                                OP_COMPUTE, OP_PRELOAD, OP_FENCE, NPU_ID)

__all__ = ["NPUDriver", "start_npu", "axi_ram", "gemm_words", "config_words", "fence_words", "mvin_words", "mvout_words",
           "preload_words", "compute_words", "PERF_NAMES"]

PERF_NAMES = ("cycles", "compute_span", "compute_cycles", "macs", "stall_dma_read",
              "stall_dma_write", "stall_queue_empty", "commands")


def gemm_words(*, m, n, k, a, lda, b, ldb, c, ldc, d=None, ldd=0, dataflow="ws",
               int8=False, scale=1, shift=0, relu=False, irq=True):
    """The 16 command words of a GEMM (field layout in hdl/npu/control.py)."""
    for name, v in (("M", m), ("N", n), ("K", k)):
        if not 1 <= v <= 65535:
            raise ValueError(f"{name} must be in 1..65535, not {v}")
    if dataflow not in ("ws", "os"):
        raise ValueError(f"dataflow must be 'ws' or 'os', not {dataflow!r}")
    if not 0 <= shift <= 63:
        raise ValueError(f"shift must be 0..63, not {shift}")
    w = [0] * CMD_WORDS
    w[0] = (OP_GEMM | (int(irq) << 8) | (int(d is not None) << 9) | (int(dataflow == "os") << 10)
            | (int(int8) << 11) | (int(relu) << 12) | (shift << 16))
    w[1] = m | (n << 16)
    w[2] = k
    w[3] = scale & 0xFFFFFFFF
    w[4:12] = [a, lda, b, ldb, c, ldc, d or 0, ldd]
    return w



def _fields(**kw):
    """Range-check command fields: name=(value, bits)."""
    for name, (v, bits) in kw.items():
        if not 0 <= int(v) < (1 << bits):
            raise ValueError(f"{name} must be in 0..{(1 << bits) - 1}, not {v}")


def _words(op, irq, w0_extra=0, **words):
    w = [0] * CMD_WORDS
    w[0] = op | (int(irq) << 8) | w0_extra
    for i, v in words.items():
        w[int(i[1:])] = int(v) & 0xFFFFFFFF
    return w


def config_words(*, dataflow="ws", int8=False, relu=False, scale=1, shift=0, irq=False):
    """CONFIG: dataflow of the raw PRELOAD/COMPUTE commands and the MVOUT output format."""
    if dataflow not in ("ws", "os"):
        raise ValueError(f"dataflow must be 'ws' or 'os', not {dataflow!r}")
    _fields(shift=(shift, 6))
    return _words(OP_CONFIG, irq, (int(dataflow == "os") << 10) | (int(int8) << 11)
                  | (int(relu) << 12) | (shift << 16), w3=scale)


def fence_words(*, irq=False):
    """FENCE: completes once the core is idle."""
    return _words(OP_FENCE, irq)


def mvin_words(*, addr, stride, rows, row_bytes, local, chunk_bytes=0, row_step=1, chunk_step=0,
               to_acc=False, accumulate=False, irq=False):
    """MVIN: ``rows`` memory rows of ``row_bytes`` at ``addr + r*stride``, cut into chunks of
    ``chunk_bytes`` (0 = a full local row); chunk c of row r -> local row
    ``local + r*row_step + c*chunk_step`` (accumulator when ``to_acc``, added when
    ``accumulate``)."""
    _fields(rows=(rows, 16), row_bytes=(row_bytes, 16), local=(local, 16),
            chunk_bytes=(chunk_bytes, 16), row_step=(row_step, 16), chunk_step=(chunk_step, 16))
    return _words(OP_MVIN, irq, (int(to_acc) << 9) | (int(accumulate) << 12),
                  w1=rows | (row_bytes << 16), w2=local | (chunk_bytes << 16),
                  w3=row_step | (chunk_step << 16), w4=addr, w5=stride)


def mvout_words(*, addr, stride, rows, elems, acc, acc_step=1, irq=False):
    """MVOUT: accumulator rows ``acc + r*acc_step`` (``elems`` lanes) -> memory rows at
    ``addr + r*stride``, int32 or int8 as set by CONFIG."""
    _fields(rows=(rows, 16), elems=(elems, 16), acc=(acc, 16), acc_step=(acc_step, 16))
    return _words(OP_MVOUT, irq, w1=rows | (elems << 16), w2=acc | (acc_step << 16), w4=addr,
                  w5=stride)


def preload_words(*, b_addr, k_valid, n_valid, irq=False):
    """PRELOAD (WS): weight tile from scratchpad rows ``b_addr ..``; a no-op in OS."""
    _fields(b_addr=(b_addr, 16), k_valid=(k_valid, 8), n_valid=(n_valid, 8))
    return _words(OP_PRELOAD, irq, w1=(k_valid << 16) | (n_valid << 24), w2=b_addr)


def compute_words(*, a_addr, b_addr, acc, rows, k_valid, n_valid, a_stride=0, accumulate=False,
                  irq=False):
    """COMPUTE in the CONFIG dataflow (semantics in hdl/npu/core.py)."""
    _fields(a_addr=(a_addr, 16), b_addr=(b_addr, 16), acc=(acc, 16), a_stride=(a_stride, 16),
            rows=(rows, 13), k_valid=(k_valid, 8), n_valid=(n_valid, 8))
    return _words(OP_COMPUTE, irq, int(accumulate) << 9,
                  w1=rows | (k_valid << 16) | (n_valid << 24), w2=a_addr | (b_addr << 16),
                  w3=acc | (a_stride << 16))


class NPUDriver:
    """Drives the NPU's registers from a cocotb test.

    ``dut`` is the ``npu_top`` handle; the AXI4-Lite port is ``s_axil__*``.
    """

    def __init__(self, dut, clk, rst, prefix="s_axil"):
        self.dut = dut
        self.clk = clk
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, prefix, bus_separator="__"), clk, rst)

    async def read(self, name):
        return await self.axil.read_dword(REGS[name])

    async def write(self, name, value):
        await self.axil.write_dword(REGS[name], value & 0xFFFFFFFF)

    async def info(self):
        """Identity and configuration read back from the hardware."""
        ident = await self.read("ID")
        if ident != NPU_ID:
            raise RuntimeError(f"NPU ID register reads {ident:#x}, expected {NPU_ID:#x}")
        arr = await self.read("CFG_ARRAY")
        sp = await self.read("CFG_SP")
        acc = await self.read("CFG_ACC")
        axi = await self.read("CFG_AXI")
        widths = await self.read("CFG_WIDTHS")
        df = {1: "ws", 2: "os", 3: "both"}[(arr >> 16) & 3]
        return {"version": await self.read("VERSION"), "rows": arr & 0xFF,
                "cols": (arr >> 8) & 0xFF, "dataflow": df, "sp_rows": sp & 0xFFFFFF,
                "sp_banks": sp >> 24, "acc_rows": acc & 0xFFFFFF, "acc_banks": acc >> 24,
                "axi_data_width": axi & 0xFFFF, "max_reads_in_flight": (axi >> 16) & 0xFF,
                "cmd_queue_depth": await self.read("CFG_QUEUE"),
                "input_bits": widths & 0xFF, "acc_bits": (widths >> 8) & 0xFF,
                "axi_addr_width": (widths >> 16) & 0xFF, "axi_id_width": widths >> 24}

    async def push(self, words, timeout_cycles=2_000_000):
        """Queue one command (waits while the queue is full, at most ``timeout_cycles``)."""
        waited = 0
        while await self.read("QUEUE_FREE") == 0:
            await ClockCycles(self.clk, 16)
            waited += 16
            if waited > timeout_cycles:
                raise TimeoutError(f"command queue still full after {waited} cycles: "
                                   f"{await self.status()}, DONE_COUNT "
                                   f"{await self.read('DONE_COUNT')}")
        for i, w in enumerate(words):
            if w or i == 0:
                await self.axil.write_dword(REGS["CMD0"] + 4 * i, w & 0xFFFFFFFF)
            else:
                await self.axil.write_dword(REGS["CMD0"] + 4 * i, 0)
        await self.write("CMD_PUSH", 1)

    async def gemm(self, **kw):
        await self.push(gemm_words(**kw))

    async def clear_counters(self):
        await self.write("PERF_CTRL", 1)

    async def enable_irq(self, on=True):
        await self.write("IRQ_ENABLE", int(on))

    async def wait_irq(self, timeout_cycles=50_000_000, poll=64):
        """Wait for ``irq``, then acknowledge it. Returns the cycles waited (to ``poll``)."""
        waited = 0
        while not int(self.dut.irq.value):
            await ClockCycles(self.clk, poll)
            waited += poll
            if waited > timeout_cycles:
                raise TimeoutError(f"no interrupt after {waited} cycles")
        await self.write("IRQ_STATUS", 1)
        return waited

    async def wait_done(self, count, timeout_cycles=50_000_000, poll=256):
        waited = 0
        while await self.read("DONE_COUNT") < count:
            await ClockCycles(self.clk, poll)
            waited += poll
            if waited > timeout_cycles:
                raise TimeoutError(f"DONE_COUNT below {count} after {waited} cycles")

    async def counters(self):
        r = self.read
        lo, hi = await r("PERF_MACS_LO"), await r("PERF_MACS_HI")
        return {"cycles": await r("PERF_CYCLES"), "compute_span": await r("PERF_COMPUTE_SPAN"),
                "compute_cycles": await r("PERF_COMPUTE_CYCLES"), "macs": lo | (hi << 32),
                "stall_dma_read": await r("PERF_STALL_DMA_RD"),
                "stall_dma_write": await r("PERF_STALL_DMA_WR"),
                "stall_queue_empty": await r("PERF_STALL_QUEUE"),
                "commands": await r("PERF_COMMANDS")}

    async def status(self):
        s = await self.read("STATUS")
        return {"busy": s & 1, "queue_full": (s >> 1) & 1, "queue_empty": (s >> 2) & 1,
                "error": (s >> 3) & 1, "level": (s >> 8) & 0x1FFFF,
                "error_bits": await self.read("ERROR")}


#: npu_top outputs that a 4-state simulator must never show as X/Z after reset.
CONTROL_OUTPUTS = ("m_axi__arvalid", "m_axi__awvalid", "m_axi__wvalid", "m_axi__wlast",
                   "m_axi__bready", "m_axi__rready", "s_axil__awready", "s_axil__wready",
                   "s_axil__bvalid", "s_axil__arready", "s_axil__rvalid", "irq")


async def x_watchdog(dut, clk, names=CONTROL_OUTPUTS, after=8):
    """Fail the test at the first cycle (``after`` cycles past the start) in which one of the
    ``names`` outputs is not 0/1, naming it. Only useful on 4-state simulators (Icarus):
    Verilator is 2-state and never shows X."""
    from cocotb.triggers import FallingEdge
    sigs = [(n, getattr(dut, n)) for n in names]
    cycle = 0
    while True:
        await FallingEdge(clk)
        cycle += 1
        if cycle <= after:
            continue
        for n, s in sigs:
            if not s.value.is_resolvable:
                raise AssertionError(f"npu_top output {n} is {s.value} at cycle {cycle}")


def _pauser(rng, p):
    while True:
        yield rng.random() < p


def axi_ram(dut, prefix, size, backpressure, rng):
    """cocotbext-axi's AxiRam of ``size`` bytes on the AXI4 manager port ``prefix`` of ``dut``,
    its log quiet, every channel paused with probability ``backpressure`` (each channel's
    pauses drawn from its own generator, seeded from ``rng``)."""
    ram = AxiRam(AxiBus.from_prefix(dut, prefix, bus_separator="__"), dut.clk, dut.rst,
                 size=size)
    logging.getLogger(f"cocotb.{dut._name}.{prefix}").setLevel(logging.WARNING)
    if backpressure > 0:
        for ch in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                   ram.read_if.ar_channel, ram.read_if.r_channel):
            ch.set_pause_generator(_pauser(random.Random(rng.random()), backpressure))
    return ram


async def start_npu(dut, ram_size, backpressure, rng):
    """Bring up ``npu_top`` in cocotb: AXI-Lite inputs idle from time 0 (Icarus is 4-state),
    a 100 MHz clock, the X watchdog under Icarus, cocotbext-axi's AxiRam of ``ram_size`` bytes
    on ``m_axi`` (every channel paused with probability ``backpressure``, drawn from ``rng``),
    reset released after 4 cycles. Returns ``(ram, driver)``."""
    for name in ("s_axil__awvalid", "s_axil__wvalid", "s_axil__bready", "s_axil__arvalid",
                 "s_axil__rready", "s_axil__awaddr", "s_axil__wdata", "s_axil__wstrb",
                 "s_axil__araddr"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    if "icarus" in cocotb.SIM_NAME.lower():     # 4-state: name the first X on a control output
        cocotb.start_soon(x_watchdog(dut, dut.clk))
    ram = axi_ram(dut, "m_axi", ram_size, backpressure, rng)
    logging.getLogger("cocotb.npu_top.s_axil").setLevel(logging.WARNING)
    drv = NPUDriver(dut, dut.clk, dut.rst)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return ram, drv
