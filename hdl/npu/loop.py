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

- the core buffers commands (:mod:`.core`: a command starts after it was accepted, when the
  one ahead of it allows), so the tiler counts what the core reports, not what it accepted:
  each command carries a ``tag`` (:data:`XTAG_START`, :data:`XTAG_BLOCK`, :data:`XTAG_MBLOCK`)
  that the core echoes with its ``started`` and ``landed`` pulses;
- the loader issues a B chunk into a slot only when the core has started the commands that
  freed it (WS, S slots: the PRELOAD of chunk u - S + 2 has started, so the slot's previous
  PRELOAD, of chunk u - S, has finished reading; OS: the first COMPUTE of chunk u - 1 has
  started, so every COMPUTE of chunk u - 2 has finished streaming);
- a block is complete when the core reports that its last COMPUTE (tagged
  :data:`XTAG_BLOCK`) has landed in the accumulator. The compute engine does not wait: the
  next block's PRELOAD/COMPUTE follow at once;
- an A block loads into its half when the block two earlier is complete;
- a D block (``+D``) loads and a block computes into an accumulator half only after the block
  two earlier in that half has been written out (``wr_done``);
- the writer starts a block once it is complete.

Timing structure (for Fmax, see ``diestack synth npu --unit control``): the progress counters
are :data:`CNT` bits and compared by their difference modulo 2**CNT (a consumer never passes
its producer and never trails it by more than a few blocks or chunks); every hand-off condition
and both DMA request valids are registers, one cycle behind the counters (safe: a condition
only becomes true later than it could, and an engine ignores it in the cycle after its own
counter moved); the compute engine spends at least two cycles in CHUNK before each chunk; block
geometry (rows of the block, valid columns, K rows of the chunk, last-of flags) is kept in
registers updated from registers (:class:`_Walk`), not derived from m0/n0/k0 each cycle.

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
from .core import exec_cmd_layout, ExecOp, Dataflow, MAX_ROWS, TAG_BITS
from .dma import rd_cmd_layout, wr_cmd_layout

__all__ = ["GemmTiler", "gemm_params_layout", "TAG_A", "TAG_A_LAST", "TAG_B", "TAG_D",
           "XTAG_START", "XTAG_BLOCK", "XTAG_MBLOCK"]

TAG_A, TAG_A_LAST, TAG_B, TAG_D = 0, 1, 2, 3
# Core command tag bits (echoed by the core on ``started``/``landed``, core.py):
XTAG_START = 1    # count at start: a WS PRELOAD, or an OS chunk's first COMPUTE (B slot hand-off)
XTAG_BLOCK = 2    # the last COMPUTE of a (M block, N tile) block: complete when it has landed
XTAG_MBLOCK = 4   # ... and the last block of an M block (its A half may be reloaded)
A_ROWS_LOG2 = 1
A_ROWS_PER_CMD = 1 << A_ROWS_LOG2   # A rows per DMA command: lets B loads slip in between
WS_B_SLOTS_LOG2 = 3         # 8 B slots of R rows in WS (4 when the scratchpad is small)
CNT = 8                     # width of the engines' progress counters (compared modulo 2**CNT)


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


