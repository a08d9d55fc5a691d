"""Hardware tiler for the GEMM command: C[MxN] = A[MxK] . B[KxN] (+ D), any M, N, K >= 1.

Matrices live row-major in external memory with byte strides ``lda``, ``ldb``, ``ldc``, ``ldd``
(A, B int8; D int32; C int32, or int8 when requantized). The tiler turns one GEMM into DMA reads
(mvin), core tile commands (PRELOAD/COMPUTE, see :mod:`.core`) and DMA writes (mvout).

Tiling (R x C array, K chunks of ``Kc`` rows: Kc = R in WS; in OS Kc = up to ``os_kc_max``
rows of K, a multiple of R):

- M is cut into blocks of ``Mb`` rows. An A block (Mb rows x all of K) is resident in the
  scratchpad while every N tile is computed from it: A row m, K lanes ``[kt*R, kt*R+R)`` sit in
  scratchpad row ``a_base + kt*Mb + m`` (one DMA row -> ``ceil(K/R)`` chunks, ``chunk_step`` Mb).
  A blocks are double-buffered (two halves of the A region): block m+1 loads while block m
  computes.
- N is cut into tiles of C columns. For block j = (m-block, n-tile), C[block] accumulates over
  the K chunks in one half of the accumulator (double-buffered: block j+1 computes into the other
  half while block j is written out by the DMA).
- B chunks (Kc rows x C columns) stream through scratchpad slots (8 in WS, or 4 on a small
  scratchpad; 2 in OS), loaded ahead of the compute. A rows load two per DMA command, so B
  loads (which have priority) slip in between.
- WS: per chunk one PRELOAD (the weights) and one COMPUTE of Mb rows. OS: per chunk one COMPUTE
  per R-row group of the block, K steps = the chunk's valid rows.
- Edges: the last M block, N tile and K chunk are partial; the DMA zero-fills rows beyond the
  valid bytes, the core masks with ``k_valid``/``n_valid`` and the mvout writes only the valid
  columns with byte strobes.

Block size: the largest block that fits is ``cap = min(floor(A_half / ceil(K/R)), acc_rows/2,
4096)`` rows in WS and ``min(floor(A_half / (R*ceil(K/R))), floor(min(acc_rows/2, 4096) / R))``
R-row groups in OS, where ``A_half`` is half the scratchpad rows left after the B slots. The
blocks are balanced: ``nblk = ceil(M / cap)`` blocks of ``Mb = ceil(M / nblk)`` rows (OS: groups
of R rows), so no block is a sliver (a WS COMPUTE shorter than 2R + 4 rows leaves bubbles in
the core). K larger than the scratchpad can hold for one row (``cap = 0``) sets ``error`` and
finishes without touching memory.

Synchronisation (all by counters, so the three engines run concurrently):

- the loader issues a B chunk into a slot only when the core has taken the commands that freed
  it (WS, S slots: the PRELOAD of chunk u - S + 2 has been accepted, so the slot's previous
  PRELOAD, of chunk u - S, has finished reading; OS: the first COMPUTE of chunk u - 1 has been
  accepted, so every COMPUTE of chunk u - 2 has finished streaming);
- a block's last COMPUTE starts a landing timer (COMPUTE length + ``Core.write_latency`` + 18
  cycles, plus 2R in OS for the lead-in and the drain; the core executes commands in order
  from their acceptance): when it expires the block is complete. The compute engine does not
  wait: the next block's PRELOAD/COMPUTE follow at once (only blocks shorter than the timer
  wait for the previous block's timer);
- an A block loads into its half when the block two earlier is complete;
- a D block (``+D``) loads and a block computes into an accumulator half only after the block
  two earlier in that half has been written out (``wr_done``);
- the writer starts a block once it is complete.

Throughput: WS blocks follow each other without bubbles when every COMPUTE has at least
2R + 4 rows (core.py), so the compute span is about ``M * ceil(N/C) * ceil(K/R)`` cycles.
With ``+D`` each block start waits for its D load: D rows enter the accumulator through the
write port that the array holds while it computes (about two cycles per D row per block).

Stall outputs (for the performance counters): ``stall_rd`` - the compute engine waits for a DMA
read (A, B or D not loaded yet); ``stall_wr`` - it waits for a DMA write (accumulator half not
written out yet), or everything is computed and the last mvout is running.
"""

from amaranth.hdl import Module, Signal, Mux, Cat, Const, unsigned, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .config import NPUConfig
from .core import exec_cmd_layout, ExecOp, Dataflow, MAX_ROWS, Core
from .dma import rd_cmd_layout, wr_cmd_layout

