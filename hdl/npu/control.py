"""NPU control: AXI4-Lite register file, command queue, command dispatcher, performance counters.

Register map (32-bit registers, byte addresses on ``s_axil``; ro = read only, rw, wo = write
only, w1c = write 1 to clear). The same table is in :mod:`diestack.sim.npu.driver`.

======  =====================  ====  =========================================================
offset  name                   acc   contents
======  =====================  ====  =========================================================
0x000   ID                     ro    0x4E505531 ("NPU1")
0x004   VERSION                ro    0x00010000 (1.0)
0x008   CFG_ARRAY              ro    [7:0] R, [15:8] C, [17:16] dataflows (1 ws, 2 os, 3 both)
0x00C   CFG_SP                 ro    [23:0] scratchpad rows, [31:24] scratchpad banks
0x010   CFG_ACC                ro    [23:0] accumulator rows, [31:24] accumulator banks
0x014   CFG_AXI                ro    [15:0] AXI data width (bits), [23:16] max reads in flight
0x018   CFG_QUEUE              ro    command queue depth
0x01C   CFG_WIDTHS             ro    [7:0] input bits (8), [15:8] accumulator bits (32),
                                     [23:16] AXI address width, [31:24] AXI ID width
0x020   STATUS                 ro    [0] busy (executing or queued), [1] queue full,
                                     [2] queue empty, [3] error (see ERROR), [24:8] queue level
0x024   DONE_COUNT             ro    commands completed since reset
0x028   IRQ_ENABLE             rw    [0] raise ``irq`` when a command with the IRQ flag is done
0x02C   IRQ_STATUS             w1c   [0] pending (``irq`` = pending & enable)
0x030   ERROR                  w1c   [0] push into a full queue (command dropped), [1] GEMM
                                     rejected (K too large for the scratchpad, or a dataflow
                                     not built), [2] AXI error response, [3] unknown opcode
0x034   QUEUE_FREE             ro    free command queue entries
0x040+4i CMD[i], i = 0..15     rw    command words being assembled
0x080   CMD_PUSH               wo    any write pushes CMD[0..15] into the queue
0x0C0   PERF_CTRL              wo    [0] clear all counters
0x0C4   PERF_CYCLES            ro    cycles from the first command issued after a clear to the
                                     most recent command done (issue = taken from the queue)
0x0C8   PERF_COMPUTE_SPAN      ro    cycles from the first to the last cycle with ``mac_active``
0x0CC   PERF_COMPUTE_CYCLES    ro    cycles with ``mac_active``
0x0D0   PERF_MACS_LO / _HI     ro    useful MACs (64 bits; _HI at 0x0D4)
0x0D8   PERF_STALL_DMA_RD      ro    cycles the GEMM compute engine waited for a DMA read
0x0DC   PERF_STALL_DMA_WR      ro    cycles it waited for a DMA write (accumulator half busy,
                                     or only the final mvouts running)
0x0E0   PERF_STALL_QUEUE       ro    cycles nothing ran because the queue was empty (between
                                     the first issue and the last done)
0x0E4   PERF_COMMANDS          ro    commands completed since the clear
======  =====================  ====  =========================================================

Commands: 16 words; ``CMD0[7:0]`` is the opcode, ``CMD0[8]`` asks for an interrupt when the
command is done. Commands run one after another, in queue order (a GEMM internally overlaps its
DMA and compute).

- ``CONFIG`` (0): ``CMD0[10]`` dataflow for PRELOAD/COMPUTE (0 WS, 1 OS), ``[11]`` MVOUT int8
  (requantized), ``[12]`` ReLU, ``[21:16]`` shift; ``CMD3`` scale (signed).
- ``FENCE`` (1): waits until the core is idle.
- ``MVIN`` (2): ``CMD0[9]`` to accumulator, ``[12]`` accumulate; ``CMD1`` rows[15:0],
  row bytes[31:16]; ``CMD2`` local row[15:0], chunk bytes[31:16] (0 = a full local row);
  ``CMD3`` row step[15:0], chunk step[31:16]; ``CMD4`` address; ``CMD5`` stride (bytes).
  (Transfer rules in :mod:`.dma`.)
- ``MVOUT`` (3): ``CMD1`` rows[15:0], elements[31:16]; ``CMD2`` accumulator row[15:0],
  row step[31:16]; ``CMD4`` address; ``CMD5`` stride; format from CONFIG.
- ``COMPUTE`` (4): ``CMD0[9]`` accumulate; ``CMD1`` rows[12:0], k_valid[23:16],
  n_valid[31:24]; ``CMD2`` a_addr[15:0], b_addr[31:16]; ``CMD3`` acc_addr[15:0],
  a_stride[31:16]; dataflow from CONFIG (semantics in :mod:`.core`).
- ``PRELOAD`` (6): ``CMD1`` k_valid[23:16], n_valid[31:24]; ``CMD2`` b_addr[15:0].
- ``GEMM`` (8): ``CMD0[9]`` +D, ``[10]`` OS (else WS), ``[11]`` int8 output (requantized),
  ``[12]`` ReLU, ``[21:16]`` shift; ``CMD1`` M[15:0], N[31:16]; ``CMD2`` K[15:0];
  ``CMD3`` scale; ``CMD4/5`` A address/stride, ``CMD6/7`` B, ``CMD8/9`` C, ``CMD10/11`` D
  (strides in bytes). Tiling in :mod:`.loop`.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..common.axi import AXI4LiteSignature
from .config import NPUConfig
from .core import exec_cmd_layout, ExecOp, TAG_BITS
from .dma import rd_cmd_layout, wr_cmd_layout
from .loop import GemmTiler

__all__ = ["Control", "REGS", "OP_CONFIG", "OP_FENCE", "OP_MVIN", "OP_MVOUT", "OP_COMPUTE",
           "OP_PRELOAD", "OP_GEMM", "NPU_ID", "NPU_VERSION", "CMD_WORDS"]

NPU_ID = 0x4E505531
NPU_VERSION = 0x00010000
CMD_WORDS = 16
OP_CONFIG, OP_FENCE, OP_MVIN, OP_MVOUT, OP_COMPUTE, OP_PRELOAD, OP_GEMM = 0, 1, 2, 3, 4, 6, 8

REGS = {
    "ID": 0x000, "VERSION": 0x004, "CFG_ARRAY": 0x008, "CFG_SP": 0x00C, "CFG_ACC": 0x010,
    "CFG_AXI": 0x014, "CFG_QUEUE": 0x018, "CFG_WIDTHS": 0x01C,
    "STATUS": 0x020, "DONE_COUNT": 0x024, "IRQ_ENABLE": 0x028, "IRQ_STATUS": 0x02C,
    "ERROR": 0x030, "QUEUE_FREE": 0x034, "CMD0": 0x040, "CMD_PUSH": 0x080,
    "PERF_CTRL": 0x0C0, "PERF_CYCLES": 0x0C4, "PERF_COMPUTE_SPAN": 0x0C8,
    "PERF_COMPUTE_CYCLES": 0x0CC, "PERF_MACS_LO": 0x0D0, "PERF_MACS_HI": 0x0D4,
    "PERF_STALL_DMA_RD": 0x0D8, "PERF_STALL_DMA_WR": 0x0DC, "PERF_STALL_QUEUE": 0x0E0,
    "PERF_COMMANDS": 0x0E4,
}


class Control(wiring.Component):
    """AXI4-Lite control of the NPU (module docstring: register map and commands).

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=12, data_width=32))
        Register access; one read and one write at a time, one cycle of latency each.
    irq : Out(1)
        Level interrupt: IRQ_STATUS[0] & IRQ_ENABLE[0].
    rd_cmd, wr_cmd : Out(stream)
        DMA commands (:mod:`.dma`), with ``rd_done``/``rd_done_tag``/``wr_done``/``dma_error``.
    exe : Out(stream)
        Core tile commands (:mod:`.core`), with ``core_idle``, the core's ``started`` /
        ``landed`` pulses and their tags (for the tiler), ``mac_active``, ``useful_macs_inc``
        for the counters.
    """

    def __init__(self, cfg, *, serialize=False):
        if not isinstance(cfg, NPUConfig):
            raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
        self._cfg = cfg
        self._serialize = bool(serialize)   # debug: the tiler waits for the core after each COMPUTE
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "irq": Out(1),
            "rd_cmd": Out(stream.Signature(rd_cmd_layout(cfg))),
            "rd_done": In(1),
            "rd_done_tag": In(2),
            "wr_cmd": Out(stream.Signature(wr_cmd_layout(cfg))),
            "wr_done": In(1),
            "dma_error": In(1),
            "exe": Out(stream.Signature(exec_cmd_layout(cfg))),
            "core_idle": In(1),
            "core_started": In(1),
            "core_started_tag": In(TAG_BITS),
            "core_landed": In(1),
            "core_landed_tag": In(TAG_BITS),
            "mac_active": In(1),
            "useful_macs_inc": In(range(cfg.rows * cfg.cols + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        bus = self.s_axil
        m.submodules.tiler = tiler = GemmTiler(cfg, serialize=self._serialize)
        m.submodules.queue = queue = SyncFIFOBuffered(width=32 * CMD_WORDS,
                                                      depth=cfg.cmd_queue_depth)

        cmd_regs = [Signal(32, name=f"cmd{i}") for i in range(CMD_WORDS)]
        irq_enable = Signal()
        irq_pending = Signal()
        error = Signal(4)
        done_count = Signal(32)
        busy = Signal()           # dispatcher executing a command
        perf_clear = Signal()     # registered: the clear acts the cycle after the write
        perf_clear_w = Signal()
        m.d.sync += perf_clear.eq(perf_clear_w)
        cmd_done = Signal()       # a command finished this cycle
        cmd_irq = Signal()

        # ---------------- performance counters -------------------------------------------------
        active = Signal()
        cyc = Signal(32)
        perf = {k: Signal(32, name=k.lower()) for k in
                ("cycles", "compute", "stall_rd", "stall_wr", "stall_q", "commands")}
        perf["span"] = Signal(32, name="span")
        macs = Signal(64)
        first_mac = Signal(32)
        last_mac = Signal(32)
        seen_mac = Signal()
        stall_q_run = Signal(32)
        issue = Signal()
        with m.If(perf_clear):
            m.d.sync += [active.eq(0), cyc.eq(0), macs.eq(0), seen_mac.eq(0), stall_q_run.eq(0)]
            m.d.sync += [s.eq(0) for k, s in perf.items() if k != "span"]
        with m.Else():
            now = Signal(32)
            m.d.comb += now.eq(cyc)
            with m.If(issue & ~active):
                m.d.sync += [active.eq(1), cyc.eq(1)]
                m.d.comb += now.eq(0)
            with m.Elif(active):
                m.d.sync += cyc.eq(cyc + 1)
            with m.If(active | issue):
                with m.If(self.mac_active):
                    m.d.sync += [perf["compute"].eq(perf["compute"] + 1),
                                 macs.eq(macs + self.useful_macs_inc), last_mac.eq(now)]
                    with m.If(~seen_mac):
                        m.d.sync += [first_mac.eq(now), seen_mac.eq(1)]
                with m.If(tiler.stall_rd):
                    m.d.sync += perf["stall_rd"].eq(perf["stall_rd"] + 1)
                with m.If(tiler.stall_wr):
                    m.d.sync += perf["stall_wr"].eq(perf["stall_wr"] + 1)
                with m.If(active & ~busy & ~queue.r_rdy & ~issue):
                    m.d.sync += stall_q_run.eq(stall_q_run + 1)
            with m.If(cmd_done):
                m.d.sync += [perf["cycles"].eq(now + 1), perf["stall_q"].eq(stall_q_run),
                             perf["commands"].eq(perf["commands"] + 1)]
        m.d.comb += perf["span"].eq(Mux(seen_mac, last_mac - first_mac + 1, 0))

        # ---------------- AXI4-Lite slave ------------------------------------------------------
        push = Signal()
        wfire = Signal()
        # AW and W are captured independently (no ready depends on the other channel's valid);
        # the write happens once both are held and the previous B response has been taken.
        aw_full = Signal()
        w_full = Signal()
        aw_q = Signal(12)
        w_q = Signal(32)
        m.d.comb += [bus.awready.eq(~aw_full), bus.wready.eq(~w_full), bus.bresp.eq(0),
                     wfire.eq(aw_full & w_full & ~bus.bvalid)]
        with m.If(bus.awvalid & ~aw_full):
            m.d.sync += [aw_q.eq(bus.awaddr), aw_full.eq(1)]
        with m.If(bus.wvalid & ~w_full):
            m.d.sync += [w_q.eq(bus.wdata), w_full.eq(1)]
        with m.If(wfire):
            m.d.sync += [aw_full.eq(0), w_full.eq(0)]
        with m.If(bus.bvalid & bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        waddr = aw_q[2:12]
        wdata = w_q
        with m.If(wfire):
            m.d.sync += bus.bvalid.eq(1)
            with m.Switch(waddr):
                for i in range(CMD_WORDS):
                    with m.Case((REGS["CMD0"] >> 2) + i):
                        m.d.sync += cmd_regs[i].eq(wdata)
                with m.Case(REGS["CMD_PUSH"] >> 2):
                    m.d.comb += push.eq(1)
                with m.Case(REGS["IRQ_ENABLE"] >> 2):
                    m.d.sync += irq_enable.eq(wdata[0])
                with m.Case(REGS["IRQ_STATUS"] >> 2):
                    with m.If(wdata[0]):
                        m.d.sync += irq_pending.eq(0)
                with m.Case(REGS["ERROR"] >> 2):
                    m.d.sync += error.eq(error & ~wdata[:4])
                with m.Case(REGS["PERF_CTRL"] >> 2):
                    m.d.comb += perf_clear_w.eq(wdata[0])
        m.d.comb += [queue.w_data.eq(Cat(*cmd_regs)), queue.w_en.eq(push & queue.w_rdy)]

        level = Signal(range(cfg.cmd_queue_depth + 1))
        m.d.comb += level.eq(queue.level)
        df = (1 if cfg.has_ws else 0) | (2 if cfg.has_os else 0)
        ro = {
            "ID": Const(NPU_ID, 32), "VERSION": Const(NPU_VERSION, 32),
            "CFG_ARRAY": Const(cfg.rows | (cfg.cols << 8) | (df << 16), 32),
            "CFG_SP": Const(cfg.sp_rows | (cfg.sp_banks << 24), 32),
            "CFG_ACC": Const(cfg.acc_rows | (cfg.acc_banks << 24), 32),
            "CFG_AXI": Const(cfg.axi_data_width | (cfg.max_reads_in_flight << 16), 32),
            "CFG_QUEUE": Const(cfg.cmd_queue_depth, 32),
            "CFG_WIDTHS": Const(8 | (32 << 8) | (cfg.axi_addr_width << 16)
                                | (cfg.axi_id_width << 24), 32),
            "STATUS": Cat(busy | queue.r_rdy, ~queue.w_rdy, ~queue.r_rdy, error != 0,
                          Const(0, 4), level),
            "DONE_COUNT": done_count, "IRQ_ENABLE": irq_enable, "IRQ_STATUS": irq_pending,
            "ERROR": error, "QUEUE_FREE": cfg.cmd_queue_depth - level,
            "PERF_CYCLES": perf["cycles"], "PERF_COMPUTE_SPAN": perf["span"],
            "PERF_COMPUTE_CYCLES": perf["compute"], "PERF_MACS_LO": macs[:32],
            "PERF_MACS_HI": macs[32:], "PERF_STALL_DMA_RD": perf["stall_rd"],
            "PERF_STALL_DMA_WR": perf["stall_wr"], "PERF_STALL_QUEUE": perf["stall_q"],
            "PERF_COMMANDS": perf["commands"],
        }
        m.d.comb += bus.arready.eq(~bus.rvalid)
        m.d.comb += bus.rresp.eq(0)
        with m.If(bus.rvalid & bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        with m.If(bus.arvalid & ~bus.rvalid):
            m.d.sync += [bus.rvalid.eq(1), bus.rdata.eq(0)]
            with m.Switch(bus.araddr[2:12]):
                for name, val in ro.items():
                    with m.Case(REGS[name] >> 2):
                        m.d.sync += bus.rdata.eq(val)
                for i in range(CMD_WORDS):
                    with m.Case((REGS["CMD0"] >> 2) + i):
                        m.d.sync += bus.rdata.eq(cmd_regs[i])

        # ---------------- errors and interrupt -------------------------------------------------
        with m.If(push & ~queue.w_rdy):
            m.d.sync += error[0].eq(1)
        with m.If(self.dma_error):
            m.d.sync += error[2].eq(1)
        with m.If(cmd_done):
            m.d.sync += done_count.eq(done_count + 1)
            with m.If(cmd_irq):
                m.d.sync += irq_pending.eq(1)
        m.d.comb += self.irq.eq(irq_pending & irq_enable)

        # ---------------- dispatcher -----------------------------------------------------------
        cur = Signal(32 * CMD_WORDS)
        w = [cur[32 * i:32 * i + 32] for i in range(CMD_WORDS)]
        op = w[0][:8]
        raw_df = Signal()
        raw_int8 = Signal()
        raw_relu = Signal()
        raw_shift = Signal(6)
        raw_scale = Signal(32)
        guard = Signal(2)
        m.d.comb += cmd_irq.eq(w[0][8])

        tp = tiler.params
        m.d.comb += [
            tp.has_d.eq(w[0][9]), tp.os.eq(w[0][10]), tp.out_int8.eq(w[0][11]),
            tp.relu.eq(w[0][12]), tp.shift.eq(w[0][16:22]), tp.m.eq(w[1][:16]),
            tp.n.eq(w[1][16:]), tp.k.eq(w[2][:16]), tp.scale.eq(w[3]),
            tp.a.eq(w[4]), tp.lda.eq(w[5]), tp.b.eq(w[6]), tp.ldb.eq(w[7]),
            tp.c.eq(w[8]), tp.ldc.eq(w[9]), tp.d.eq(w[10]), tp.ldd.eq(w[11]),
            tiler.rd_done.eq(self.rd_done), tiler.rd_done_tag.eq(self.rd_done_tag),
            tiler.wr_done.eq(self.wr_done), tiler.core_idle.eq(self.core_idle),
            tiler.started.eq(self.core_started), tiler.started_tag.eq(self.core_started_tag),
            tiler.landed.eq(self.core_landed), tiler.landed_tag.eq(self.core_landed_tag),
        ]

        # raw command streams (used when the tiler is not running)
        raw_rd = Signal.like(self.rd_cmd.payload)
        raw_wr = Signal.like(self.wr_cmd.payload)
        raw_ex = Signal.like(self.exe.payload)
        raw_rd_v = Signal()
        raw_wr_v = Signal()
        raw_ex_v = Signal()
        to_acc = w[0][9]
        chunk = w[2][16:]
        m.d.comb += [
            raw_rd.mem_addr.eq(w[4]), raw_rd.mem_stride.eq(w[5]), raw_rd.rows.eq(w[1][:16]),
            raw_rd.row_bytes.eq(w[1][16:]),
            raw_rd.chunk_bytes.eq(Mux(chunk != 0, chunk,
                                      Mux(to_acc, cfg.acc_row_bytes, cfg.sp_row_bytes))),
            raw_rd.to_acc.eq(to_acc), raw_rd.accumulate.eq(w[0][12]),
            raw_rd.local_addr.eq(w[2][:16]), raw_rd.row_step.eq(w[3][:16]),
            raw_rd.chunk_step.eq(w[3][16:]), raw_rd.tag.eq(0),
            raw_wr.mem_addr.eq(w[4]), raw_wr.mem_stride.eq(w[5]), raw_wr.rows.eq(w[1][:16]),
            raw_wr.elems.eq(w[1][16:]), raw_wr.acc_addr.eq(w[2][:16]),
            raw_wr.acc_step.eq(w[2][16:]), raw_wr.mode.eq(raw_int8), raw_wr.scale.eq(raw_scale),
            raw_wr.shift.eq(raw_shift), raw_wr.relu.eq(raw_relu),
            raw_ex.op.eq(Mux(op == OP_PRELOAD, ExecOp.PRELOAD, ExecOp.COMPUTE)),
            raw_ex.dataflow.eq(raw_df), raw_ex.a_addr.eq(w[2][:16]),
            raw_ex.b_addr.eq(Mux(op == OP_PRELOAD, w[2][:16], w[2][16:])),
            raw_ex.acc_addr.eq(w[3][:16]),
            raw_ex.a_stride.eq(w[3][16:]), raw_ex.rows.eq(w[1][:13]),
            raw_ex.k_valid.eq(w[1][16:24]), raw_ex.n_valid.eq(w[1][24:32]),
            raw_ex.accumulate.eq(w[0][9]),
        ]
        with m.If(tiler.busy):
            m.d.comb += [self.rd_cmd.valid.eq(tiler.rd_cmd.valid),
                         self.rd_cmd.payload.eq(tiler.rd_cmd.payload),
                         tiler.rd_cmd.ready.eq(self.rd_cmd.ready),
                         self.wr_cmd.valid.eq(tiler.wr_cmd.valid),
                         self.wr_cmd.payload.eq(tiler.wr_cmd.payload),
                         tiler.wr_cmd.ready.eq(self.wr_cmd.ready),
                         self.exe.valid.eq(tiler.exe.valid),
                         self.exe.payload.eq(tiler.exe.payload),
                         tiler.exe.ready.eq(self.exe.ready)]
        with m.Else():
            m.d.comb += [self.rd_cmd.valid.eq(raw_rd_v), self.rd_cmd.payload.eq(raw_rd),
                         self.wr_cmd.valid.eq(raw_wr_v), self.wr_cmd.payload.eq(raw_wr),
                         self.exe.valid.eq(raw_ex_v), self.exe.payload.eq(raw_ex)]

        with m.If(self.exe.valid & self.exe.ready):
            m.d.sync += guard.eq(3)
        with m.Elif(guard != 0):
            m.d.sync += guard.eq(guard - 1)

        # The queue's read strobe comes from a register, not from FSM decoding, so that it is
        # never undefined in 4-state simulators before the first state change.
        m.d.comb += [queue.r_en.eq(~busy), issue.eq(~busy & queue.r_rdy)]
        with m.FSM(name="dispatch"):
            with m.State("IDLE"):
                with m.If(issue):
                    m.d.sync += [cur.eq(queue.r_data), busy.eq(1)]
                    m.next = "DECODE"
            with m.State("DECODE"):
                with m.Switch(op):
                    with m.Case(OP_GEMM):
                        m.d.comb += tiler.start.eq(1)
                        m.next = "GEMM"
                    with m.Case(OP_CONFIG):
                        m.d.sync += [raw_df.eq(w[0][10]), raw_int8.eq(w[0][11]),
                                     raw_relu.eq(w[0][12]), raw_shift.eq(w[0][16:22]),
                                     raw_scale.eq(w[3])]
                        m.next = "DONE"
                    with m.Case(OP_FENCE):
                        m.next = "WAIT_IDLE"
                    with m.Case(OP_MVIN):
                        m.next = "MVIN"
                    with m.Case(OP_MVOUT):
                        m.next = "MVOUT"
                    with m.Case(OP_COMPUTE, OP_PRELOAD):
                        m.next = "EXEC"
                    with m.Default():
                        m.d.sync += error[3].eq(1)
                        m.next = "DONE"
            with m.State("GEMM"):
                with m.If(tiler.done):
                    with m.If(tiler.error):
                        m.d.sync += error[1].eq(1)
                    m.next = "DONE"
            with m.State("MVIN"):
                m.d.comb += raw_rd_v.eq(1)
                with m.If(self.rd_cmd.ready):
                    m.next = "MVIN_W"
            with m.State("MVIN_W"):
                with m.If(self.rd_done):
                    m.next = "DONE"
            with m.State("MVOUT"):
                m.d.comb += raw_wr_v.eq(1)
                with m.If(self.wr_cmd.ready):
                    m.next = "MVOUT_W"
            with m.State("MVOUT_W"):
                with m.If(self.wr_done):
                    m.next = "DONE"
            with m.State("EXEC"):
                m.d.comb += raw_ex_v.eq(1)
                with m.If(self.exe.ready):
                    m.next = "WAIT_IDLE"
            with m.State("WAIT_IDLE"):
                with m.If((guard == 0) & self.core_idle & ~(self.exe.valid & self.exe.ready)):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += cmd_done.eq(1)
                m.d.sync += busy.eq(0)
                m.next = "IDLE"
        return m
