"""NPU core: scratchpad + systolic array (WS/OS) + accumulator + requant, driven by tile commands.

Stream payload layouts (the interface between the core and the DMA/control/tiler around it)
are built from an :class:`~diestack.hdl.npu.config.NPUConfig` by the ``*_layout(cfg)`` functions
below. All streams are :mod:`amaranth.lib.stream` interfaces (valid/ready/payload); a transfer
happens in a cycle where both ``valid`` and ``ready`` are high.

Command semantics (``exe`` stream, one :func:`exec_cmd_layout` payload per tile op)
-------------------------------------------------------------------------------------
Let R = ``cfg.rows``, C = ``cfg.cols``. Scratchpad row *r*, byte *e* holds an int8 value;
accumulator row *r*, lane *j* (bits ``[32j, 32j+32)``) holds an int32.

Command buffer and timing reference
-----------------------------------
``exe`` feeds a 2-entry command buffer whose ``ready`` is a register (no combinational path
from the core's engines back to the command source). A command *starts* when it leaves the
buffer head, at the earliest :data:`EXE_BUFFER_LATENCY` cycle after it was accepted (later
while the command ahead of it runs); all timing below counts from the start. ``started``
pulses in that cycle with the command's ``tag``; ``landed`` pulses with the ``tag`` of a
COMPUTE (``rows`` >= 1) once its last accumulator write is visible to reads. A command source
that needs to know when a tile has started or finished counts these pulses (acceptance is not
start).

``op = PRELOAD (0)``, ``dataflow = WS (0)``
    Load the B tile into the shadow weight buffer: PE[i][j] gets scratchpad row ``b_addr + i``,
    byte *j*, i.e. row ``b_addr + i`` holds ``B[k0+i][n0 : n0+C]``. Rows ``i >= k_valid`` and
    bytes ``j >= n_valid`` are taken as zero. Takes R cycles of the B read port; it overlaps a
    running COMPUTE (it waits only until the previous preload has been made active in every PE).
    The preloaded weights become active with the next WS COMPUTE (a second PRELOAD before that
    COMPUTE replaces them). ``a_addr``, ``acc_addr``,
    ``rows``, ``accumulate`` are ignored.
``op = COMPUTE (1)``, ``dataflow = WS (0)``
    For m in 0..rows-1: read A row ``a_addr + m`` (bytes i < k_valid: ``A[m0+m][k0+i]``, bytes
    ``i >= k_valid`` taken as zero), stream it through the array against the active weights and
    write ``sum_i A[m][k0+i] * B[k0+i][n0+j]`` into accumulator row ``acc_addr + m`` lane *j*
    for ``j < n_valid`` (lanes ``j >= n_valid`` are not written): added to the stored value when
    ``accumulate`` = 1, overwriting it when 0. If a PRELOAD was issued since the previous WS
    COMPUTE, its weights become active with this command's first row (a COMPUTE without a new
    PRELOAD reuses the active weights). One A row per cycle. Back-to-back COMPUTEs with the
    PRELOAD of the next tile in between run without bubbles when ``rows >= 2R + 4``: the preload of tile t+1 starts R + 2 cycles
    after COMPUTE t started (its weights are then active in every PE; the shadow chain is
    skewed by column like the A rows) and takes R cycles; shorter tiles leave
    ``2R + 4 - rows`` idle cycles (measured on 4x4).
``op = COMPUTE (1)``, ``dataflow = OS (1)``
    Output-stationary C tile: ``rows`` = K steps (1..4096). Step *k* uses
    ``A[m0+i][k] = `` byte ``k % R`` of scratchpad row ``a_addr + (k // R) * a_stride + i``
    (i = 0..R-1, i.e. the A block is stored as groups of R rows, each row holding R consecutive
    K values of one M row; consecutive groups are ``a_stride`` rows apart) and
    ``B[k][n0+j]`` = byte *j* of scratchpad row ``b_addr + k``. The result row *i* (for
    ``i < k_valid``, here the number of valid M rows) is written to accumulator row
    ``acc_addr + i``, lanes ``j < n_valid``, accumulate or overwrite as above. The A groups pass
    through a double-buffered R x R transposer (group g+1 fills while group g streams). A tile
    takes R + K cycles (the first group's fill is not overlapped with the previous tile); its
    results drain through the PEs' output registers while the next tile computes (tiles with
    K < R get stall cycles so that a drain never meets the next tile's results). PRELOAD with
    ``dataflow = OS`` is a no-op.

Changing ``dataflow`` between commands waits until the array is empty (a few tens of cycles).

Other streams: ``sp_w`` writes one masked scratchpad row per cycle (always ready: writes use a
separate memory port and never disturb reads; a read of a row written in the same cycle sees the
old value). ``acc_w`` writes one accumulator row (``accumulate`` = 1 adds, 0 overwrites); it is
not ready in cycles where the array writes the accumulator. ``acc_rd_req``/``acc_rd`` read one
row per cycle (in order, full throughput, a few cycles latency; back-pressure on ``acc_rd``
stops ``acc_rd_req`` once the output FIFO is full): mode 0 returns C int32; mode 1 returns C
requantized int8 in the low C bytes (rule in :mod:`.requant`), upper bits zero. Reads are
ordered after all accumulator writes accepted earlier: wait for ``idle`` before reading results
of a COMPUTE.
"""

