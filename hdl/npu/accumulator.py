"""int32 accumulator memory with accumulate-or-overwrite row writes (pipelined read-modify-write)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import NPUConfig

__all__ = ["Accumulator"]


class Accumulator(wiring.Component):
    """``cfg.acc_rows`` rows of C int32 lanes in ``cfg.acc_banks`` banks (bank = addr % banks).

    Write side: one request per cycle, always accepted (``w_valid``, no ready). Lane j is written
    only where ``w_mask[j]`` is set: with ``w_acc`` = 1 it becomes ``stored + w_data[j]``
    (int32 wrap-around), with ``w_acc`` = 0 it becomes ``w_data[j]``. The read-modify-write is a
    3-stage pipeline (input register, memory read, add + write); a request is visible to
    ``r_*`` reads issued 3 cycles after it was presented (``busy`` is high while any is in
    flight). Back-to-back requests to the same row (distance 1 or 2) are correct: the adder takes
    the row from the two previous writes (per lane, respecting their masks) instead of the stale
    memory output.

    Read side: ``r_en``/``r_addr`` -> ``r_data`` the next cycle (holds while ``r_en`` is low).
    ``hazard`` is high when a write to ``r_addr`` is still in the pipeline (the read would return
    the old value).

    Members
    -------
    w_valid, w_acc : In(1); w_addr : In(acc_addr_width); w_data : In(Array(signed(32), C));
    w_mask : In(C)
    r_en : In(1); r_addr : In(acc_addr_width); r_data : Out(Array(signed(32), C))
    hazard, busy : Out(1)
    """

    def __init__(self, cfg):
        if not isinstance(cfg, NPUConfig):
            raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")
        self._cfg = cfg
        aw, c = cfg.acc_addr_width, cfg.cols
        row = data.ArrayLayout(signed(32), c)
        super().__init__({
            "w_valid": In(1), "w_acc": In(1), "w_addr": In(aw), "w_data": In(row), "w_mask": In(c),
            "r_en": In(1), "r_addr": In(aw), "r_data": Out(row),
            "hazard": Out(1), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg = self._cfg
        C, aw = cfg.cols, cfg.acc_addr_width
        row = data.ArrayLayout(signed(32), C)
        stage = data.StructLayout({"valid": 1, "acc": 1, "addr": aw, "data": row, "mask": C})

        nbanks = cfg.acc_banks
        bbits = (nbanks - 1).bit_length()
        wps, rmw_ports, out_ports = [], [], []
        for k in range(nbanks):
            mem = Memory(shape=32 * C, depth=cfg.acc_rows_per_bank, init=[])
            m.submodules[f"bank{k}"] = mem
            wps.append(mem.write_port(granularity=32))
            rmw_ports.append(mem.read_port())
            out_ports.append(mem.read_port())

        s0 = Signal(stage)
        s1 = Signal(stage)
        s2 = Signal(stage)
        s2_old = Signal(row)
        s2_f1 = Signal(C)        # per lane: take the row written one cycle ago
        s2_f2 = Signal(C)        # per lane: take the row written two cycles ago
        last1 = Signal(stage)    # what s2 wrote last cycle (data = written values)
        last2 = Signal(stage)

        m.d.sync += [
            s0.valid.eq(self.w_valid), s0.acc.eq(self.w_acc), s0.addr.eq(self.w_addr),
            s0.data.eq(self.w_data), s0.mask.eq(self.w_mask),
            s1.eq(s0), s2.eq(s1),
        ]

        def bank_of(addr):
            return addr[:bbits] if bbits else 0

        def row_of(addr):
            return addr[bbits:]

        # Stage 0: read the stored row.
        for k in range(nbanks):
            m.d.comb += [rmw_ports[k].addr.eq(row_of(s0.addr)), rmw_ports[k].en.eq(1)]
        s1_bank = Signal(max(bbits, 1))
        m.d.sync += s1_bank.eq(bank_of(s0.addr))
        rmw_data = Signal(row)
        if bbits:
            with m.Switch(s1_bank):
                for k in range(nbanks):
                    with m.Case(k):
                        m.d.comb += rmw_data.eq(rmw_ports[k].data)
        else:
            m.d.comb += rmw_data.eq(rmw_ports[0].data)

        # Stage 1: register the stored row; decide forwarding (addresses compared one stage early).
        hit1 = s2.valid & (s2.addr == s1.addr)
        hit2 = last1.valid & (last1.addr == s1.addr)
        m.d.sync += [
            s2_old.eq(rmw_data),
            s2_f1.eq(s2.mask & hit1.replicate(C)),
            s2_f2.eq(last1.mask & hit2.replicate(C)),
        ]

        # Stage 2: add and write.
        new = Signal(row)
        for j in range(C):
            old = Mux(s2_f1[j], last1.data[j], Mux(s2_f2[j], last2.data[j], s2_old[j]))
            m.d.comb += new[j].eq(Mux(s2.acc, old + s2.data[j], s2.data[j]))
        for k in range(nbanks):
            sel = (bank_of(s2.addr) == k) if bbits else 1
            m.d.comb += [
                wps[k].addr.eq(row_of(s2.addr)), wps[k].data.eq(new),
                wps[k].en.eq(s2.mask & (s2.valid & sel).replicate(C)),
            ]
        m.d.sync += [
            last1.valid.eq(s2.valid), last1.addr.eq(s2.addr), last1.mask.eq(s2.mask),
            last1.data.eq(new), last1.acc.eq(0),
            last2.eq(last1),
        ]

        # Read side.
        for k in range(nbanks):
            m.d.comb += [out_ports[k].addr.eq(row_of(self.r_addr)), out_ports[k].en.eq(self.r_en)]
        if bbits:
            r_bank = Signal(bbits)
            with m.If(self.r_en):
                m.d.sync += r_bank.eq(bank_of(self.r_addr))
            with m.Switch(r_bank):
                for k in range(nbanks):
                    with m.Case(k):
                        m.d.comb += self.r_data.eq(out_ports[k].data)
        else:
            m.d.comb += self.r_data.eq(out_ports[0].data)

        m.d.comb += [
            self.hazard.eq((s0.valid & (s0.addr == self.r_addr)) | (s1.valid & (s1.addr == self.r_addr))
                           | (s2.valid & (s2.addr == self.r_addr))),
            self.busy.eq(s0.valid | s1.valid | s2.valid),
        ]
        return m
