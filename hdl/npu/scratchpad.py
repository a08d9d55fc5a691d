"""Banked int8 scratchpad: one masked row write and two row reads (A and B) every cycle."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import NPUConfig

__all__ = ["Scratchpad"]


class Scratchpad(wiring.Component):
    """``cfg.sp_banks`` banks of :class:`amaranth.lib.memory.Memory`; bank = ``addr % banks``.

    Each bank has one byte-masked write port and two synchronous read ports, so the array can
    read an A row (``ra``) and a B row (``rb``) in the same cycle while the DMA writes (``w``):
    the three never wait on each other. Read latency: 2 cycles (``ra_data`` is valid two cycles
    after ``ra_en``/``ra_addr``, straight from a register behind each bank, for Fmax; the data
    holds only for one cycle). A read of the row written in the same cycle returns the old
    contents (non-transparent).

    Members
    -------
    w_en : In(1); w_addr : In(sp_addr_width); w_data : In(8*sp_row_bytes); w_mask : In(sp_row_bytes)
    ra_en, rb_en : In(1); ra_addr, rb_addr : In(sp_addr_width)
    ra_data, rb_data : Out(8*sp_row_bytes)
    """

    def __init__(self, cfg):
        if not isinstance(cfg, NPUConfig):
            raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
        self._cfg = cfg
        aw, nb = cfg.sp_addr_width, cfg.sp_row_bytes
        super().__init__({
            "w_en": In(1), "w_addr": In(aw), "w_data": In(8 * nb), "w_mask": In(nb),
            "ra_en": In(1), "ra_addr": In(aw), "ra_data": Out(8 * nb),
            "rb_en": In(1), "rb_addr": In(aw), "rb_data": Out(8 * nb),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        nbanks = cfg.sp_banks
        bbits = (nbanks - 1).bit_length()
        width = 8 * cfg.sp_row_bytes
        ports_a, ports_b = [], []
        for k in range(nbanks):
            mem = Memory(shape=width, depth=cfg.sp_rows_per_bank, init=[])
            m.submodules[f"bank{k}"] = mem
            wp = mem.write_port(granularity=8)
            ra = mem.read_port()
            rb = mem.read_port()
            sel_w = (self.w_addr[:bbits] == k) if bbits else 1
            m.d.comb += [
                wp.addr.eq(self.w_addr[bbits:]), wp.data.eq(self.w_data),
                wp.en.eq(self.w_mask & (self.w_en & sel_w).replicate(cfg.sp_row_bytes)),
                ra.addr.eq(self.ra_addr[bbits:]), ra.en.eq(self.ra_en),
                rb.addr.eq(self.rb_addr[bbits:]), rb.en.eq(self.rb_en),
            ]
            ports_a.append(ra)
            ports_b.append(rb)
        # Each bank's read data is registered straight out of the memory (the BRAM output
        # register); the bank select follows two cycles behind the address.
        qa = [Signal(width, name=f"qa{k}") for k in range(nbanks)]
        qb = [Signal(width, name=f"qb{k}") for k in range(nbanks)]
        m.d.sync += [q.eq(p.data) for q, p in zip(qa + qb, ports_a + ports_b)]
        if bbits:
            bank_a = [Signal(bbits, name=f"bank_a{d}") for d in range(2)]
            bank_b = [Signal(bbits, name=f"bank_b{d}") for d in range(2)]
            with m.If(self.ra_en):
                m.d.sync += bank_a[0].eq(self.ra_addr[:bbits])
            with m.If(self.rb_en):
                m.d.sync += bank_b[0].eq(self.rb_addr[:bbits])
            m.d.sync += [bank_a[1].eq(bank_a[0]), bank_b[1].eq(bank_b[0])]
            with m.Switch(bank_a[1]):
                for k in range(nbanks):
                    with m.Case(k):
                        m.d.comb += self.ra_data.eq(qa[k])
            with m.Switch(bank_b[1]):
                for k in range(nbanks):
                    with m.Case(k):
                        m.d.comb += self.rb_data.eq(qb[k])
        else:
            m.d.comb += [self.ra_data.eq(qa[0]), self.rb_data.eq(qb[0])]
        return m