import enum

from amaranth.hdl import unsigned, signed
from amaranth.lib import data

from .config import NPUConfig

__all__ = ["ExecOp", "Dataflow", "exec_cmd_layout", "sp_write_layout", "acc_write_layout",
           "acc_read_req_layout", "acc_read_resp_layout", "MAX_ROWS", "TAG_BITS",
           "EXE_BUFFER_LATENCY"]

#: Largest ``rows`` (M for WS COMPUTE, K for OS COMPUTE) of one command.
MAX_ROWS = 4096
#: Width of the opaque ``tag`` a command carries to ``started_tag`` / ``landed_tag``.
TAG_BITS = 3
#: Cycles from a command's acceptance on ``exe`` to its start, when the buffer is empty and
#: the engines are free (a command waits in the buffer longer while the one ahead runs).
EXE_BUFFER_LATENCY = 1


class ExecOp(enum.IntEnum):
    PRELOAD = 0
    COMPUTE = 1


class Dataflow(enum.IntEnum):
    WS = 0
    OS = 1


def _check_cfg(cfg):
    if not isinstance(cfg, NPUConfig):
        raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")


def exec_cmd_layout(cfg):
    """Payload of the ``exe`` stream (see the module docstring for the semantics).

    Fields: ``op`` (1 bit, :class:`ExecOp`), ``dataflow`` (1 bit, :class:`Dataflow`),
    ``a_addr``, ``b_addr``, ``a_stride`` (scratchpad rows, ``cfg.sp_addr_width`` bits; a_stride
    is used by OS only), ``acc_addr`` (``cfg.acc_addr_width`` bits), ``rows`` (13 bits, 1..4096),
    ``k_valid`` (1..R), ``n_valid`` (1..C), ``accumulate`` (1 bit), ``tag`` (:data:`TAG_BITS`
    bits, not interpreted by the core: echoed on ``started_tag`` and ``landed_tag``).
    """
    _check_cfg(cfg)
    return data.StructLayout({
        "op": unsigned(1),
        "dataflow": unsigned(1),
        "a_addr": unsigned(cfg.sp_addr_width),
        "b_addr": unsigned(cfg.sp_addr_width),
        "a_stride": unsigned(cfg.sp_addr_width),
        "acc_addr": unsigned(cfg.acc_addr_width),
        "rows": unsigned(13),
        "k_valid": unsigned(cfg.rows.bit_length()),
        "n_valid": unsigned(cfg.cols.bit_length()),
        "accumulate": unsigned(1),
        "tag": unsigned(TAG_BITS),
    })


def sp_write_layout(cfg):
    """Payload of ``sp_w``: ``addr`` (scratchpad row), ``data`` (sp_row_bytes int8, byte e in
    bits [8e, 8e+8)), ``mask`` (one write enable per byte)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.sp_addr_width),
        "data": unsigned(8 * cfg.sp_row_bytes),
        "mask": unsigned(cfg.sp_row_bytes),
    })


def acc_write_layout(cfg):
    """Payload of ``acc_w``: ``addr`` (accumulator row), ``data`` (C int32, lane j in bits
    [32j, 32j+32)), ``accumulate`` (1 = add to the stored row, 0 = overwrite)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.acc_addr_width),
        "data": unsigned(32 * cfg.cols),
        "accumulate": unsigned(1),
    })