__all__ = ["GemmTiler", "gemm_params_layout", "TAG_A", "TAG_A_LAST", "TAG_B", "TAG_D"]

TAG_A, TAG_A_LAST, TAG_B, TAG_D = 0, 1, 2, 3
A_ROWS_LOG2 = 1
A_ROWS_PER_CMD = 1 << A_ROWS_LOG2   # A rows per DMA command: lets B loads slip in between
WS_B_SLOTS_LOG2 = 3         # 8 B slots of R rows in WS (4 when the scratchpad is small)


def gemm_params_layout(cfg):
    aw = cfg.axi_addr_width
    return data.StructLayout({
        "m": unsigned(16), "n": unsigned(16), "k": unsigned(16),
        "a": unsigned(aw), "lda": unsigned(aw),
        "b": unsigned(aw), "ldb": unsigned(aw),
        "c": unsigned(aw), "ldc": unsigned(aw),
        "d": unsigned(aw), "ldd": unsigned(aw),
        "has_d": unsigned(1), "os": unsigned(1), "out_int8": unsigned(1), "relu": unsigned(1),
        "shift": unsigned(6), "scale": signed(32),
    })


def _min(a, b):
    return Mux(a < b, a, b)


class _SeqDiv(wiring.Component):
    """Unsigned restoring divider: ``q = a // b`` ``width`` cycles after ``start``.

    ``a`` and ``b`` are sampled in the ``start`` cycle only (both are latched), so the caller
    may drive them just for that cycle.
    """

    def __init__(self, width):
        self._w = width
        super().__init__({"start": In(1), "a": In(width), "b": In(width),
                          "q": Out(width), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        w = self._w
        rem = Signal(w + 1)
        num = Signal(w)
        cnt = Signal(range(w + 1))
        den = Signal(w)
        busy = Signal()
        trial = Cat(num[w - 1], rem[:w])
        with m.If(self.start):
            m.d.sync += [rem.eq(0), num.eq(self.a), den.eq(self.b), cnt.eq(w), busy.eq(1),
                         self.q.eq(0)]
        with m.Elif(busy):
            # the divisor is the latched ``den``: ``b`` is only driven in the start cycle
            with m.If(trial >= den):
                m.d.sync += [rem.eq(trial - den), self.q.eq(Cat(1, self.q[:w - 1]))]
            with m.Else():
                m.d.sync += [rem.eq(trial), self.q.eq(Cat(0, self.q[:w - 1]))]
            m.d.sync += [num.eq(num << 1), cnt.eq(cnt - 1)]
            with m.If(cnt == 1):
                m.d.sync += busy.eq(0)
        m.d.comb += self.done.eq(~busy & ~self.start)
        return m


class _SeqMul(wiring.Component):
    """``p = a * b`` (modulo 2**width), ``bits(b)`` cycles after ``start`` (shift and add)."""

    def __init__(self, width, b_width):
        self._w, self._bw = width, b_width
        super().__init__({"start": In(1), "a": In(width), "b": In(b_width),
                          "p": Out(width), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        a = Signal(self._w)
        b = Signal(self._bw)
        busy = Signal()
        with m.If(self.start):
            m.d.sync += [a.eq(self.a), b.eq(self.b), self.p.eq(0), busy.eq(1)]
        with m.Elif(busy):
            with m.If(b[0]):
                m.d.sync += self.p.eq(self.p + a)
            m.d.sync += [a.eq(a << 1), b.eq(b >> 1)]
            with m.If(b[1:] == 0):
                m.d.sync += busy.eq(0)
        m.d.comb += self.done.eq(~busy & ~self.start)
        return m


class GemmTiler(wiring.Component):
    """Runs one GEMM command at a time (module docstring: tiling, buffering, synchronisation).

    Members
    -------
    start : In(1)
        Pulse with ``params`` valid: begin a GEMM (ignored while ``busy``).
    params : In(gemm_params_layout)
    busy : Out(1)
    done : Out(1)
        One-cycle pulse when the last C block has been written (all B responses in).
    error : Out(1)
        With ``done``: the command was rejected (K too large for the scratchpad, or OS asked
        for on a WS-only build, or WS on an OS-only build).
    rd_cmd, wr_cmd : Out(stream)
        To the DMA; ``rd_done``/``rd_done_tag``/``wr_done`` come back from it.
    exe : Out(stream of exec_cmd_layout)
        To the core; ``core_idle`` comes back.
    stall_rd, stall_wr : Out(1)
        Stall causes for the performance counters (see the module docstring).
    """

    def __init__(self, cfg, *, os_kc_max=None, serialize=False):
        self._serialize = bool(serialize)   # debug: wait for the core to be idle after each COMPUTE
        if not isinstance(cfg, NPUConfig):
            raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
        self._cfg = cfg
        R = cfg.rows
        if os_kc_max is None:
            os_kc_max = min(MAX_ROWS, cfg.sp_rows // 8)
        self._os_kc_max = max(R, (os_kc_max // R) * R)
        super().__init__({
            "start": In(1),
            "params": In(gemm_params_layout(cfg)),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "rd_cmd": Out(stream.Signature(rd_cmd_layout(cfg))),
            "rd_done": In(1),
            "rd_done_tag": In(2),
            "wr_cmd": Out(stream.Signature(wr_cmd_layout(cfg))),
            "wr_done": In(1),
            "exe": Out(stream.Signature(exec_cmd_layout(cfg))),
            "core_idle": In(1),
            "stall_rd": Out(1),
            "stall_wr": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        R, C = cfg.rows, cfg.cols
        AW = cfg.axi_addr_width
        SPW = cfg.sp_addr_width + 1
        acc_half = cfg.acc_rows // 2
        p = Signal(gemm_params_layout(cfg))

        # WS: last row issued ``rows`` cycles after the COMPUTE is accepted, then the core's
        # write pipeline (Core.write_latency) and the accumulator's own stages; the margin is
        # that of the core's ``idle`` flush counter (write_latency + 10) plus 8.
        probe = Core(cfg)                     # only read for its latency, not elaborated
        probe._MustUse__silence = True
        land_lat = probe.write_latency + 18
        m.submodules.div = div = _SeqDiv(20)
        m.submodules.mul = mul = _SeqMul(AW, 16)

        # ---------------- derived parameters (set up once per command) ------------------------
        ktiles = Signal(16)          # ceil(K / R)
        kcg = Signal(16)             # R-groups per K chunk (1 in WS)
        kc = Signal(16)              # rows of K per chunk
        bslot = Signal(SPW)          # scratchpad rows per B slot
        a_region = Signal(SPW)       # first A row (after the B slots)
        a_half = Signal(SPW)
        mb = Signal(13)              # rows per M block
        mtiles = Signal(16)          # ceil(M / R)
        mb_units = Signal(20)        # largest block that fits (WS: rows, OS: R-row groups)
        nblk = Signal(20)            # number of M blocks
        mb_lda = Signal(AW)
        mb_ldc = Signal(AW)
        mb_ldd = Signal(AW)
        kc_ldb = Signal(AW)
        chunk_a_step = Signal(SPW + 4)  # scratchpad rows between the A rows of two K chunks
        eb_shift = Signal(2)         # log2(bytes per C element)

        running = Signal()
        m.d.comb += self.busy.eq(running)

        la_go = Signal()
        lb_go = Signal()
        ex_go = Signal()
        st_go = Signal()
        la_fin = Signal()
        lb_fin = Signal()
        ex_fin = Signal()
        st_fin = Signal()

        # WS B slots: 8 (B loads run up to 5 chunks ahead of the PRELOADs), or 4 when 8 slots
        # would take more than 1/32 of the scratchpad; OS: 2 slots of Kc rows
        ws_slots_log2 = WS_B_SLOTS_LOG2 if (32 << WS_B_SLOTS_LOG2) * R <= cfg.sp_rows else 2
        b_slots_log2 = Signal(2)

        with m.FSM(name="setup"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [p.eq(self.params), running.eq(1)]
                    m.next = "CHECK"
            with m.State("CHECK"):
                bad = Signal()
                if not cfg.has_os:
                    m.d.comb += bad.eq(p.os)
                if not cfg.has_ws:
                    m.d.comb += bad.eq(~p.os)
                with m.If(bad | (p.m == 0) | (p.n == 0) | (p.k == 0)):
                    m.next = "ERROR"
                with m.Else():
                    m.d.comb += [div.start.eq(1), div.a.eq(p.k + (R - 1)), div.b.eq(R)]
                    m.next = "KT"
            with m.State("KT"):
                with m.If(div.done):
                    m.d.sync += ktiles.eq(div.q)
                    m.next = "MT0"
            with m.State("MT0"):
                m.d.comb += [div.start.eq(1), div.a.eq(p.m + (R - 1)), div.b.eq(R)]
                m.next = "MT1"
            with m.State("MT1"):
                with m.If(div.done):
                    m.d.sync += mtiles.eq(div.q)
                    m.next = "KC"
            with m.State("KC"):
                okg = self._os_kc_max // R
                g = Signal(16)
                m.d.comb += g.eq(Mux(p.os, _min(ktiles, okg), 1))
                m.d.sync += [kcg.eq(g), kc.eq(g * R),
                             bslot.eq(g * R),
                             b_slots_log2.eq(Mux(p.os, 1, ws_slots_log2)),
                             eb_shift.eq(Mux(p.out_int8, 0, 2))]
                m.next = "REGION"
            with m.State("REGION"):
                used = Signal(SPW + 2)
                m.d.comb += used.eq(bslot << b_slots_log2)
                with m.If(used >= cfg.sp_rows):
                    m.next = "ERROR"
                with m.Else():
                    m.d.sync += [a_region.eq(used), a_half.eq((cfg.sp_rows - used) >> 1)]
                    m.next = "MB0"
            with m.State("MB0"):
                m.d.comb += [div.start.eq(1), div.a.eq(a_half),
                             div.b.eq(Mux(p.os, ktiles * R, ktiles))]
                m.next = "MB1"
            with m.State("MB1"):
                with m.If(div.done):
                    # the largest block, in units (WS: rows, OS: R-row groups)
                    cap = Signal(20)
                    m.d.comb += cap.eq(Mux(p.os, min(acc_half, MAX_ROWS) // R,
                                           min(acc_half, MAX_ROWS)))
                    m.d.sync += mb_units.eq(_min(div.q, cap))
                    with m.If(div.q == 0):
                        m.next = "ERROR"
                    with m.Else():
                        m.next = "NB0"
            # balanced blocks: nblk = ceil(units / cap), then Mb = ceil(units / nblk) units, so
            # the last block is not a sliver (a WS COMPUTE shorter than 2R + 4 rows has bubbles)
            units = Mux(p.os, mtiles, p.m)
            with m.State("NB0"):
                m.d.comb += [div.start.eq(1), div.a.eq(units + mb_units - 1), div.b.eq(mb_units)]
                m.next = "NB1"
            with m.State("NB1"):
                with m.If(div.done):
                    m.d.sync += nblk.eq(div.q)
                    m.next = "MBB0"
            with m.State("MBB0"):
                m.d.comb += [div.start.eq(1), div.a.eq(units + nblk - 1), div.b.eq(nblk)]
                m.next = "MBB1"
            with m.State("MBB1"):
                with m.If(div.done):
                    m.d.sync += mb.eq(Mux(p.os, div.q * R, div.q))
                    m.next = "MUL_A"
            # four sequential products, one multiplier
            prods = [("MUL_A", p.lda, mb, mb_lda, "MUL_C"),
                     ("MUL_C", p.ldc, mb, mb_ldc, "MUL_D"),
                     ("MUL_D", p.ldd, mb, mb_ldd, "MUL_B"),
                     ("MUL_B", p.ldb, kc, kc_ldb, "MUL_S"),
                     ("MUL_S", kcg, mb, chunk_a_step, "GO")]
            for name, a, b, dst, nxt in prods:
                with m.State(name):
                    m.d.comb += [mul.start.eq(1), mul.a.eq(a), mul.b.eq(b)]
                    m.next = name + "_W"
                with m.State(name + "_W"):
                    with m.If(mul.done):
                        m.d.sync += dst.eq(mul.p)
                        m.next = nxt
            with m.State("GO"):
                m.d.comb += [la_go.eq(1), lb_go.eq(1), ex_go.eq(1), st_go.eq(1)]
                m.next = "RUN"
            with m.State("RUN"):
                with m.If(st_fin):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
            with m.State("ERROR"):
                m.d.comb += [self.done.eq(1), self.error.eq(1)]
                m.d.sync += running.eq(0)
                m.next = "IDLE"

        # ---------------- progress counters shared by the engines ------------------------------
        a_blocks_loaded = Signal(32)   # A blocks fully in the scratchpad
        b_loaded = Signal(32)          # B chunks in the scratchpad
        d_loaded = Signal(32)          # D blocks in the accumulator
        pre_accepted = Signal(32)      # WS PRELOADs accepted by the core
        os_started = Signal(32)        # OS: chunks whose first COMPUTE was accepted
        ex_mblocks = Signal(32)        # M blocks fully computed
        ex_blocks = Signal(32)         # (M block, N tile) blocks fully computed
        st_blocks = Signal(32)         # blocks written out

        with m.If(la_go):
            m.d.sync += [a_blocks_loaded.eq(0), b_loaded.eq(0), d_loaded.eq(0),
                         pre_accepted.eq(0), os_started.eq(0), ex_mblocks.eq(0),
                         ex_blocks.eq(0), st_blocks.eq(0)]
        with m.Elif(self.rd_done):
            with m.Switch(self.rd_done_tag):
                with m.Case(TAG_A_LAST):
                    m.d.sync += a_blocks_loaded.eq(a_blocks_loaded + 1)
                with m.Case(TAG_B):
                    m.d.sync += b_loaded.eq(b_loaded + 1)
                with m.Case(TAG_D):
                    m.d.sync += d_loaded.eq(d_loaded + 1)

        def geometry(prefix):
            """Block iteration registers: m0, n0 and the derived block sizes."""
            m0 = Signal(16, name=f"{prefix}_m0")
            n0 = Signal(16, name=f"{prefix}_n0")
            mrem = Signal(17, name=f"{prefix}_mrem")
            nrem = Signal(17, name=f"{prefix}_nrem")
            mbc = Signal(13, name=f"{prefix}_mbc")
            nval = Signal(range(C + 1), name=f"{prefix}_nval")
            m.d.comb += [mrem.eq(p.m - m0), nrem.eq(p.n - n0),
                         mbc.eq(_min(mrem, mb)), nval.eq(_min(nrem, C))]
            last_n = nrem <= C
            last_m = mrem <= mb
            return m0, n0, mbc, nval, last_n, last_m

        # ---------------- loader A ------------------------------------------------------------
        la_m0, _, la_mbc, _, _, la_last_m = geometry("la")
        la_blk = Signal(32)          # M block index
        la_row = Signal(13)          # next row within the block
        la_addr = Signal(AW)         # memory address of that row
        la_blk_addr = Signal(AW)
        la_req = Signal()
        la_cmd = Signal(rd_cmd_layout(cfg))
        la_on = Signal()
        with m.If(la_go):
            m.d.sync += [la_on.eq(1), la_m0.eq(0), la_blk.eq(0), la_row.eq(0),
                         la_addr.eq(p.a), la_blk_addr.eq(p.a)]
        la_rows = Signal(13)
        m.d.comb += la_rows.eq(_min(la_mbc - la_row, A_ROWS_PER_CMD))
        la_slot_free = (la_blk < 2) | (ex_mblocks + 2 > la_blk)
        m.d.comb += la_req.eq(la_on & la_slot_free)
        m.d.comb += [
            la_cmd.mem_addr.eq(la_addr), la_cmd.mem_stride.eq(p.lda), la_cmd.rows.eq(la_rows),
            la_cmd.row_bytes.eq(p.k), la_cmd.chunk_bytes.eq(R), la_cmd.to_acc.eq(0),
            la_cmd.local_addr.eq(a_region + Mux(la_blk[0], a_half, 0) + la_row),
            la_cmd.row_step.eq(1), la_cmd.chunk_step.eq(mb),
            la_cmd.tag.eq(Mux(la_row + la_rows == la_mbc, TAG_A_LAST, TAG_A)),
        ]
        la_fire = Signal()
        with m.If(la_fire):
            with m.If(la_row + la_rows == la_mbc):
                nb = la_blk_addr + mb_lda
                m.d.sync += [la_row.eq(0), la_blk.eq(la_blk + 1), la_m0.eq(la_m0 + mb),
                             la_blk_addr.eq(nb), la_addr.eq(nb)]
                with m.If(la_last_m):
                    m.d.sync += la_on.eq(0)
            with m.Else():
                m.d.sync += [la_row.eq(la_row + la_rows),
                             la_addr.eq(la_addr + (p.lda << A_ROWS_LOG2))]

        # ---------------- loader B / D --------------------------------------------------------
        lb_m0, lb_n0, lb_mbc, lb_nval, lb_last_n, lb_last_m = geometry("lb")
        lb_on = Signal()
        lb_blk = Signal(32)          # block index j
        lb_u = Signal(32)            # B chunk index (global)
        lb_k0 = Signal(17)
        lb_d_done = Signal()         # D of this block issued
        lb_b_n = Signal(AW)          # B address of column n0
        lb_b_cur = Signal(AW)        # B address of the current chunk
        lb_d_blk = Signal(AW)
        lb_d_cur = Signal(AW)
        lb_kval = Signal(17)
        m.d.comb += lb_kval.eq(_min(p.k - lb_k0, kc))
        lb_last_k = (p.k - lb_k0) <= kc
        with m.If(lb_go):
            m.d.sync += [lb_on.eq(1), lb_m0.eq(0), lb_n0.eq(0), lb_blk.eq(0), lb_u.eq(0),
                         lb_k0.eq(0), lb_d_done.eq(~p.has_d), lb_b_n.eq(p.b), lb_b_cur.eq(p.b),
                         lb_d_blk.eq(p.d), lb_d_cur.eq(p.d)]
        slot_mask = Mux(p.os, 1, (1 << ws_slots_log2) - 1)
        # WS: slot u % S held chunk u - S, whose PRELOAD has finished reading once the PRELOAD
        # of chunk u - S + 1 was accepted; one chunk of margin: PRELOAD u - S + 2 accepted
        ws_slot_free = ((lb_u < (1 << ws_slots_log2))
                        | (pre_accepted + ((1 << ws_slots_log2) - 3) >= lb_u))
        # OS: chunk u-1 started => every COMPUTE of chunk u-2 finished streaming its B rows
        # (the core accepts an OS COMPUTE only when the previous one has)
        os_slot_free = (lb_u < 2) | (os_started >= lb_u)
        lb_slot_free = Mux(p.os, os_slot_free, ws_slot_free)
        lb_half_free = (lb_blk < 2) | (st_blocks + 1 >= lb_blk)
        lb_cmd = Signal(rd_cmd_layout(cfg))
        lb_req = Signal()
        lb_is_d = ~lb_d_done
        with m.If(lb_is_d):
            m.d.comb += [
                lb_req.eq(lb_on & lb_half_free),
                lb_cmd.mem_addr.eq(lb_d_cur), lb_cmd.mem_stride.eq(p.ldd),
                lb_cmd.rows.eq(lb_mbc), lb_cmd.row_bytes.eq(lb_nval << 2),
                lb_cmd.chunk_bytes.eq(4 * C), lb_cmd.to_acc.eq(1), lb_cmd.accumulate.eq(0),
                lb_cmd.local_addr.eq(Mux(lb_blk[0], acc_half, 0)),
                lb_cmd.row_step.eq(1), lb_cmd.chunk_step.eq(1), lb_cmd.tag.eq(TAG_D),
            ]
        with m.Else():
            m.d.comb += [
                lb_req.eq(lb_on & lb_slot_free),
                lb_cmd.mem_addr.eq(lb_b_cur), lb_cmd.mem_stride.eq(p.ldb),
                lb_cmd.rows.eq(lb_kval), lb_cmd.row_bytes.eq(lb_nval),
                lb_cmd.chunk_bytes.eq(C), lb_cmd.to_acc.eq(0),
                lb_cmd.local_addr.eq((lb_u & slot_mask) * bslot),
                lb_cmd.row_step.eq(1), lb_cmd.chunk_step.eq(1), lb_cmd.tag.eq(TAG_B),
            ]
        lb_fire = Signal()
        with m.If(lb_fire):
            with m.If(lb_is_d):
                m.d.sync += lb_d_done.eq(1)
            with m.Else():
                m.d.sync += lb_u.eq(lb_u + 1)
                with m.If(lb_last_k):
                    # next block
                    m.d.sync += [lb_k0.eq(0), lb_blk.eq(lb_blk + 1), lb_d_done.eq(~p.has_d)]
                    with m.If(lb_last_n):
                        nd = lb_d_blk + mb_ldd
                        m.d.sync += [lb_n0.eq(0), lb_m0.eq(lb_m0 + mb), lb_b_n.eq(p.b),
                                     lb_b_cur.eq(p.b), lb_d_blk.eq(nd), lb_d_cur.eq(nd)]
                        with m.If(lb_last_m):
                            m.d.sync += lb_on.eq(0)
                    with m.Else():
                        m.d.sync += [lb_n0.eq(lb_n0 + C), lb_b_n.eq(lb_b_n + C),
                                     lb_b_cur.eq(lb_b_n + C), lb_d_cur.eq(lb_d_cur + 4 * C)]
                with m.Else():
                    m.d.sync += [lb_k0.eq(lb_k0 + kc), lb_b_cur.eq(lb_b_cur + kc_ldb)]

        # B/D first, A in the gaps
        m.d.comb += [lb_fire.eq(lb_req & self.rd_cmd.ready),
                     la_fire.eq(la_req & ~lb_req & self.rd_cmd.ready),
                     self.rd_cmd.valid.eq(lb_req | la_req),
                     self.rd_cmd.payload.eq(Mux(lb_req, lb_cmd.as_value(), la_cmd.as_value()))]

        # ---------------- compute engine -------------------------------------------------------
        ex_m0, ex_n0, ex_mbc, ex_nval, ex_last_n, ex_last_m = geometry("ex")
        ex_on = Signal()
        ex_blk = Signal(32)
        ex_mblk = Signal(32)
        ex_u = Signal(32)
        ex_k0 = Signal(17)
        ex_kt = Signal(16)            # K chunk index within the block
        ex_a_off = Signal(SPW + 4)    # kt * chunk_a_step
        ex_mt = Signal(13)            # OS: row offset of the R-row group
        ex_guard = Signal(2)
        ex_stall_rd = Signal()
        ex_stall_wr = Signal()
        ex_kval = Signal(17)
        m.d.comb += ex_kval.eq(_min(p.k - ex_k0, kc))
        ex_last_k = (p.k - ex_k0) <= kc
        ex_first_k = ex_k0 == 0
        cmd = self.exe.payload
        a_base = a_region + Mux(ex_mblk[0], a_half, 0)
        acc_base = Mux(ex_blk[0], acc_half, 0)
        with m.If(ex_go):
            m.d.sync += [ex_on.eq(1), ex_m0.eq(0), ex_n0.eq(0), ex_blk.eq(0), ex_mblk.eq(0),
                         ex_u.eq(0), ex_k0.eq(0), ex_kt.eq(0), ex_a_off.eq(0), ex_mt.eq(0)]

        ready_a = a_blocks_loaded > ex_mblk
        ready_d = ~p.has_d | (d_loaded > ex_blk)
        ready_b = b_loaded > ex_u
        half_free = (ex_blk < 2) | (st_blocks + 1 >= ex_blk)
        m.d.comb += [cmd.dataflow.eq(p.os), cmd.b_addr.eq((ex_u & slot_mask) * bslot),
                     cmd.n_valid.eq(ex_nval),
                     cmd.accumulate.eq(p.has_d | ~ex_first_k)]

        def next_chunk():
            m.d.sync += [ex_u.eq(ex_u + 1), ex_mt.eq(0)]
            with m.If(ex_last_k):
                m.next = "DRAIN"
            with m.Else():
                m.d.sync += [ex_k0.eq(ex_k0 + kc), ex_kt.eq(ex_kt + 1),
                             ex_a_off.eq(ex_a_off + chunk_a_step)]
                m.next = "CHUNK"

        # Landing timer, started when a block's last COMPUTE has been accepted: when it
        # expires every accumulator write of the block has landed (the core executes commands
        # in order from their acceptance; ``land_lat`` covers its issue-to-memory pipeline).
        # The DRAIN state below may re-arm it in the cycle it expires (its assignment wins).
        land_cnt = Signal(range(MAX_ROWS + 4 * R + land_lat + 1))
        land_pend = Signal()
        land_mlast = Signal()
        with m.If(land_cnt != 0):
            m.d.sync += land_cnt.eq(land_cnt - 1)
        with m.If(land_pend & (land_cnt == 0)):
            m.d.sync += [ex_blocks.eq(ex_blocks + 1), land_pend.eq(0)]
            with m.If(land_mlast):
                m.d.sync += ex_mblocks.eq(ex_mblocks + 1)

        with m.FSM(name="exec"):
            with m.State("CHUNK"):
                with m.If(ex_on):
                    need_block = ex_first_k
                    wait_wr = need_block & ~half_free
                    wait_rd = ~ready_b | (need_block & ~(ready_a & ready_d))
                    with m.If(~wait_wr & ~wait_rd):
                        with m.If(p.os):
                            m.next = "OS"
                        with m.Else():
                            m.next = "PRE"
                    m.d.comb += [ex_stall_wr.eq(wait_wr), ex_stall_rd.eq(~wait_wr & wait_rd)]
            with m.State("PRE"):
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.PRELOAD),
                             cmd.k_valid.eq(ex_kval)]
                with m.If(self.exe.ready):
                    m.d.sync += pre_accepted.eq(pre_accepted + 1)
                    m.next = "WS"
            with m.State("WS"):
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.COMPUTE),
                             cmd.a_addr.eq(a_base + ex_a_off), cmd.acc_addr.eq(acc_base),
                             cmd.rows.eq(ex_mbc), cmd.k_valid.eq(ex_kval)]
                with m.If(self.exe.ready):
                    if self._serialize:
                        m.next = "SER"
                    else:
                        next_chunk()
            with m.State("SER"):
                with m.If(ex_guard != 0):
                    m.d.sync += ex_guard.eq(ex_guard - 1)
                with m.Elif(self.core_idle):
                    next_chunk()
            with m.State("OS"):
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.COMPUTE),
                             cmd.a_addr.eq(a_base + ex_a_off + ex_mt), cmd.a_stride.eq(mb),
                             cmd.acc_addr.eq(acc_base + ex_mt), cmd.rows.eq(ex_kval),
                             cmd.k_valid.eq(_min(ex_mbc - ex_mt, R))]
                with m.If(self.exe.ready):
                    with m.If(ex_mt == 0):
                        m.d.sync += os_started.eq(os_started + 1)
                    with m.If(ex_mt + R >= ex_mbc):
                        next_chunk()
                    with m.Else():
                        m.d.sync += ex_mt.eq(ex_mt + R)
            with m.State("DRAIN"):
                # The block's last COMPUTE has been accepted: start its landing timer and go
                # on with the next block at once (one timer: a block shorter than the landing
                # time waits here for the previous block's timer).
                with m.If(~land_pend | (land_cnt == 0)):
                    m.d.sync += [land_pend.eq(1), land_mlast.eq(ex_last_n),
                                 land_cnt.eq(Mux(p.os, ex_kval + (2 * R + land_lat),
                                                 ex_mbc + land_lat)),
                                 ex_blk.eq(ex_blk + 1), ex_k0.eq(0), ex_kt.eq(0),
                                 ex_a_off.eq(0)]
                    with m.If(ex_last_n):
                        m.d.sync += [ex_n0.eq(0), ex_m0.eq(ex_m0 + mb), ex_mblk.eq(ex_mblk + 1)]
                        with m.If(ex_last_m):
                            m.d.sync += ex_on.eq(0)
                    with m.Else():
                        m.d.sync += ex_n0.eq(ex_n0 + C)
                    m.next = "CHUNK"
        with m.If(self.exe.valid & self.exe.ready):
            m.d.sync += ex_guard.eq(3)

        # ---------------- writer (mvout) -------------------------------------------------------
        st_m0, st_n0, st_mbc, st_nval, st_last_n, st_last_m = geometry("st")
        st_on = Signal()
        st_blk = Signal(32)
        st_wait = Signal()
        st_c_blk = Signal(AW)
        st_c_cur = Signal(AW)
        with m.If(st_go):
            m.d.sync += [st_on.eq(1), st_m0.eq(0), st_n0.eq(0), st_blk.eq(0), st_wait.eq(0),
                         st_c_blk.eq(p.c), st_c_cur.eq(p.c)]
        wc = self.wr_cmd.payload
        m.d.comb += [
            self.wr_cmd.valid.eq(st_on & ~st_wait & (ex_blocks > st_blk)),
            wc.mem_addr.eq(st_c_cur), wc.mem_stride.eq(p.ldc), wc.rows.eq(st_mbc),
            wc.elems.eq(st_nval), wc.acc_addr.eq(Mux(st_blk[0], acc_half, 0)), wc.acc_step.eq(1),
            wc.mode.eq(p.out_int8), wc.scale.eq(p.scale), wc.shift.eq(p.shift),
            wc.relu.eq(p.relu),
        ]
        with m.If(self.wr_cmd.valid & self.wr_cmd.ready):
            m.d.sync += st_wait.eq(1)
        # stalls: the compute engine waits on a DMA read or write, or only the last mvouts run
        m.d.comb += [self.stall_rd.eq(ex_stall_rd),
                     self.stall_wr.eq(ex_stall_wr | (st_on & ~ex_on))]
        m.d.comb += st_fin.eq(0)
        with m.If(st_wait & self.wr_done):
            m.d.sync += [st_wait.eq(0), st_blocks.eq(st_blocks + 1), st_blk.eq(st_blk + 1)]
            with m.If(st_last_n):
                nc = st_c_blk + mb_ldc
                m.d.sync += [st_n0.eq(0), st_m0.eq(st_m0 + mb), st_c_blk.eq(nc), st_c_cur.eq(nc)]
                with m.If(st_last_m):
                    m.d.sync += st_on.eq(0)
                    m.d.comb += st_fin.eq(1)
            with m.Else():
                m.d.sync += [st_n0.eq(st_n0 + C), st_c_cur.eq(st_c_cur + (C << eb_shift))]
        return m
