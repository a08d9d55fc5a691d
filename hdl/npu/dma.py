"""NPU DMA: an AXI4 master moving 2-D strided blocks between external memory and the core.

Read side (mvin): external memory -> scratchpad rows (``sp_w``) or accumulator rows (``acc_w``).
Write side (mvout): accumulator rows (``acc_rd_req``/``acc_rd``, int32 or requantized int8) ->
external memory.

Transfers
---------
A read command moves ``rows`` memory rows of ``row_bytes`` bytes each; row *r* starts at byte
address ``mem_addr + r * mem_stride``. Each memory row is cut into chunks of ``chunk_bytes``
bytes; chunk *c* of row *r* becomes local row ``local_addr + r * row_step + c * chunk_step``
(scratchpad when ``to_acc`` = 0, accumulator when 1). The last chunk of a row is zero-filled
beyond the row's valid bytes, so edges of a tile read as zero. Scratchpad rows are written whole
(mask all ones). Accumulator rows are written with ``accumulate`` (1 add, 0 overwrite); the
``chunk_bytes`` for the accumulator is 4*C and int32 lane *j* is memory bytes ``[4j, 4j+4)``,
little endian.

A write command moves ``rows`` accumulator rows (``acc_addr + r * acc_step``) to memory rows at
``mem_addr + r * mem_stride``, ``elems`` elements per row (int32, 4 bytes each, in ``mode`` 0;
int8 in ``mode`` 1, requantized by the core with ``scale``/``shift``/``relu``). Bytes beyond the
row are not written (``wstrb`` low), so partial rows and unaligned rows never disturb memory
around them.

Alignment rule: any byte address and any stride work on both sides (bursts start at the aligned
word below the row and the data is byte-shifted); int32 data (accumulator mvin) needs rows of a
multiple of 4 bytes, which the element size gives. Unaligned rows cost one extra beat.

AXI behaviour
-------------
- INCR bursts of full-width beats (``arsize = awsize = log2(bytes per beat)``), each at most 256
  beats and never crossing a 4 KiB boundary. One row is one or more bursts (a row is never merged
  with the next one).
- Reads: all reads use ID 0, so the subordinate returns them in order; up to
  ``max_reads_in_flight`` read bursts are outstanding. The address issuer takes 2 cycles per
  row that is one burst (align and size, then AR), one more per further burst of a row. Commands are pipelined: the address
  issuer moves on to the next command while the data of the previous one still arrives.
- Writes: ID 0, one burst's AW and W issued together; a write command completes (``wr_done``)
  when every B response of it has arrived.
- Responses other than OKAY set the sticky ``error`` output.

Back-pressure: ``rready`` drops while the core does not accept ``sp_w``/``acc_w``; ``wvalid``
waits for ``acc_rd``. Throughput: one beat per cycle when rows are aligned and the chunk size is
at least the beat size; a beat straddling a chunk boundary takes one more cycle. Latency: a
chunk's local write is offered (``sp_w``/``acc_w`` valid) 3 cycles after the beat completing
it was accepted (placement control, byte shift, merge: one pipeline stage each).
"""

from amaranth.hdl import Elaboratable, Module, Signal, Cat, Const, Mux, unsigned, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..common.axi import AXI4Signature, BURST_INCR, RESP_OKAY
from .config import NPUConfig
from .core import (sp_write_layout, acc_write_layout, acc_read_req_layout,
                   acc_read_resp_layout)

__all__ = ["Dma", "rd_cmd_layout", "wr_cmd_layout", "TAG_WIDTH"]

#: Width of the tag a read command carries to its completion pulse (``rd_done_tag``).
TAG_WIDTH = 2
LOCAL_WIDTH = 16


def rd_cmd_layout(cfg):
    """Read (mvin) command: see the module docstring."""
    aw = cfg.axi_addr_width
    return data.StructLayout({
        "mem_addr": unsigned(aw),
        "mem_stride": unsigned(aw),
        "rows": unsigned(16),          # 1..65535
        "row_bytes": unsigned(16),     # 1..65535
        "chunk_bytes": unsigned(max(cfg.sp_row_bytes, cfg.acc_row_bytes).bit_length()),
        "to_acc": unsigned(1),
        "accumulate": unsigned(1),
        "local_addr": unsigned(LOCAL_WIDTH),
        "row_step": unsigned(LOCAL_WIDTH),
        "chunk_step": unsigned(LOCAL_WIDTH),
        "tag": unsigned(TAG_WIDTH),
    })


