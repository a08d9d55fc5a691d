"""AXI4 subordinate (slave) port in front of one HBM controller's native port.

- Data width = one burst (``bytes_per_burst`` x 8 = 256 bits for every preset): every AXI beat
  is one native request (unless write combining merges it), at the burst (32 B) that holds the
  beat's address.
- Bursts follow the AXI4 address rules (AMBA AXI and ACE Protocol Specification, IHI 0022, A3.4.1
  "Address structure": the pseudo-code for Address_N, Aligned_Address, Wrap_Boundary and the byte
  lanes):

  - ``AxSIZE`` 0..log2(bus bytes): ``2**AxSIZE`` bytes per beat (narrow when below the bus width);
  - INCR: beat 1 at ``AxADDR``, beat N > 1 at ``Aligned_Address + (N-1) * 2**AxSIZE``;
  - FIXED: every beat at ``AxADDR``;
  - WRAP: as INCR, but the address wraps at the ``2**AxSIZE * (AxLEN+1)`` window that holds
    ``AxADDR`` (``AxLEN+1`` in 2, 4, 8, 16; ``AxADDR`` aligned to the size).
  - Write byte lanes: a beat writes only the lanes of its address (``Address_N mod bus bytes`` up
    to the end of its ``2**AxSIZE`` container): ``WSTRB`` is ANDed with them, so strobes a manager
    raises outside the beat's lanes are ignored (A3.4.3: they must be low). Sparse strobes inside
    the lanes are honoured byte by byte.
  - Read data: every beat returns the whole 32 B burst that holds its address; the lanes of a
    narrow beat are therefore the right bytes (A3.4.3), the others are don't care.

- Illegal bursts get SLVERR and leave memory unchanged: ``AxSIZE`` wider than the bus, ``AxBURST``
  = 3 (reserved), WRAP with a length other than 2/4/8/16 beats or an address not aligned to the
  size. Their write beats are consumed without reaching the controller (``BRESP`` SLVERR); their
  read beats are served as the addresses above (the controller reads them) with ``RRESP`` SLVERR on
  every beat.
- IDs: reads are returned in the order their bursts were accepted (which keeps the AXI rule:
  in order per ID); write responses likewise. ``RRESP`` is OKAY, or SLVERR for a read beat with an
  uncorrectable ECC error (or an illegal burst).
- Writes are posted: ``BVALID`` follows the acceptance of the last beat by the controller, whose
  hazard check orders later requests to the same burst after it.
- Write combining (``combine=True``, used with ECC): consecutive write beats of one burst that
  fall in the same 32 B native burst (a narrow INCR, FIXED or WRAP burst) are gathered byte by
  byte into one native write, sent when the next beat leaves that 32 B, after the last beat, or
  when no beat is waiting. Narrow beats that together cover whole 64-bit words then need no ECC
  read-modify-write. It adds one cycle to a write beat's way into the controller; full-width
  beats still flow at one per cycle. Without it every beat is one native request.
- One write burst and one read burst are split into beats at a time; when both have a beat ready
  the port alternates between them. Up to ``outstanding`` read bursts and write responses may be
  pending.

Latency: AR/AW accepted in cycle 0, first beat offered to the controller in cycle 1 (a write beat
one cycle later with combining). R data leave
in the cycle the controller presents them (combinational from ``resp``).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..common.axi import (AXI4Signature, BURST_FIXED, BURST_WRAP, RESP_OKAY, RESP_SLVERR)
from ..common.params import check_int
from .native_port import NativeRequestSignature, NativeResponseSignature

__all__ = ["AXIPort"]


class _Beats:
    """Address state of one burst being split into beats (A3.4.1)."""

    def __init__(self, m, name, addr_width, lanes_log2):
        self.addr = Signal(addr_width, name=f"{name}_addr")
        self.size = Signal(3, name=f"{name}_size")
        self.burst = Signal(2, name=f"{name}_burst")
        self.len = Signal(8, name=f"{name}_len")
        self._lg = lanes_log2
        # Number_Bytes, Aligned_Address and the WRAP window mask (all full-width, unsigned)
        self.nbytes = Signal(8, name=f"{name}_nbytes")
        amask = Signal(addr_width, name=f"{name}_amask")
        self.aligned = Signal(addr_width, name=f"{name}_aligned")
        wmask = Signal(addr_width, name=f"{name}_wmask")
        incr = Signal(addr_width, name=f"{name}_incr")
        self.next = Signal(addr_width, name=f"{name}_next")
        m.d.comb += [
            self.nbytes.eq(Const(1, 8) << self.size),
            amask.eq(self.nbytes - 1),
            self.aligned.eq(self.addr & ~amask),
            wmask.eq(((self.len + 1) << self.size) - 1),
            incr.eq(self.aligned + self.nbytes),
            # FIXED repeats the address; INCR steps from the aligned address; WRAP steps inside
            # the Number_Bytes x Burst_Length window that holds the start address
            self.next.eq(Mux(self.burst == BURST_FIXED, self.addr,
                             Mux(self.burst == BURST_WRAP, (self.addr & ~wmask) | (incr & wmask),
                                 incr))),
        ]
        # byte lanes of the current beat: Lower_Byte_Lane .. Upper_Byte_Lane
        lg = lanes_log2
        lo = self.addr[:lg]
        hi = Signal(lg + 1, name=f"{name}_hi")       # exclusive upper lane
        self.lanes = Signal(1 << lg, name=f"{name}_lanes")
        m.d.comb += [hi.eq(self.aligned[:lg] + self.nbytes),
                     self.lanes.eq(Cat(*[(lo <= j) & (j < hi) for j in range(1 << lg)]))]

    def load(self, addr, size, burst, length):
        return [self.addr.eq(addr), self.size.eq(size), self.burst.eq(burst), self.len.eq(length)]


def _illegal(size, burst, length, addr, lanes_log2):
    """A3.4.1 restrictions a subordinate can check: size within the bus, burst not reserved,
    WRAP of 2/4/8/16 beats starting at an address aligned to the size."""
    wrap_len_ok = (length == 1) | (length == 3) | (length == 7) | (length == 15)
    low = addr[:8]
    unaligned = ((low >> size) << size)[:8] != low
    return ((size > lanes_log2) | (burst == 3)
            | ((burst == BURST_WRAP) & (~wrap_len_ok | unaligned)))


class AXIPort(wiring.Component):
    """AXI4 slave -> native request/response (see module docstring).

    Parameters
    ----------
    addr_width : int
        AXI address bits (12..64).
    data_width : int
        AXI data bits = the controller's burst (256 for every HBM preset).
    id_width : int
        AXI ID bits.
    native_addr_width : int, optional
        Address bits of the native port (default ``addr_width``).
    outstanding : int
        Read bursts and write responses that may be pending (2..256).
    combine : bool
        Write combining (module docstring); ``hdl/hbm/top.py`` turns it on with ECC.

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
                 outstanding=16, combine=False):
        self._aw = check_int("addr_width", addr_width, lo=12, hi=64)
        self._dw = check_int("data_width", data_width, choices=(32, 64, 128, 256, 512, 1024))
        self._iw = check_int("id_width", id_width, lo=1, hi=16)
        self._nw = check_int("native_addr_width", native_addr_width or addr_width, lo=1,
                             hi=addr_width)
        self._out = check_int("outstanding", outstanding, lo=2, hi=256)
        if not isinstance(combine, bool):
            raise TypeError(f"combine must be a bool, not {combine!r}")
        self._combine = combine
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
        w_err = Signal()
        w_id = Signal(self._iw)
        wb = _Beats(m, "wb", self._aw, shift)
        m.submodules.bfifo = bfifo = SyncFIFOBuffered(width=self._iw + 1, depth=self._out)
        m.d.comb += a.awready.eq(~w_active)
        with m.If(a.awvalid & a.awready):
            m.d.sync += wb.load(a.awaddr, a.awsize, a.awburst, a.awlen)
            m.d.sync += [w_active.eq(1), w_id.eq(a.awid),
                         w_err.eq(_illegal(a.awsize, a.awburst, a.awlen, a.awaddr, shift))]

        # ---- read address ----
        r_active = Signal()
        r_left = Signal(8)
        rb = _Beats(m, "rb", self._aw, shift)
        m.submodules.rfifo = rfifo = SyncFIFOBuffered(width=self._iw + 9, depth=self._out)
        m.d.comb += a.arready.eq(~r_active & rfifo.w_rdy)
        m.d.comb += [rfifo.w_data.eq(Cat(a.arid, a.arlen,
                                         _illegal(a.arsize, a.arburst, a.arlen, a.araddr, shift))),
                     rfifo.w_en.eq(a.arvalid & a.arready)]
        with m.If(a.arvalid & a.arready):
            m.d.sync += rb.load(a.araddr, a.arsize, a.arburst, a.arlen)
            m.d.sync += [r_active.eq(1), r_left.eq(a.arlen)]

        # ---- arbitration of beats into the native port ----
        q = self.req
        r_can = r_active
        prefer_w = Signal()
        beat_strb = a.wstrb & wb.lanes
        beat_addr = wb.addr >> shift << shift
        if not self._combine:
            w_room = ~a.wlast | bfifo.w_rdy
            w_sink = w_active & w_err & a.wvalid & w_room  # illegal burst: consume, no request
            w_can = w_active & ~w_err & a.wvalid & w_room
            pick_w = w_can & (~r_can | prefer_w)
            m.d.comb += [q.addr.eq(Mux(pick_w, beat_addr, rb.addr >> shift << shift)[:self._nw]),
                         q.wdata.eq(a.wdata), q.wstrb.eq(Mux(pick_w, beat_strb, 0)),
                         a.wready.eq((pick_w & q.ready) | w_sink)]
            w_beat = (pick_w & q.ready) | w_sink
            m.d.comb += [bfifo.w_data.eq(Cat(w_id, w_err)), bfifo.w_en.eq(w_beat & a.wlast)]
        else:
            # write combining: beats of one burst that arrive back to back gather in one
            # register (byte by byte, later beats win) and go to the controller as one request
            c_valid, c_last = Signal(), Signal()
            c_addr = Signal(self._aw)
            c_data = Signal(self._dw)
            c_strb = Signal(nbytes)
            c_id = Signal(self._iw)
            beat_ok = w_active & ~w_err & a.wvalid
            same = c_valid & ~c_last & (beat_addr == c_addr)
            # send the gathered request unless the beat on the bus joins it
            w_can = c_valid & ~(beat_ok & same) & (~c_last | bfifo.w_rdy)
            pick_w = w_can & (~r_can | prefer_w)
            flushed = pick_w & q.ready
            take = beat_ok & (~c_valid | same | flushed)
            w_sink = w_active & w_err & a.wvalid & ~c_valid & (~a.wlast | bfifo.w_rdy)
            m.d.comb += [q.addr.eq(Mux(pick_w, c_addr, rb.addr >> shift << shift)[:self._nw]),
                         q.wdata.eq(c_data), q.wstrb.eq(Mux(pick_w, c_strb, 0)),
                         a.wready.eq(take | w_sink)]
            w_beat = take | w_sink
            with m.If(take):
                m.d.sync += [c_valid.eq(1), c_last.eq(a.wlast)]
                with m.If(same):
                    m.d.sync += [
                        c_data.eq(Cat(*[Mux(beat_strb[j], a.wdata[8 * j:8 * j + 8],
                                            c_data[8 * j:8 * j + 8]) for j in range(nbytes)])),
                        c_strb.eq(c_strb | beat_strb)]
                with m.Else():
                    m.d.sync += [c_data.eq(a.wdata), c_strb.eq(beat_strb), c_addr.eq(beat_addr),
                                 c_id.eq(w_id)]
            with m.Elif(flushed):
                m.d.sync += c_valid.eq(0)
            bpush = flushed & c_last
            m.d.comb += [bfifo.w_data.eq(Mux(bpush, Cat(c_id, 0), Cat(w_id, w_err))),
                         bfifo.w_en.eq(bpush | (w_sink & a.wlast))]
        pick_r = r_can & ~pick_w
        m.d.comb += [q.valid.eq(pick_w | pick_r), q.we.eq(pick_w)]
        with m.If(q.valid & q.ready):
            m.d.sync += prefer_w.eq(~pick_w)
        with m.If(w_beat):
            m.d.sync += wb.addr.eq(wb.next)
            with m.If(a.wlast):
                m.d.sync += w_active.eq(0)
        with m.If(pick_r & q.ready):
            m.d.sync += [rb.addr.eq(rb.next), r_left.eq(r_left - 1)]
            with m.If(r_left == 0):
                m.d.sync += r_active.eq(0)

        # ---- write response ----
        m.d.comb += [a.bvalid.eq(bfifo.r_rdy), a.bid.eq(bfifo.r_data[:self._iw]),
                     a.bresp.eq(Mux(bfifo.r_data[self._iw], RESP_SLVERR, RESP_OKAY)),
                     bfifo.r_en.eq(a.bready)]

        # ---- read data ----
        r_beat = Signal(8)
        head_id = rfifo.r_data[:self._iw]
        head_len = rfifo.r_data[self._iw:self._iw + 8]
        head_err = rfifo.r_data[self._iw + 8]
        p = self.resp
        m.d.comb += [a.rvalid.eq(p.valid & rfifo.r_rdy), a.rid.eq(head_id), a.rdata.eq(p.rdata),
                     a.rresp.eq(Mux(p.err | head_err, RESP_SLVERR, RESP_OKAY)),
                     a.rlast.eq(r_beat == head_len), p.ready.eq(a.rready & rfifo.r_rdy)]
        with m.If(a.rvalid & a.rready):
            with m.If(r_beat == head_len):
                m.d.sync += r_beat.eq(0)
            with m.Else():
                m.d.sync += r_beat.eq(r_beat + 1)
        m.d.comb += rfifo.r_en.eq(a.rvalid & a.rready & (r_beat == head_len))
        return m