class _Walk:
    """Registered walk over ``total`` items in steps of ``step``: ``cur`` = items in the current
    step (``min(remaining, step)``), ``last`` (remaining <= step), ``first`` (no advance since
    the reset). ``total`` and ``step`` are read (registers) only by ``reset()``/``advance()``,
    which update every output from registers (a subtraction or a comparison each): no chain of
    subtract -> compare -> mux behind the outputs. ``advance()`` after ``last`` leaves the
    outputs undefined until the next ``reset()``.
    """

    def __init__(self, m, name, total, step, width):
        self._m, self._total, self._step = m, total, step
        self.nxt = Signal(width + 1, name=f"{name}_nxt")    # remaining after the current step
        self.cur = Signal(width, name=f"{name}_cur")
        self.last = Signal(name=f"{name}_last")
        self.first = Signal(name=f"{name}_first")
        #: what ``cur`` becomes on ``advance()``
        self.cur_next = Mux(self.nxt <= step, self.nxt, step)

    def reset(self):
        t, st = self._total, self._step
        self._m.d.sync += [self.nxt.eq(t - st), self.cur.eq(Mux(t <= st, t, st)),
                           self.last.eq(t <= st), self.first.eq(1)]

    def advance(self):
        st = self._step
        self._m.d.sync += [self.nxt.eq(self.nxt - st),
                           self.cur.eq(self.cur_next), self.last.eq(self.nxt <= st),
                           self.first.eq(0)]


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
        To the core; ``core_idle``, ``started``/``started_tag`` and ``landed``/``landed_tag``
        (the core's start and landing pulses, :mod:`.core`) come back.
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
            "started": In(1),
            "started_tag": In(TAG_BITS),
            "landed": In(1),
            "landed_tag": In(TAG_BITS),
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
        # Modulo 2**CNT: every comparison is on the difference of two counters whose true
        # difference is small and never negative (a consumer never passes its producer), so
        # a CNT-bit difference decides it (no 32-bit carry chains behind the handshakes).
        # The hand-off conditions are registered (``held``): a condition read one cycle late is
        # safe when the other side only moves towards it (its producer counters only grow), and
        # each engine ignores it in the cycle after its own counter moved (``*_chg``).
        def diff(a, b):
            return (a - b)[:CNT]

        def held(name, cond):
            r = Signal(name=name)
            m.d.sync += r.eq(cond)
            return r

        a_blocks_loaded = Signal(CNT)   # A blocks fully in the scratchpad
        b_loaded = Signal(CNT)          # B chunks in the scratchpad
        d_loaded = Signal(CNT)          # D blocks in the accumulator
        chunks_started = Signal(CNT)    # WS PRELOADs / OS chunks' first COMPUTEs started
        ex_mblocks = Signal(CNT)        # M blocks fully computed
        ex_blocks = Signal(CNT)         # (M block, N tile) blocks fully computed
        st_blocks = Signal(CNT)         # blocks written out

        with m.If(la_go):
            m.d.sync += [a_blocks_loaded.eq(0), b_loaded.eq(0), d_loaded.eq(0),
                         chunks_started.eq(0), ex_mblocks.eq(0),
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
            """Block iteration over M (blocks of mb rows) and N (tiles of C columns)."""
            wm = _Walk(m, f"{prefix}_m", p.m, mb, 16)
            wn = _Walk(m, f"{prefix}_n", p.n, C, 16)
            return wm, wn, wm.cur, wn.cur, wn.last, wm.last

        # ---------------- loader A ------------------------------------------------------------
        la_wm, _, la_mbc, _, _, la_last_m = geometry("la")
        la_left = Signal(13)         # rows of the block not yet requested
        la_blk = Signal(CNT)          # M block index
        la_row = Signal(13)          # next row within the block
        la_local = Signal(SPW)       # its scratchpad row: a_region + (half of la_blk) + la_row
        la_addr = Signal(AW)         # memory address of that row
        la_blk_addr = Signal(AW)
        la_req = Signal()
        la_cmd = Signal(rd_cmd_layout(cfg))
        la_on = Signal()
        with m.If(la_go):
            m.d.sync += [la_on.eq(1), la_blk.eq(0), la_row.eq(0), la_left.eq(_min(p.m, mb)),
                         la_local.eq(a_region),
                         la_addr.eq(p.a), la_blk_addr.eq(p.a)]
            la_wm.reset()
        la_rows = Signal(13)
        la_end = Signal()            # this request ends the block
        m.d.comb += [la_end.eq(la_left <= A_ROWS_PER_CMD),
                     la_rows.eq(Mux(la_end, la_left, A_ROWS_PER_CMD))]
        # la_req is a register: the request of the next cycle, from this cycle's state, dropped
        # for a cycle whenever la_blk / la_on move (or a GEMM starts)
        la_slot_free = diff(la_blk, ex_mblocks) < 2
        m.d.comb += [
            la_cmd.mem_addr.eq(la_addr), la_cmd.mem_stride.eq(p.lda), la_cmd.rows.eq(la_rows),
            la_cmd.row_bytes.eq(p.k), la_cmd.chunk_bytes.eq(R), la_cmd.to_acc.eq(0),
            la_cmd.local_addr.eq(la_local),
            la_cmd.row_step.eq(1), la_cmd.chunk_step.eq(mb),
            la_cmd.tag.eq(Mux(la_end, TAG_A_LAST, TAG_A)),
        ]
        la_fire = Signal()
        m.d.sync += la_req.eq(la_on & la_slot_free & ~la_go & ~(la_fire & la_end))
        with m.If(la_fire):
            with m.If(la_end):
                nb = la_blk_addr + mb_lda
                m.d.sync += [la_row.eq(0), la_blk.eq(la_blk + 1), la_left.eq(la_wm.cur_next),
                             la_local.eq(a_region + Mux(la_blk[0], 0, a_half)),
                             la_blk_addr.eq(nb), la_addr.eq(nb)]
                la_wm.advance()
                with m.If(la_last_m):
                    m.d.sync += la_on.eq(0)
            with m.Else():
                m.d.sync += [la_row.eq(la_row + la_rows), la_left.eq(la_left - A_ROWS_PER_CMD),
                             la_local.eq(la_local + A_ROWS_PER_CMD),
                             la_addr.eq(la_addr + (p.lda << A_ROWS_LOG2))]

        # ---------------- loader B / D --------------------------------------------------------
        lb_wm, lb_wn, lb_mbc, lb_nval, lb_last_n, lb_last_m = geometry("lb")
        lb_wk = _Walk(m, "lb_k", p.k, kc, 16)
        lb_on = Signal()
        lb_blk = Signal(CNT)          # block index j
        lb_u = Signal(CNT)            # B chunk index (global)
        lb_d_done = Signal()         # D of this block issued
        lb_b_n = Signal(AW)          # B address of column n0
        lb_b_cur = Signal(AW)        # B address of the current chunk
        lb_d_blk = Signal(AW)
        lb_d_cur = Signal(AW)
        lb_round0 = Signal()         # the first chunk of every slot is not loaded yet
        lb_slot = Signal(SPW)        # scratchpad row of slot lb_u % S: (lb_u & slot_mask) * bslot
        lb_kval = lb_wk.cur
        lb_last_k = lb_wk.last
        with m.If(lb_go):
            lb_wm.reset(); lb_wn.reset(); lb_wk.reset()
            m.d.sync += [lb_on.eq(1), lb_blk.eq(0), lb_u.eq(0), lb_round0.eq(1), lb_slot.eq(0),
                         lb_d_done.eq(~p.has_d), lb_b_n.eq(p.b), lb_b_cur.eq(p.b),
                         lb_d_blk.eq(p.d), lb_d_cur.eq(p.d)]
        slot_mask = Mux(p.os, 1, (1 << ws_slots_log2) - 1)
        # WS: slot u % S held chunk u - S, whose PRELOAD has finished reading once the PRELOAD
        # of chunk u - S + 1 was accepted; one chunk of margin: PRELOAD u - S + 2 accepted
        ws_slot_free = lb_round0 | (diff(lb_u, chunks_started) <= (1 << ws_slots_log2) - 3)
        # OS: chunk u-1 started => every COMPUTE of chunk u-2 finished streaming its B rows
        # (the core accepts an OS COMPUTE only when the previous one has)
        os_slot_free = lb_round0 | (diff(lb_u, chunks_started) == 0)
        lb_slot_free = Mux(p.os, os_slot_free, ws_slot_free)
        lb_half_free = diff(lb_blk, st_blocks) <= 1
        lb_cmd = Signal(rd_cmd_layout(cfg))
        lb_req = Signal()            # a register, as la_req: dropped for a cycle after a fire
        lb_req_next = Signal()
        lb_is_d = ~lb_d_done
        with m.If(lb_is_d):
            m.d.comb += [
                lb_req_next.eq(lb_on & lb_half_free),
                lb_cmd.mem_addr.eq(lb_d_cur), lb_cmd.mem_stride.eq(p.ldd),
                lb_cmd.rows.eq(lb_mbc), lb_cmd.row_bytes.eq(lb_nval << 2),
                lb_cmd.chunk_bytes.eq(4 * C), lb_cmd.to_acc.eq(1), lb_cmd.accumulate.eq(0),
                lb_cmd.local_addr.eq(Mux(lb_blk[0], acc_half, 0)),
                lb_cmd.row_step.eq(1), lb_cmd.chunk_step.eq(1), lb_cmd.tag.eq(TAG_D),
            ]
        with m.Else():
            m.d.comb += [
                lb_req_next.eq(lb_on & lb_slot_free),
                lb_cmd.mem_addr.eq(lb_b_cur), lb_cmd.mem_stride.eq(p.ldb),
                lb_cmd.rows.eq(lb_kval), lb_cmd.row_bytes.eq(lb_nval),
                lb_cmd.chunk_bytes.eq(C), lb_cmd.to_acc.eq(0),
                lb_cmd.local_addr.eq(lb_slot),
                lb_cmd.row_step.eq(1), lb_cmd.chunk_step.eq(1), lb_cmd.tag.eq(TAG_B),
            ]
        lb_fire = Signal()
        m.d.sync += lb_req.eq(lb_req_next & ~lb_go & ~lb_fire)
        with m.If(lb_fire):
            with m.If(lb_is_d):
                m.d.sync += lb_d_done.eq(1)
            with m.Else():
                m.d.sync += [lb_u.eq(lb_u + 1),
                             lb_slot.eq(Mux((lb_u & slot_mask) == slot_mask, 0, lb_slot + bslot))]
                with m.If((lb_u & slot_mask) == slot_mask):
                    m.d.sync += lb_round0.eq(0)
                with m.If(lb_last_k):
                    # next block
                    lb_wk.reset()
                    m.d.sync += [lb_blk.eq(lb_blk + 1), lb_d_done.eq(~p.has_d)]
                    with m.If(lb_last_n):
                        nd = lb_d_blk + mb_ldd
                        lb_wn.reset(); lb_wm.advance()
                        m.d.sync += [lb_b_n.eq(p.b),
                                     lb_b_cur.eq(p.b), lb_d_blk.eq(nd), lb_d_cur.eq(nd)]
                        with m.If(lb_last_m):
                            m.d.sync += lb_on.eq(0)
                    with m.Else():
                        lb_wn.advance()
                        m.d.sync += [lb_b_n.eq(lb_b_n + C),
                                     lb_b_cur.eq(lb_b_n + C), lb_d_cur.eq(lb_d_cur + 4 * C)]
                with m.Else():
                    lb_wk.advance()
                    m.d.sync += lb_b_cur.eq(lb_b_cur + kc_ldb)

        # B/D first, A in the gaps
        m.d.comb += [lb_fire.eq(lb_req & self.rd_cmd.ready),
                     la_fire.eq(la_req & ~lb_req & self.rd_cmd.ready),
                     self.rd_cmd.valid.eq(lb_req | la_req),
                     self.rd_cmd.payload.eq(Mux(lb_req, lb_cmd.as_value(), la_cmd.as_value()))]

        # ---------------- compute engine -------------------------------------------------------
        ex_wm, ex_wn, ex_mbc, ex_nval, ex_last_n, ex_last_m = geometry("ex")
        ex_wk = _Walk(m, "ex_k", p.k, kc, 16)
        ex_wg = _Walk(m, "ex_g", ex_mbc, R, 13)     # OS: R-row groups of the block
        ex_on = Signal()
        ex_blk = Signal(CNT)
        ex_mblk = Signal(CNT)
        ex_u = Signal(CNT)
        ex_kt = Signal(16)            # K chunk index within the block
        ex_a_off = Signal(SPW + 4)    # kt * chunk_a_step
        ex_mt = Signal(13)            # OS: row offset of the R-row group
        ex_guard = Signal(2)
        ex_stall_rd = Signal()
        ex_stall_wr = Signal()
        ex_slot = Signal(SPW)        # (ex_u & slot_mask) * bslot
        ex_kval = ex_wk.cur
        ex_last_k = ex_wk.last
        ex_first_k = ex_wk.first
        cmd = self.exe.payload
        # a_base + ex_a_off, registered: it is read in PRE/WS/OS, which follow at least two
        # cycles in CHUNK, where its operands do not move
        ex_a = Signal(SPW + 4)
        m.d.sync += ex_a.eq(a_region + Mux(ex_mblk[0], a_half, 0) + ex_a_off)
        acc_base = Mux(ex_blk[0], acc_half, 0)
        with m.If(ex_go):
            ex_wm.reset(); ex_wn.reset(); ex_wk.reset()
            m.d.sync += [ex_on.eq(1), ex_blk.eq(0), ex_mblk.eq(0), ex_slot.eq(0),
                         ex_u.eq(0), ex_kt.eq(0), ex_a_off.eq(0), ex_mt.eq(0)]

        # read in CHUNK only after a settling cycle (ex_u/ex_blk/ex_mblk move in the other states)
        ready_a = held("ready_a", diff(a_blocks_loaded, ex_mblk) != 0)
        ready_d = held("ready_d", ~p.has_d | (diff(d_loaded, ex_blk) != 0))
        ready_b = held("ready_b", diff(b_loaded, ex_u) != 0)
        half_free = held("half_free", diff(ex_blk, st_blocks) <= 1)
        ex_settled = Signal()

        def cmd_common():
            # Assigned in each state that drives the payload, not once outside the FSM: yosys
            # then writes these fields into the FSM's ``always @*`` block. Alone, each became an
            # ``always @*`` of its own that Icarus never ran when its input did not change after
            # time 0 (ex_slot stays 0 for the first chunk): X on b_addr and accumulate.
            m.d.comb += [cmd.dataflow.eq(p.os), cmd.b_addr.eq(ex_slot),
                         cmd.n_valid.eq(ex_nval),
                         cmd.accumulate.eq(p.has_d | ~ex_first_k)]

        def next_chunk():
            m.d.sync += [ex_u.eq(ex_u + 1), ex_mt.eq(0),
                         ex_slot.eq(Mux((ex_u & slot_mask) == slot_mask, 0, ex_slot + bslot))]
            with m.If(ex_last_k):
                m.next = "DRAIN"
            with m.Else():
                ex_wk.advance()
                m.d.sync += [ex_kt.eq(ex_kt + 1), ex_a_off.eq(ex_a_off + chunk_a_step)]
                m.next = "CHUNK"

        # Started / landed pulses from the core (tags set below); la_go clears the counters.
        with m.If(~la_go):
            with m.If(self.started & self.started_tag[0]):
                m.d.sync += chunks_started.eq(chunks_started + 1)
            with m.If(self.landed & self.landed_tag[1]):
                m.d.sync += ex_blocks.eq(ex_blocks + 1)
            with m.If(self.landed & self.landed_tag[2]):
                m.d.sync += ex_mblocks.eq(ex_mblocks + 1)

        with m.FSM(name="exec"):
            with m.State("CHUNK"):
                with m.If(ex_on & ~ex_settled):
                    m.d.sync += ex_settled.eq(1)
                with m.If(ex_on & ex_settled):
                    need_block = ex_first_k
                    wait_wr = need_block & ~half_free
                    wait_rd = ~ready_b | (need_block & ~(ready_a & ready_d))
                    with m.If(~wait_wr & ~wait_rd):
                        m.d.sync += ex_settled.eq(0)
                        with m.If(p.os):
                            ex_wg.reset()
                            m.next = "OS"
                        with m.Else():
                            m.next = "PRE"
                    m.d.comb += [ex_stall_wr.eq(wait_wr), ex_stall_rd.eq(~wait_wr & wait_rd)]
            with m.State("PRE"):
                cmd_common()
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.PRELOAD),
                             cmd.k_valid.eq(ex_kval), cmd.tag.eq(XTAG_START)]
                with m.If(self.exe.ready):
                    m.next = "WS"
            with m.State("WS"):
                cmd_common()
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.COMPUTE),
                             cmd.a_addr.eq(ex_a), cmd.acc_addr.eq(acc_base),
                             cmd.rows.eq(ex_mbc), cmd.k_valid.eq(ex_kval),
                             cmd.tag.eq(Mux(ex_last_k, Mux(ex_last_n, XTAG_BLOCK | XTAG_MBLOCK,
                                                               XTAG_BLOCK), 0))]
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
                cmd_common()
                m.d.comb += [self.exe.valid.eq(1), cmd.op.eq(ExecOp.COMPUTE),
                             cmd.a_addr.eq(ex_a + ex_mt), cmd.a_stride.eq(mb),
                             cmd.acc_addr.eq(acc_base + ex_mt), cmd.rows.eq(ex_kval),
                             cmd.k_valid.eq(ex_wg.cur)]
                os_last = ex_wg.last & ex_last_k
                m.d.comb += cmd.tag.eq(Cat(ex_wg.first, os_last, os_last & ex_last_n))
                with m.If(self.exe.ready):
                    ex_wg.advance()
                    with m.If(ex_wg.last):
                        next_chunk()
                    with m.Else():
                        m.d.sync += ex_mt.eq(ex_mt + R)
            with m.State("DRAIN"):
                # The block's last COMPUTE (tagged XTAG_BLOCK) has been accepted: go on with
                # the next block at once (its completion comes back as a landed pulse).
                ex_wk.reset()
                m.d.sync += [ex_blk.eq(ex_blk + 1), ex_kt.eq(0), ex_a_off.eq(0)]
                with m.If(ex_last_n):
                    ex_wn.reset(); ex_wm.advance()
                    m.d.sync += ex_mblk.eq(ex_mblk + 1)
                    with m.If(ex_last_m):
                        m.d.sync += ex_on.eq(0)
                with m.Else():
                    ex_wn.advance()
                m.next = "CHUNK"
        with m.If(self.exe.valid & self.exe.ready):
            m.d.sync += ex_guard.eq(3)

        # ---------------- writer (mvout) -------------------------------------------------------
        st_wm, st_wn, st_mbc, st_nval, st_last_n, st_last_m = geometry("st")
        st_on = Signal()
        st_blk = Signal(CNT)
        st_wait = Signal()
        st_c_blk = Signal(AW)
        st_c_cur = Signal(AW)
        st_chg = Signal()            # st_blk moved last cycle (or a GEMM started)
        m.d.sync += st_chg.eq(st_go | (st_wait & self.wr_done))
        with m.If(st_go):
            st_wm.reset(); st_wn.reset()
            m.d.sync += [st_on.eq(1), st_blk.eq(0), st_wait.eq(0),
                         st_c_blk.eq(p.c), st_c_cur.eq(p.c)]
        wc = self.wr_cmd.payload
        m.d.comb += [
            self.wr_cmd.valid.eq(st_on & ~st_wait & ~st_chg
                                 & held("st_ready", diff(ex_blocks, st_blk) != 0)),
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
                st_wn.reset(); st_wm.advance()
                m.d.sync += [st_c_blk.eq(nc), st_c_cur.eq(nc)]
                with m.If(st_last_m):
                    m.d.sync += st_on.eq(0)
                    m.d.comb += st_fin.eq(1)
            with m.Else():
                st_wn.advance()
                m.d.sync += st_c_cur.eq(st_c_cur + (C << eb_shift))
        return m