def wr_cmd_layout(cfg):
    """Write (mvout) command: see the module docstring."""
    aw = cfg.axi_addr_width
    return data.StructLayout({
        "mem_addr": unsigned(aw),
        "mem_stride": unsigned(aw),
        "rows": unsigned(16),
        "elems": unsigned(cfg.cols.bit_length()),   # 1..C
        "acc_addr": unsigned(LOCAL_WIDTH),
        "acc_step": unsigned(LOCAL_WIDTH),
        "mode": unsigned(1),
        "scale": signed(32),
        "shift": unsigned(6),
        "relu": unsigned(1),
    })


def _min(a, b):
    return Mux(a < b, a, b)


class Dma(wiring.Component):
    """AXI4 DMA master of the NPU (module docstring: transfers, alignment, AXI rules).

    Parameters
    ----------
    cfg : NPUConfig

    Members
    -------
    rd_cmd : In(stream of rd_cmd_layout)
        Read commands; accepted while the address issuer is free and the data-side queue
        (4 deep) has room.
    rd_done : Out(1), rd_done_tag : Out(TAG_WIDTH)
        One-cycle pulse when the last row of a read command has been accepted by the core, with
        the command's tag. Commands complete in order.
    wr_cmd : In(stream of wr_cmd_layout)
        Write commands; one at a time (accepted when the previous one completed).
    wr_done : Out(1)
        One-cycle pulse when all B responses of a write command arrived.
    rd_busy, wr_busy : Out(1)
        A read / write command is in progress (for stall accounting).
    error : Out(1)
        Sticky: an AXI response was not OKAY.
    m_axi : Out(AXI4Signature)
    sp_w, acc_w, acc_rd_req : Out(stream); acc_rd : In(stream)
        Core ports (layouts from :mod:`.core`).
    """

    def __init__(self, cfg):
        if not isinstance(cfg, NPUConfig):
            raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
        self._cfg = cfg
        super().__init__({
            "rd_cmd": In(stream.Signature(rd_cmd_layout(cfg))),
            "rd_done": Out(1),
            "rd_done_tag": Out(TAG_WIDTH),
            "wr_cmd": In(stream.Signature(wr_cmd_layout(cfg))),
            "wr_done": Out(1),
            "rd_busy": Out(1),
            "wr_busy": Out(1),
            "error": Out(1),
            "m_axi": Out(AXI4Signature(addr_width=cfg.axi_addr_width,
                                       data_width=cfg.axi_data_width,
                                       id_width=cfg.axi_id_width)),
            "sp_w": Out(stream.Signature(sp_write_layout(cfg))),
            "acc_w": Out(stream.Signature(acc_write_layout(cfg))),
            "acc_rd_req": Out(stream.Signature(acc_read_req_layout(cfg))),
            "acc_rd": In(stream.Signature(acc_read_resp_layout(cfg))),
        })

    @property
    def cfg(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        axi = self.m_axi
        W = cfg.axi_bytes
        LW = W.bit_length() - 1
        AW = cfg.axi_addr_width
        CHMAX = max(cfg.sp_row_bytes, cfg.acc_row_bytes)
        C = cfg.cols

        m.d.comb += [
            axi.arid.eq(0), axi.arsize.eq(LW), axi.arburst.eq(BURST_INCR),
            axi.awid.eq(0), axi.awsize.eq(LW), axi.awburst.eq(BURST_INCR),
            axi.bready.eq(1),
        ]
        with m.If((axi.rvalid & axi.rready & (axi.rresp != RESP_OKAY))
                  | (axi.bvalid & (axi.bresp != RESP_OKAY))):
            m.d.sync += self.error.eq(1)

        # =========================== read: address issuer =====================================
        rlay = rd_cmd_layout(cfg)
        dq = SyncFIFOBuffered(width=rlay.size, depth=4)   # commands for the data side
        m.submodules.dq = dq

        ar_busy = Signal()
        ar_addr = Signal(AW)        # byte address of the current row
        ar_stride = Signal(AW)
        ar_rows = Signal(16)        # rows left, including the current one
        ar_rbytes = Signal(16)
        ar_cur = Signal(AW)         # aligned address of the next burst
        ar_beats = Signal(17)       # beats left in the current row
        ar_rowstart = Signal()
        ar_blen = Signal(range(257))  # beats of the next burst (computed in a cycle of its own)
        ar_bok = Signal()           # ar_blen is valid for ar_cur/ar_beats
        # bursts in flight = issued - completed, two free-running counters (the completion,
        # behind rready, only enables a counter: no adder after it)
        cw = (2 * cfg.max_reads_in_flight).bit_length()
        ar_issued = Signal(cw)
        r_completed = Signal(cw)
        inflight = Signal(cw)

        m.d.comb += self.rd_cmd.ready.eq(~ar_busy & dq.w_rdy)
        m.d.comb += [dq.w_data.eq(self.rd_cmd.payload.as_value()),
                     dq.w_en.eq(self.rd_cmd.valid & self.rd_cmd.ready)]
        with m.If(self.rd_cmd.valid & self.rd_cmd.ready):
            p = self.rd_cmd.payload
            m.d.sync += [ar_busy.eq(1), ar_addr.eq(p.mem_addr), ar_stride.eq(p.mem_stride),
                         ar_rows.eq(p.rows), ar_rbytes.eq(p.row_bytes), ar_rowstart.eq(1)]

        to4k = Signal(range(4096 // W + 1))
        m.d.comb += to4k.eq((4096 - ar_cur[:12]) >> LW)
        blen = Signal(range(257))
        m.d.comb += blen.eq(_min(_min(ar_beats, 256), to4k))

        ar_fire = axi.arvalid & axi.arready
        r_last_fire = axi.rvalid & axi.rready & axi.rlast
        with m.If(ar_fire):
            m.d.sync += ar_issued.eq(ar_issued + 1)
        with m.If(r_last_fire):
            m.d.sync += r_completed.eq(r_completed + 1)
        m.d.comb += inflight.eq(ar_issued - r_completed)

        # per row: one cycle to align the row and size its first burst, then the burst's AR
        # (2 cycles per one-burst row: B rows of one beat need that rate); a later burst of the
        # same row is sized in a cycle of its own
        row_beats = Signal.like(ar_beats)
        row_4k = Signal(range(4096 // W + 1))
        m.d.comb += [row_beats.eq((ar_addr[:LW] + ar_rbytes + (W - 1)) >> LW),
                     row_4k.eq((4096 - Cat(Const(0, LW), ar_addr[LW:12])) >> LW)]
        with m.If(ar_busy & ar_rowstart):
            m.d.sync += [
                ar_cur.eq(Cat(Const(0, LW), ar_addr[LW:])),
                ar_beats.eq(row_beats),
                ar_blen.eq(_min(_min(row_beats, 256), row_4k)),
                ar_rowstart.eq(0), ar_bok.eq(1),
            ]
        with m.Elif(ar_busy & ~ar_bok):
            m.d.sync += [ar_blen.eq(blen), ar_bok.eq(1)]
        with m.Elif(ar_busy):
            m.d.comb += [axi.arvalid.eq(inflight < cfg.max_reads_in_flight),
                         axi.araddr.eq(ar_cur), axi.arlen.eq(ar_blen - 1)]
            with m.If(ar_fire):
                m.d.sync += [ar_cur.eq(ar_cur + (ar_blen << LW)), ar_beats.eq(ar_beats - ar_blen),
                             ar_bok.eq(0)]
                with m.If(ar_beats == ar_blen):
                    m.d.sync += [ar_addr.eq(ar_addr + ar_stride), ar_rows.eq(ar_rows - 1),
                                 ar_rowstart.eq(1)]
                    with m.If(ar_rows == 1):
                        m.d.sync += ar_busy.eq(0)

        # =========================== read: data side ===========================================
        # Three stages, all advancing together when the output register is free (``adv``):
        #   P: the byte-placement control (a loop on small registers): how many bytes ``n`` of
        #      the current beat go into the chunk, where the beat and the chunk continue;
        #      registers the beat and the decision into stage 1;
        #   1: shift the beat down by its start byte and zero bytes >= n -> stage 2;
        #   2: place those bytes at the chunk's fill offset, OR them into the chunk; a
        #      completed chunk goes to the output register (sp_w / acc_w).
        # (One stage did all of it: 18.6 ns on ECP5, nextpnr; see flows/npu.py synth --unit dma.)
        dc = Signal(rlay)            # current command on the data side
        d_busy = Signal()
        d_addr = Signal(AW)          # byte address of the current row
        d_rows = Signal(16)
        d_rem = Signal(16)           # bytes of the row not yet placed
        d_lo = Signal(LW + 1)        # next byte of the current beat
        d_avail = Signal(LW + 1)     # bytes left in the current beat (W - d_lo)
        d_f = Signal(range(CHMAX + 1))  # bytes already in the chunk
        d_space = Signal(range(CHMAX + 1))  # bytes the chunk still takes (chunk_bytes - d_f)
        d_row_local = Signal(LOCAL_WIDTH)
        d_chunk_local = Signal(LOCAL_WIDTH)

        o_valid = Signal()
        o_acc = Signal()
        o_accum = Signal()
        o_addr = Signal(LOCAL_WIDTH)
        o_data = Signal(8 * CHMAX)
        o_last = Signal()
        o_tag = Signal(TAG_WIDTH)

        m.d.comb += dq.r_en.eq(~d_busy & dq.r_rdy)
        with m.If(~d_busy & dq.r_rdy):
            c = rlay(dq.r_data)
            m.d.sync += [dc.eq(c), d_busy.eq(1), d_addr.eq(c.mem_addr), d_rows.eq(c.rows),
                         d_rem.eq(c.row_bytes), d_lo.eq(c.mem_addr[:LW]), d_f.eq(0),
                         d_avail.eq(W - c.mem_addr[:LW]),
                         d_space.eq(c.chunk_bytes),
                         d_row_local.eq(c.local_addr), d_chunk_local.eq(c.local_addr)]

        o_ready = Mux(o_acc, self.acc_w.ready, self.sp_w.ready)
        adv = Signal()
        m.d.comb += adv.eq(~o_valid | o_ready)
        with m.If(o_valid & o_ready):
            m.d.sync += o_valid.eq(0)
        m.d.comb += [
            self.sp_w.valid.eq(o_valid & ~o_acc),
            self.sp_w.payload.addr.eq(o_addr),
            self.sp_w.payload.data.eq(o_data),
            self.sp_w.payload.mask.eq(Const(-1, cfg.sp_row_bytes)),
            self.acc_w.valid.eq(o_valid & o_acc),
            self.acc_w.payload.addr.eq(o_addr),
            self.acc_w.payload.data.eq(o_data),
            self.acc_w.payload.accumulate.eq(o_accum),
            self.rd_done.eq(o_valid & o_ready & o_last),
            self.rd_done_tag.eq(o_tag),
        ]

        # ---- stage P: control ----
        # n = min(avail, space, rem) from three comparisons side by side
        avail = d_avail
        space = d_space
        rem_big = Signal()           # d_rem >= 2W (more than any n)
        rem_lo = d_rem[:LW + 1]
        n = Signal(LW + 1)
        m.d.comb += rem_big.eq(d_rem[LW + 1:] != 0)
        row_end = Signal()           # the row's last bytes: n = rem
        beat_full = Signal()         # the rest of the beat fits: n = avail
        chunk_full = Signal()        # the chunk fills up: n = space
        m.d.comb += [row_end.eq(~rem_big & (rem_lo <= avail) & (rem_lo <= space)),
                     beat_full.eq((avail <= space) & (rem_big | (avail <= rem_lo))),
                     chunk_full.eq((space <= avail) & (rem_big | (space <= rem_lo))),
                     n.eq(Mux(row_end, rem_lo, Mux(beat_full, avail, space)))]
        # The updates below use the operand n equals in each case (no subtraction after n):
        # no chunk end -> n = avail; row goes on after a used-up beat -> n = avail; beat goes
        # on -> n = space.
        beat_used = beat_full | row_end
        chunk_end = chunk_full | row_end
        step = d_busy & axi.rvalid & adv
        m.d.comb += axi.rready.eq(step & beat_used)

        # stage 1 registers: the beat and where its bytes go
        s1 = data.StructLayout({"valid": 1, "lo": LW + 1, "n": LW + 1, "f": range(CHMAX + 1),
                                "end": 1, "acc": 1, "accum": 1, "addr": LOCAL_WIDTH,
                                "last": 1, "tag": TAG_WIDTH})
        p1 = Signal(s1)
        p1_data = Signal(8 * W)
        p2 = Signal(s1)
        p2_bytes = Signal(8 * W)
        d_ch = Signal(8 * CHMAX)     # chunk being assembled (bytes >= the fill are zero)
        with m.If(adv):
            m.d.sync += [p1.valid.eq(step), p1_data.eq(axi.rdata), p1.lo.eq(d_lo), p1.n.eq(n),
                         p1.f.eq(d_f), p1.end.eq(chunk_end), p1.acc.eq(dc.to_acc),
                         p1.accum.eq(dc.accumulate), p1.addr.eq(d_chunk_local),
                         p1.last.eq(row_end & (d_rows == 1)), p1.tag.eq(dc.tag)]

        with m.If(step):
            with m.If(chunk_end):
                m.d.sync += [d_f.eq(0), d_space.eq(dc.chunk_bytes),
                             d_chunk_local.eq(d_chunk_local + dc.chunk_step)]
            with m.Else():
                m.d.sync += [d_f.eq(d_f + avail), d_space.eq(d_space - avail)]
            with m.If(row_end):
                nxt = d_addr + dc.mem_stride
                m.d.sync += [d_addr.eq(nxt), d_rows.eq(d_rows - 1), d_rem.eq(dc.row_bytes),
                             d_lo.eq(nxt[:LW]), d_avail.eq(W - nxt[:LW]),
                             d_row_local.eq(d_row_local + dc.row_step),
                             d_chunk_local.eq(d_row_local + dc.row_step)]
                with m.If(d_rows == 1):
                    m.d.sync += d_busy.eq(0)
            with m.Elif(beat_used):
                m.d.sync += [d_lo.eq(0), d_avail.eq(W), d_rem.eq(d_rem - avail)]
            with m.Else():
                m.d.sync += [d_lo.eq(d_lo + space), d_avail.eq(avail - space),
                             d_rem.eq(d_rem - space)]

        # ---- stage 1: shift the beat down and keep its first n bytes ----
        shifted = Signal(8 * W)
        m.d.comb += shifted.eq(p1_data >> (p1.lo << 3))
        keep = Cat(*[Mux(i < p1.n, shifted[8 * i:8 * i + 8], 0) for i in range(W)])
        with m.If(adv):
            m.d.sync += [p2.eq(p1), p2_bytes.eq(keep)]

        # ---- stage 2: place at the fill offset, complete the chunk ----
        ch_next = Signal(8 * CHMAX)
        m.d.comb += ch_next.eq(d_ch | (p2_bytes << (p2.f << 3)))
        with m.If(adv & p2.valid):
            with m.If(p2.end):
                m.d.sync += [o_valid.eq(1), o_acc.eq(p2.acc), o_accum.eq(p2.accum),
                             o_addr.eq(p2.addr), o_data.eq(ch_next), o_tag.eq(p2.tag),
                             o_last.eq(p2.last), d_ch.eq(0)]
            with m.Else():
                m.d.sync += d_ch.eq(ch_next)

        m.d.comb += self.rd_busy.eq(ar_busy | d_busy | p1.valid | p2.valid | o_valid | dq.r_rdy)

        # =========================== write (mvout) =============================================
        wlay = wr_cmd_layout(cfg)
        wc = Signal(wlay)
        w_busy = Signal()
        req_rows = Signal(16)
        req_addr = Signal(LOCAL_WIDTH)
        credits = Signal(range(5))       # acc_rd requests outstanding
        row_addr = Signal(AW)
        rows_left = Signal(16)
        SHW = CHMAX + W                   # bytes of the shifted row register
        sh = Signal(8 * SHW)
        mk = Signal(SHW)
        w_cur = Signal(AW)
        w_beats = Signal(range(SHW // W + 2))
        bcnt = Signal(9)
        aw_done = Signal()
        in_row = Signal()
        drain = Signal()
        bursts = Signal(16)               # bursts issued minus B responses received

        m.d.comb += self.wr_cmd.ready.eq(~w_busy)
        with m.If(self.wr_cmd.valid & ~w_busy):
            p = self.wr_cmd.payload
            m.d.sync += [wc.eq(p), w_busy.eq(1), req_rows.eq(p.rows), req_addr.eq(p.acc_addr),
                         row_addr.eq(p.mem_addr), rows_left.eq(p.rows), in_row.eq(0),
                         drain.eq(0)]

        # accumulator read requests, at most 4 outstanding
        req_fire = self.acc_rd_req.valid & self.acc_rd_req.ready
        resp_fire = self.acc_rd.valid & self.acc_rd.ready
        m.d.sync += credits.eq(credits + req_fire - resp_fire)
        m.d.comb += [
            self.acc_rd_req.valid.eq(w_busy & (req_rows != 0) & (credits < 4)),
            self.acc_rd_req.payload.addr.eq(req_addr),
            self.acc_rd_req.payload.mode.eq(wc.mode),
            self.acc_rd_req.payload.scale.eq(wc.scale),
            self.acc_rd_req.payload.shift.eq(wc.shift),
            self.acc_rd_req.payload.relu.eq(wc.relu),
        ]
        with m.If(req_fire):
            m.d.sync += [req_rows.eq(req_rows - 1), req_addr.eq(req_addr + wc.acc_step)]

        # one row: shift into place, then bursts of beats with strobes
        o = row_addr[:LW]
        nbytes = Signal(range(4 * C + 1))
        m.d.comb += nbytes.eq(Mux(wc.mode, wc.elems, wc.elems << 2))
        m.d.comb += self.acc_rd.ready.eq(w_busy & ~in_row & ~drain)
        # A row is at most SHW // W + 1 beats (< 256): a burst is cut only at a 4 KiB boundary,
        # so a row is one burst, or two with the second starting at the boundary. ``wblen``
        # (beats of the current burst) is a register: set with the row, then the remainder.
        wblen = Signal(range(257))
        row_beats = Signal.like(w_beats)
        m.d.comb += row_beats.eq((o + nbytes + (W - 1)) >> LW)
        first = Signal.like(wblen)
        k = (SHW // W + 1).bit_length()
        if LW + k < 12:
            # beats to the boundary, when fewer than 2**k (else the row fits): from the low bits
            near = row_addr[LW + k:12].all()
            to4k = Signal(k + 1)
            m.d.comb += to4k.eq((1 << k) - row_addr[LW:LW + k])
            m.d.comb += first.eq(Mux(near & (to4k < row_beats), to4k, row_beats))
        else:
            w4k = Signal(range(4096 // W + 1))
            m.d.comb += w4k.eq((4096 - Cat(Const(0, LW), row_addr[LW:12])) >> LW)
            m.d.comb += first.eq(_min(row_beats, w4k))
        with m.If(resp_fire):
            m.d.sync += [
                sh.eq(self.acc_rd.payload.data << (o << 3)),
                mk.eq(Cat(*[(o <= i) & (i < o + nbytes) for i in range(SHW)])),
                w_cur.eq(Cat(Const(0, LW), row_addr[LW:])),
                w_beats.eq(row_beats), wblen.eq(first),
                bcnt.eq(0), aw_done.eq(0), in_row.eq(1),
            ]
        aw_fire = axi.awvalid & axi.awready
        w_fire = axi.wvalid & axi.wready
        last_beat = bcnt == wblen - 1
        m.d.comb += [
            axi.awvalid.eq(in_row & ~aw_done),
            axi.awaddr.eq(w_cur),
            axi.awlen.eq(wblen - 1),
            axi.wvalid.eq(in_row & (bcnt != wblen)),
            axi.wdata.eq(sh[:8 * W]),
            axi.wstrb.eq(mk[:W]),
            axi.wlast.eq(last_beat),
        ]
        with m.If(aw_fire):
            m.d.sync += aw_done.eq(1)
        with m.If(w_fire):
            m.d.sync += [sh.eq(sh >> (8 * W)), mk.eq(mk >> W), bcnt.eq(bcnt + 1)]
        burst_end = in_row & (aw_done | aw_fire) & ((bcnt == wblen) | (w_fire & last_beat))
        b_fire = axi.bvalid & axi.bready
        m.d.sync += bursts.eq(bursts + burst_end - b_fire)
        with m.If(burst_end):
            m.d.sync += [w_cur.eq(w_cur + (wblen << LW)), w_beats.eq(w_beats - wblen),
                         wblen.eq(w_beats - wblen), bcnt.eq(0), aw_done.eq(0)]
            with m.If(w_beats == wblen):
                m.d.sync += [in_row.eq(0), row_addr.eq(row_addr + wc.mem_stride),
                             rows_left.eq(rows_left - 1)]
                with m.If(rows_left == 1):
                    m.d.sync += drain.eq(1)
        with m.If(drain & (bursts == 0)):
            m.d.sync += [drain.eq(0), w_busy.eq(0)]
            m.d.comb += self.wr_done.eq(1)
        m.d.comb += self.wr_busy.eq(w_busy)
        return m