def acc_read_req_layout(cfg):
    """Payload of ``acc_rd_req``: ``addr``, ``mode`` (0 = int32 row, 1 = requantized int8),
    ``scale`` (signed 32), ``shift`` (0..63), ``relu`` (1 bit)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.acc_addr_width),
        "mode": unsigned(1),
        "scale": signed(32),
        "shift": unsigned(6),
        "relu": unsigned(1),
    })


def acc_read_resp_layout(cfg):
    """Payload of ``acc_rd``: ``data`` (mode 0: C int32, lane j in bits [32j, 32j+32); mode 1:
    C int8 in bits [8j, 8j+8), the rest zero)."""
    _check_cfg(cfg)
    return data.StructLayout({"data": unsigned(32 * cfg.cols)})


# ------------------------------------------------------------------------------------------------
# The core
# ------------------------------------------------------------------------------------------------

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from .accumulator import Accumulator
from .array import COL_LAYOUT, LANE_LAYOUT, SystolicArray
from .pe import MUL_LATENCY
from .requant import Requant, LATENCY as REQUANT_LATENCY
from .scratchpad import Scratchpad
from .transposer import Transposer

__all__ += ["Core"]

#: Depth of the accumulator read-out FIFO (and the credit limit of ``acc_rd_req``).
ACC_READ_DEPTH = 12


class Core(wiring.Component):
    """The NPU datapath: scratchpad, PE array (WS/OS), skew/deskew, transposer, accumulator,
    requant, and the tile-command sequencer (semantics in the module docstring).

    Latency: a WS A row issued at cycle t (the cycle after its COMPUTE is accepted, then one row
    per cycle) reaches the accumulator write stage at ``t + R + C + 3 + MUL_LATENCY`` (R + C + 7
    with the 4-cycle PE multiplier, :data:`.pe.MUL_LATENCY`) and lands in the memory
    3 cycles later. OS results drain R cycles after a tile's last K step, same path.

    Members
    -------
    sp_w : In(stream.Signature(sp_write_layout(cfg)))
        Scratchpad row writes, always ready.
    acc_w : In(stream.Signature(acc_write_layout(cfg)))
        Accumulator row writes (mvin of D); not ready while the array writes the accumulator.
    acc_rd_req : In(stream.Signature(acc_read_req_layout(cfg)))
    acc_rd : Out(stream.Signature(acc_read_resp_layout(cfg)))
        Accumulator read-out, in order, one row per cycle.
    exe : In(stream.Signature(exec_cmd_layout(cfg)))
        Tile commands (PRELOAD / COMPUTE), executed in order through a 2-entry buffer
        (``ready`` is a register: high while the buffer has a free entry).
    started : Out(1), started_tag : Out(TAG_BITS)
        A command left the buffer and started executing this cycle, with its ``tag``.
    landed : Out(1), landed_tag : Out(TAG_BITS)
        The last accumulator write of a COMPUTE (``rows`` >= 1) is visible to reads from this
        cycle on (3 cycles after it entered the accumulator), with the command's ``tag``;
        pulses in command order.
    busy, idle : Out(1)
        ``idle``: every accepted command finished and its accumulator writes landed.
    mac_active : Out(1)
        A row (WS) or K step (OS) entered the array (R x C MAC slots scheduled): high 2
        cycles after the row's issue, for one cycle per row.
    useful_macs_inc : Out(range(R*C+1))
        Useful MACs of that row/step: ``k_valid * n_valid``.
    """

    def __init__(self, cfg):
        _check_cfg(cfg)
        self._cfg = cfg
        super().__init__({
            "sp_w": In(stream.Signature(sp_write_layout(cfg))),
            "acc_w": In(stream.Signature(acc_write_layout(cfg))),
            "acc_rd_req": In(stream.Signature(acc_read_req_layout(cfg))),
            "acc_rd": Out(stream.Signature(acc_read_resp_layout(cfg))),
            "exe": In(stream.Signature(exec_cmd_layout(cfg))),
            "started": Out(1),
            "started_tag": Out(TAG_BITS),
            "landed": Out(1),
            "landed_tag": Out(TAG_BITS),
            "busy": Out(1),
            "idle": Out(1),
            "mac_active": Out(1),
            "useful_macs_inc": Out(range(cfg.rows * cfg.cols + 1)),
        })

    @property
    def cfg(self):
        return self._cfg

    #: Cycles from a WS row issue to the accumulator write stage (R + C + 3 + MUL_LATENCY).
    @property
    def write_latency(self):
        return self._cfg.rows + self._cfg.cols + 3 + MUL_LATENCY

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        aw, accw = cfg.sp_addr_width, cfg.acc_addr_width
        has_ws, has_os = cfg.has_ws, cfg.has_os

        m.submodules.sp = sp = Scratchpad(cfg)
        m.submodules.acc = acc = Accumulator(cfg)
        m.submodules.array = arr = SystolicArray(R, C, cfg.dataflow, cfg.pe_multiplier)
        lane, col = LANE_LAYOUT, COL_LAYOUT
        m.submodules.requant = rq = Requant(C)
        if has_os:
            m.submodules.transposer = tr = Transposer(R)

        # ---- scratchpad writes (always ready, own port) ----
        m.d.comb += [
            self.sp_w.ready.eq(1),
            sp.w_en.eq(self.sp_w.valid), sp.w_addr.eq(self.sp_w.payload.addr),
            sp.w_data.eq(self.sp_w.payload.data), sp.w_mask.eq(self.sp_w.payload.mask),
        ]

        # ---- mode ----
        cur_os = Signal(init=0 if has_ws else 1)
        m.d.comb += arr.os.eq(cur_os)
        flush_len = R + C + 13 + MUL_LATENCY       # > the write-control delay line (L below)
        flush = Signal(range(flush_len + 1))       # cycles until the array/pipeline is empty
        with m.If(flush != 0):
            m.d.sync += flush.eq(flush - 1)
        issued = Signal()                         # something entered the pipeline this cycle
        with m.If(issued):
            m.d.sync += flush.eq(flush_len)

        # ---- front pipeline words ----
        front = data.StructLayout({
            "a_valid": 1, "a_flag": 1, "kmask": R,
            "b_valid": 1, "b_rowok": 1, "nmask": C,
            "fill_en": 1, "fill_row": range(R), "fill_buf": 1, "tr_shift": 1, "tr_buf": 1,
        })
        f0 = Signal(front)
        f1 = Signal(front)
        f2 = Signal(front)         # aligned with the scratchpad read data (latency 2)
        m.d.sync += [f1.eq(f0), f2.eq(f1)]
        wctl = data.StructLayout({"we": 1, "acc": 1, "addr": accw, "nmask": C, "drain": 1,
                                  "last": 1, "tag": TAG_BITS})
        w0 = Signal(wctl)          # pushed into the write-control delay line this cycle (WS)
        w1_os = Signal(wctl)       # OS drain words (into the same delay line, below)
        u_nmask = Signal(C)        # valid columns of the row/step issued this cycle (counters)

        def masks(n, valid):
            return Cat(*[(valid > i) for i in range(n)])

        # ---- command buffer: 2 entries, registered ready ----
        # The head (q0) feeds the engines; q1 takes a command arriving while the head waits.
        clay = exec_cmd_layout(cfg)
        q0 = Signal(clay); q1 = Signal(clay); v0 = Signal(); v1 = Signal()
        start = Signal()                          # the head command starts this cycle
        push = Signal()
        m.d.comb += [self.exe.ready.eq(~v1), push.eq(self.exe.valid & ~v1)]
        with m.If(start):
            with m.If(v1):
                m.d.sync += [q0.eq(q1), v1.eq(0)]
            with m.Else():
                m.d.sync += [q0.eq(self.exe.payload), v0.eq(push)]
        with m.Elif(push):
            with m.If(v0):
                m.d.sync += [q1.eq(self.exe.payload), v1.eq(1)]
            with m.Else():
                m.d.sync += [q0.eq(self.exe.payload), v0.eq(1)]
        m.d.comb += [self.started.eq(start), self.started_tag.eq(q0.tag)]

        cmd = q0
        df_ok = Signal()
        any_busy = Signal()
        m.d.comb += df_ok.eq((cmd.dataflow == cur_os) | (~any_busy & (flush == 0)))

        # ---- WS engines ----
        pl_busy = Signal(); cp_busy = Signal()
        if has_ws:
            pl_addr = Signal(aw); pl_cnt = Signal(range(R + 1)); pl_rowok = Signal(R)
            pl_nmask = Signal(C)
            sh_loaded = Signal()                     # preloaded, not yet made active
            sw_cnt = Signal(range(R + 3))            # cycles until the shadow may be rewritten
            with m.If(sw_cnt != 0):
                m.d.sync += sw_cnt.eq(sw_cnt - 1)
            # preload issue: rows R-1 .. 0 (the chain shifts down: first in ends at the bottom)
            with m.If(pl_busy):
                m.d.comb += [sp.rb_en.eq(1), sp.rb_addr.eq(pl_addr),
                             f0.b_valid.eq(1), f0.b_rowok.eq(pl_rowok[R - 1]), f0.nmask.eq(pl_nmask),
                             issued.eq(1)]
                m.d.sync += [pl_addr.eq(pl_addr - 1), pl_cnt.eq(pl_cnt - 1),
                             pl_rowok.eq(pl_rowok << 1)]
                with m.If(pl_cnt == 1):
                    m.d.sync += pl_busy.eq(0)

            cp_addr = Signal(aw); cp_acc = Signal(accw); cp_rem = Signal(13); cp_flag = Signal()
            cp_kmask = Signal(R); cp_nmask = Signal(C); cp_accum = Signal()
            cp_tag = Signal(TAG_BITS)
            cp_one = Signal()                        # registered cp_rem == 1
            cp_last = Signal()
            m.d.comb += cp_last.eq(cp_busy & cp_one)
            with m.If(cp_busy):
                m.d.comb += [sp.ra_en.eq(1), sp.ra_addr.eq(cp_addr),
                             f0.a_valid.eq(1), f0.a_flag.eq(cp_flag), f0.kmask.eq(cp_kmask),
                             u_nmask.eq(cp_nmask), issued.eq(1)]
                m.d.sync += [cp_addr.eq(cp_addr + 1), cp_acc.eq(cp_acc + 1), cp_rem.eq(cp_rem - 1),
                             cp_flag.eq(0), cp_one.eq(cp_rem == 2)]
                with m.If(cp_last):
                    m.d.sync += cp_busy.eq(0)
            # w0 and w1_os are single unconditional expressions (continuous assigns), not
            # If-driven fields: Icarus (cocotb builds with -g2012) runs an always @* only when
            # one of its inputs changes, and yosys writes a constant field as an always @* with
            # no inputs at all, so If-driven words stayed X (w0.drain forever) and filled the
            # delay line: X on acc_w.ready, then on m_axi rready (test_gemm Icarus, seed 1).
            m.d.comb += w0.eq(Mux(cp_busy, Cat(Const(1, 1), cp_accum, cp_acc, cp_nmask,
                                               Const(0, 1), cp_one, cp_tag), 0))

        # ---- OS engine ----
        os_busy = Signal(); dr_busy = Signal()
        if has_os:
            fl_active = Signal(); fl_addr = Signal(aw); fl_gbase = Signal(aw); fl_row = Signal(range(R))
            fl_buf = Signal(); fl_krem = Signal(14); os_stride = Signal(aw)
            st_lead = Signal(range(R + 1)); st_addr = Signal(aw); st_rem = Signal(13)
            st_kk = Signal(range(R)); st_buf = Signal()
            os_kmask = Signal(R); os_nmask = Signal(C); os_acc = Signal(accw); os_accum = Signal()
            os_tag = Signal(TAG_BITS)
            os_gap = Signal(range(R + 2))
            with m.If(os_gap != 0):
                m.d.sync += os_gap.eq(os_gap - 1)
            with m.If(os_busy & fl_active):
                m.d.comb += [sp.ra_en.eq(1), sp.ra_addr.eq(fl_addr),
                             f0.fill_en.eq(1), f0.fill_row.eq(fl_row), f0.fill_buf.eq(fl_buf)]
                with m.If(fl_row == R - 1):
                    m.d.sync += [fl_row.eq(0), fl_buf.eq(~fl_buf), fl_gbase.eq(fl_gbase + os_stride),
                                 fl_addr.eq(fl_gbase + os_stride), fl_krem.eq(fl_krem - R),
                                 fl_active.eq(fl_krem > R)]
                with m.Else():
                    m.d.sync += [fl_row.eq(fl_row + 1), fl_addr.eq(fl_addr + 1)]
            with m.If(os_busy & (st_lead != 0)):
                m.d.sync += st_lead.eq(st_lead - 1)
            with m.If(os_busy & (st_lead == 0)):
                m.d.comb += [sp.rb_en.eq(1), sp.rb_addr.eq(st_addr),
                             f0.b_valid.eq(1), f0.b_rowok.eq(1), f0.nmask.eq(os_nmask),
                             f0.a_valid.eq(1), f0.a_flag.eq(st_rem == 1), f0.kmask.eq(os_kmask),
                             f0.tr_shift.eq(1), f0.tr_buf.eq(st_buf), u_nmask.eq(os_nmask),
                             issued.eq(1)]
                m.d.sync += [st_addr.eq(st_addr + 1), st_rem.eq(st_rem - 1)]
                with m.If(st_kk == R - 1):
                    m.d.sync += [st_kk.eq(0), st_buf.eq(~st_buf)]
                with m.Else():
                    m.d.sync += st_kk.eq(st_kk + 1)
                with m.If(st_rem == 1):
                    m.d.sync += [os_busy.eq(0), dr_busy.eq(1), os_gap.eq(R)]
            # drain words: rows R-1 .. 0 of the finished tile
            dr_cnt = Signal(range(R + 1)); dr_addr = Signal(accw); dr_rowok = Signal(R)
            dr_nmask = Signal(C); dr_accum = Signal(); dr_tag = Signal(TAG_BITS)
            with m.If(os_busy & (st_lead == 0) & (st_rem == 1)):
                m.d.sync += [dr_cnt.eq(R), dr_addr.eq(os_acc + (R - 1)), dr_rowok.eq(os_kmask),
                             dr_nmask.eq(os_nmask), dr_accum.eq(os_accum), dr_tag.eq(os_tag)]
            m.d.comb += w1_os.eq(Mux(dr_busy, Cat(dr_rowok[R - 1], dr_accum, dr_addr, dr_nmask,
                                                  Const(1, 1), dr_cnt == 1, dr_tag), 0))  # as w0
            with m.If(dr_busy):
                m.d.comb += issued.eq(1)
                m.d.sync += [dr_addr.eq(dr_addr - 1), dr_cnt.eq(dr_cnt - 1), dr_rowok.eq(dr_rowok << 1)]
                with m.If(dr_cnt == 1):
                    m.d.sync += dr_busy.eq(0)

        m.d.comb += any_busy.eq(pl_busy | cp_busy | os_busy | dr_busy)

        # ---- command acceptance (in order) ----
        is_pre = cmd.op == ExecOp.PRELOAD
        ready = Signal()                          # the head command may start
        m.d.comb += start.eq(v0 & ready)
        with m.If(df_ok):
            with m.If(cmd.dataflow == Dataflow.WS):
                if has_ws:
                    with m.If(is_pre):
                        m.d.comb += ready.eq(~pl_busy & (sw_cnt == 0))   # a second PRELOAD replaces the first
                    with m.Else():
                        m.d.comb += ready.eq((~cp_busy | cp_last) & ~(sh_loaded & pl_busy))
                else:
                    m.d.comb += ready.eq(1)                 # not synthesized: dropped
            with m.Else():
                if has_os:
                    with m.If(is_pre):
                        m.d.comb += ready.eq(1)             # no-op in OS
                    with m.Else():
                        m.d.comb += ready.eq(~os_busy & (os_gap <= cmd.rows))
                else:
                    m.d.comb += ready.eq(1)
        with m.If(start):
            m.d.sync += cur_os.eq(cmd.dataflow if (has_ws and has_os) else int(has_os and not has_ws))
            kmask = masks(R, cmd.k_valid)
            nmask = masks(C, cmd.n_valid)
            with m.If(cmd.dataflow == Dataflow.WS):
                if has_ws:
                    with m.If(is_pre):
                        m.d.sync += [pl_busy.eq(1), pl_addr.eq(cmd.b_addr + (R - 1)), pl_cnt.eq(R),
                                     pl_rowok.eq(kmask), pl_nmask.eq(nmask), sh_loaded.eq(1)]
                    with m.Elif(cmd.rows != 0):
                        m.d.sync += [cp_busy.eq(1), cp_addr.eq(cmd.a_addr), cp_acc.eq(cmd.acc_addr),
                                     cp_rem.eq(cmd.rows), cp_flag.eq(sh_loaded), cp_kmask.eq(kmask),
                                     cp_nmask.eq(nmask), cp_accum.eq(cmd.accumulate),
                                     cp_one.eq(cmd.rows == 1), cp_tag.eq(cmd.tag)]
                        with m.If(sh_loaded):
                            m.d.sync += [sh_loaded.eq(0), sw_cnt.eq(R + 2)]
            with m.Else():
                if has_os:
                    with m.If(~is_pre & (cmd.rows != 0)):
                        m.d.sync += [os_busy.eq(1), fl_active.eq(1), fl_addr.eq(cmd.a_addr),
                                     fl_gbase.eq(cmd.a_addr), fl_row.eq(0), fl_buf.eq(0),
                                     fl_krem.eq(cmd.rows), os_stride.eq(cmd.a_stride),
                                     st_lead.eq(R), st_addr.eq(cmd.b_addr), st_rem.eq(cmd.rows),
                                     st_kk.eq(0), st_buf.eq(0), os_kmask.eq(kmask),
                                     os_nmask.eq(nmask), os_acc.eq(cmd.acc_addr),
                                     os_accum.eq(cmd.accumulate), os_tag.eq(cmd.tag)]

        # ---- front pipeline stage 2: memory data -> masked registers (+ transposer) ----
        a_reg = Signal(data.ArrayLayout(lane, R))
        b_reg = Signal(data.ArrayLayout(col, C))
        a_src = Signal(data.ArrayLayout(signed(8), R))
        ra = sp.ra_data
        for i in range(R):
            m.d.comb += a_src[i].eq(ra[8 * i:8 * i + 8])
        if has_os:
            m.d.comb += [tr.w_en.eq(f2.fill_en), tr.w_buf.eq(f2.fill_buf), tr.w_row.eq(f2.fill_row),
                         tr.w_data.eq(a_src), tr.r_shift.eq(f2.tr_shift), tr.r_buf.eq(f2.tr_buf)]
        for i in range(R):
            src = a_src[i]
            if has_os:
                src = Mux(cur_os, tr.col[i], a_src[i])
            m.d.sync += [a_reg[i].a.eq(Mux(f2.a_valid & f2.kmask[i], src, 0)),
                         a_reg[i].v.eq(f2.a_valid), a_reg[i].f.eq(f2.a_flag)]
        rb = sp.rb_data
        for j in range(C):
            m.d.sync += [b_reg[j].b.eq(Mux(f2.b_valid & f2.b_rowok & f2.nmask[j], rb[8 * j:8 * j + 8], 0)),
                         b_reg[j].sh.eq(f2.b_valid | cur_os)]
        m.d.comb += [arr.a.eq(a_reg), arr.b.eq(b_reg)]

        # ---- write-control delay line, drain, deskew ----
        L = R + C + 3 + MUL_LATENCY
        dl = [Signal(wctl, name=f"dl{k}") for k in range(L)]
        # OS drain words enter at the first stage like WS words: an OS result reaches the PE's
        # drain register OS_RESULT_LATENCY = MUL_LATENCY + 2 cycles after the last K step,
        # one cycle later than a WS psum leaves the PE (hdl/npu/pe.py).
        m.d.sync += dl[0].eq(Mux(cur_os, w1_os, w0))
        for k in range(1, L):
            m.d.sync += dl[k].eq(dl[k - 1])
        tap_drain = dl[R + 3 + MUL_LATENCY]
        m.d.comb += arr.drain.eq(Mux(cur_os, tap_drain.drain, 0))
        tap = dl[L - 1]
        # landed: the tap word enters the accumulator, whose 3-stage write is visible to reads
        # 3 cycles later (accumulator.py)
        land = [Signal(1 + TAG_BITS, name=f"land{k}") for k in range(3)]
        m.d.sync += land[0].eq(Cat(tap.last, tap.tag))
        m.d.sync += [land[k].eq(land[k - 1]) for k in range(1, 3)]
        m.d.comb += [self.landed.eq(land[2][0]), self.landed_tag.eq(land[2][1:])]

        # ---- accumulator writes: array first, then acc_w ----
        m.d.comb += self.acc_w.ready.eq(~tap.we)
        # Muxes, not If/Else: yosys splits an If into one always @* per output, and Icarus never
        # runs the one for w_mask (inputs: tap only) until the first array write, so a D mvin
        # before it had mask X and was dropped (test_gemm Icarus, seed 8). See w0 above.
        w = self.acc_w.payload
        m.d.comb += [acc.w_valid.eq(tap.we | self.acc_w.valid),
                     acc.w_acc.eq(Mux(tap.we, tap.acc, w.accumulate)),
                     acc.w_addr.eq(Mux(tap.we, tap.addr, w.addr)),
                     acc.w_data.eq(Mux(tap.we, arr.d, w.data)),
                     acc.w_mask.eq(Mux(tap.we, tap.nmask, (1 << C) - 1))]

        # ---- accumulator read-out: credit-limited pipeline -> requant -> FIFO ----
        m.submodules.rd_fifo = fifo = SyncFIFOBuffered(width=32 * C, depth=ACC_READ_DEPTH)
        outstanding = Signal(range(ACC_READ_DEPTH + 1))
        req = self.acc_rd_req
        m.d.comb += [acc.r_addr.eq(req.payload.addr),
                     req.ready.eq((outstanding < ACC_READ_DEPTH) & ~acc.hazard)]
        rq_fire = req.valid & req.ready
        pop = self.acc_rd.valid & self.acc_rd.ready
        m.d.comb += acc.r_en.eq(rq_fire)
        m.d.sync += outstanding.eq(outstanding + rq_fire - pop)
        q1 = Signal(acc_read_req_layout(cfg)); q1_valid = Signal()
        m.d.sync += [q1_valid.eq(rq_fire), q1.eq(req.payload)]
        m.d.comb += [rq.i_valid.eq(q1_valid), rq.x.eq(acc.r_data), rq.mode.eq(q1.mode),
                     rq.relu.eq(q1.relu), rq.scale.eq(q1.scale), rq.shift.eq(q1.shift),
                     fifo.w_en.eq(rq.o_valid), fifo.w_data.eq(rq.o_data),
                     self.acc_rd.valid.eq(fifo.r_rdy), self.acc_rd.payload.data.eq(fifo.r_data),
                     fifo.r_en.eq(self.acc_rd.ready)]

        # ---- status and counters ----
        idle = Signal()
        m.d.comb += idle.eq(~v0 & ~any_busy & (flush == 0) & ~acc.busy)
        m.d.comb += [self.idle.eq(idle), self.busy.eq(~idle)]
        # useful MACs of the issued row = popcount(kmask) * popcount(nmask), as a sum (no multiplier)
        # (two register stages: the popcount, then the sum; outputs 2 cycles after the issue)
        kpop = Signal(range(R + 1))
        u_valid = Signal()
        u_kpop = Signal(range(R + 1))
        u_nm = Signal(C)
        m.d.comb += kpop.eq(sum(f0.kmask[i] for i in range(R)))
        m.d.sync += [u_valid.eq(f0.a_valid), u_kpop.eq(Mux(f0.a_valid, kpop, 0)), u_nm.eq(u_nmask),
                     self.mac_active.eq(u_valid),
                     self.useful_macs_inc.eq(sum(Mux(u_nm[j], u_kpop, 0) for j in range(C)))]
        return m
