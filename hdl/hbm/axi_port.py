"""AXI4 subordinate (slave) port in front of one HBM controller's native port.

- Data width = one burst (``bytes_per_burst`` x 8 = 256 bits for every preset): every AXI beat
  is one native request. ``AxSIZE`` must be the full width; INCR bursts of 1..256 beats (FIXED and
  WRAP are served as INCR). Beat ``k`` of a burst addresses ``(AxADDR & ~(bytes-1)) + k*bytes``.
- IDs: reads are returned in the order their bursts were accepted (which keeps the AXI rule:
  in order per ID); write responses likewise. ``RRESP``/``BRESP`` are OKAY, or SLVERR for a read
  beat with an uncorrectable ECC error.
- Writes are posted: ``BVALID`` follows the acceptance of the last beat by the controller, whose
  hazard check orders later requests to the same burst after it.
- One write burst and one read burst are split into beats at a time; when both have a beat ready
  the port alternates between them. Up to ``outstanding`` read bursts and write responses may be
  pending.

Latency: AR/AW accepted in cycle 0, first beat offered to the controller in cycle 1. R data leave
in the cycle the controller presents them (combinational from ``resp``).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..common.axi import AXI4Signature, RESP_OKAY, RESP_SLVERR
from ..common.params import check_int
from .native_port import NativeRequestSignature, NativeResponseSignature

__all__ = ["AXIPort"]


class AXIPort(wiring.Component):
    """AXI4 slave -> native request/response (see module docstring).

    Members
    -------
    s_axi : In(AXI4Signature)
        The subordinate port.
    req : Out(NativeRequestSignature)
        To the controller.
    resp : Out(NativeResponseSignature)
        From the controller (read data, in request order).
    """

    def __init__(self, *, addr_width, data_width=256, id_width=4, native_addr_width=None,
                 outstanding=16):
        self._aw = check_int("addr_width", addr_width, lo=12, hi=64)
        self._dw = data_width
        self._iw = id_width
        self._nw = native_addr_width or addr_width
        self._out = check_int("outstanding", outstanding, lo=2, hi=256)
        super().__init__({
            "s_axi": In(AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)),
            "req": Out(NativeRequestSignature(addr_width=self._nw, data_width=data_width)),
            "resp": Out(NativeResponseSignature(data_width=data_width)),
        })

    def elaborate(self, platform):
        m = Module()
        a = self.s_axi
        nbytes = self._dw // 8
        shift = (nbytes - 1).bit_length()

        # ---- write address / data ----
        w_active = Signal()
        w_addr = Signal(self._aw)
        w_id = Signal(self._iw)
        m.submodules.bfifo = bfifo = SyncFIFOBuffered(width=self._iw, depth=self._out)
        m.d.comb += a.awready.eq(~w_active)
        with m.If(a.awvalid & a.awready):
            m.d.sync += [w_active.eq(1), w_addr.eq(a.awaddr >> shift << shift), w_id.eq(a.awid)]

        # ---- read address ----
        r_active = Signal()
        r_addr = Signal(self._aw)
        r_left = Signal(8)
        m.submodules.rfifo = rfifo = SyncFIFOBuffered(width=self._iw + 8, depth=self._out)
        m.d.comb += a.arready.eq(~r_active & rfifo.w_rdy)
        m.d.comb += [rfifo.w_data.eq(a.arid | (a.arlen << self._iw)),
                     rfifo.w_en.eq(a.arvalid & a.arready)]
        with m.If(a.arvalid & a.arready):
            m.d.sync += [r_active.eq(1), r_addr.eq(a.araddr >> shift << shift), r_left.eq(a.arlen)]

        # ---- arbitration of beats into the native port ----
        w_can = w_active & a.wvalid & (~a.wlast | bfifo.w_rdy)
        r_can = r_active
        prefer_w = Signal()
        pick_w = w_can & (~r_can | prefer_w)
        pick_r = r_can & ~pick_w
        q = self.req
        m.d.comb += [
            q.valid.eq(pick_w | pick_r), q.we.eq(pick_w),
            q.addr.eq(Mux(pick_w, w_addr, r_addr)[:self._nw]),
            q.wdata.eq(a.wdata), q.wstrb.eq(Mux(pick_w, a.wstrb, 0)),
            a.wready.eq(pick_w & q.ready),
        ]
        with m.If(q.valid & q.ready):
            m.d.sync += prefer_w.eq(~pick_w)
        with m.If(pick_w & q.ready):
            m.d.sync += w_addr.eq(w_addr + nbytes)
            with m.If(a.wlast):
                m.d.sync += w_active.eq(0)
        m.d.comb += [bfifo.w_data.eq(w_id), bfifo.w_en.eq(pick_w & q.ready & a.wlast)]
        with m.If(pick_r & q.ready):
            m.d.sync += [r_addr.eq(r_addr + nbytes), r_left.eq(r_left - 1)]
            with m.If(r_left == 0):
                m.d.sync += r_active.eq(0)

        # ---- write response ----
        m.d.comb += [a.bvalid.eq(bfifo.r_rdy), a.bid.eq(bfifo.r_data), a.bresp.eq(RESP_OKAY),
                     bfifo.r_en.eq(a.bready)]

        # ---- read data ----
        r_beat = Signal(8)
        head_id = rfifo.r_data[:self._iw]
        head_len = rfifo.r_data[self._iw:]
        p = self.resp
        m.d.comb += [a.rvalid.eq(p.valid & rfifo.r_rdy), a.rid.eq(head_id), a.rdata.eq(p.rdata),
                     a.rresp.eq(Mux(p.err, RESP_SLVERR, RESP_OKAY)),
                     a.rlast.eq(r_beat == head_len), p.ready.eq(a.rready & rfifo.r_rdy)]
        with m.If(a.rvalid & a.rready):
            with m.If(r_beat == head_len):
                m.d.sync += r_beat.eq(0)
            with m.Else():
                m.d.sync += r_beat.eq(r_beat + 1)
        m.d.comb += rfifo.r_en.eq(a.rvalid & a.rready & (r_beat == head_len))
        return m
