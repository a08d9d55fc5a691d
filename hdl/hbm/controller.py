"""HBM pseudo-channel controller: request queue, FR-FCFS scheduler, bank timing, refresh, DFI.

One :class:`HBMController` drives one pseudo-channel (PC). ``hdl/hbm/top.py`` instantiates N of
them behind AXI4 ports.

DFI-style PHY interface (contract with ``sim/hbm/dfi_monitor.py``)
------------------------------------------------------------------
One interface per pseudo-channel; port prefix ``dfi`` (Verilog ``dfi__<name>``; in ``hbm_top`` with
several channels ``ch<N>_dfi__<name>``). The controller clock is the HBM command clock CK: every
cycle below is one CK, and every timing parameter is used in CK as resolved by
``hdl/hbm/timing.py`` (``HBMTiming``). All outputs are registered (they change just after the
rising edge); a command "issued in cycle t" is the one whose ``*_valid`` is high during cycle t,
sampled by the monitor at the rising edge that ends cycle t.

Row command bus (at most one row command per cycle):

- ``row_valid`` (1): a row command this cycle.
- ``row_cmd`` (3): 1 = ACT, 2 = PRE (one bank), 3 = PREA (all banks of the PC, every SID),
  4 = REFab (all banks of the PC, every SID), 5 = REFpb (one bank: HBM2 REFSB / HBM3 REFpb).
- ``row_sid`` (max(1, log2 SIDs)), ``row_bg`` (log2 bank groups), ``row_ba`` (log2 banks per
  group): the bank, for ACT, PRE and REFpb; driven 0 (don't care) for PREA and REFab.
- ``row_addr`` (log2 rows): the row, for ACT; 0 otherwise.

Column command bus (at most one column command per cycle; may share a cycle with a row command):

- ``col_valid`` (1), ``col_cmd`` (3): 1 = RD, 2 = WR, 3 = RDA (read, auto-precharge),
  4 = WRA (write, auto-precharge).
- ``col_sid``, ``col_bg``, ``col_ba``: the bank (same widths as on the row bus).
- ``col_addr`` (log2 columns): the column in units of one column access (= one burst of
  ``bytes_per_burst`` bytes, 32 B for every preset).

Write data:

- ``wrdata_en`` (1), ``wrdata`` (8 x bytes per burst; 9/8 of that with ECC),
  ``wrdata_mask`` (one bit per byte of ``wrdata``, 1 = byte masked, not written). The whole burst
  is presented in ONE cycle, exactly ``WL`` cycles after the cycle of its WR/WRA.

Read data (driven by the device model):

- ``rddata_valid`` (1), ``rddata`` (same width as ``wrdata``): the whole burst in ONE cycle,
  exactly ``RL`` cycles after the cycle of its RD/RDA. The controller does not look at
  ``rddata_valid`` for timing (it knows RL); it samples ``rddata`` on that cycle and (debug)
  counts cycles where ``rddata_valid`` disagrees with its expectation.

ECC: with ``ecc=True`` every 64 data bits travel as a 72-bit SECDED codeword (``hdl/hbm/ecc.py``,
layout identical to the golden ``sim/hbm/ecc.py``): burst word ``k`` (k = 0 .. bytes_per_burst/8-1)
occupies ``wrdata[72k : 72k+72]``. The device stores the 72-bit words as data, so a model can flip
stored bits to inject errors. The data mask then works per 72-bit word (9 mask bits per word, all
set or all clear): a word none of whose bytes is strobed is masked; a write whose strobes cover
every byte of the words it touches is encoded and written directly.

Partial ECC words (read-modify-write): a write whose strobes cover only part of some 64-bit word
cannot be encoded (the check bits cover the whole word), so the controller accepts it into an RMW
unit and then (1) enqueues an internal read of the burst (it waits behind any queued write to the
same burst: the scheduler's hazard check), (2) takes the read data, decoded and corrected, (3)
merges the strobed bytes into it, re-encodes and enqueues the write of the touched words. No host
request is accepted from the partial write's acceptance until its merged write is enqueued, so
nothing can slip between the read and the write of the burst; the merged write is ordered after
any queued read of the burst by the same hazard check. Single-bit errors in the old data are
corrected (and counted in ``ecc_corrected``); a touched word whose old value is uncorrectable is
left as stored (masked), so it keeps reading back as uncorrectable (``RRESP`` SLVERR) instead of
being silently re-encoded with wrong bytes; the write's other words are written, and
``ecc_uncorrectable`` counts the event. The internal read uses no reorder-buffer slot: its data go
to the RMW unit only (one more scheduler tag bit marks it). Cost, by construction of the pipeline
(not a measured figure): with the row open and the queue empty, the internal RD is on the DFI two
cycles after the partial write is accepted, its data reach the RMW unit RL + 2 cycles later and the
merged write is enqueued the cycle after, so the port is held for about RL + 5 cycles per partial
write (more when the row must be opened). The AXI port's write combining (``hdl/hbm/axi_port.py``)
turns narrow beats that fill whole words into one full write first. Without ECC, strobes go to the device as ``wrdata_mask``
(byte-exact) and there is no RMW.

Byte order: byte ``j`` of a burst is ``wrdata[8j : 8j+8]`` (without ECC), i.e. the burst is the
little-endian integer of the 32 bytes at byte addresses ``col*32 .. col*32+31`` of the row.
"""

from dataclasses import dataclass

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.params import ConfigError, check_choice, check_int
from . import ecc as ecc_rtl
from .addrmap import AddressMap
from .bank import (COL_RD, COL_RDA, COL_WR, COL_WRA, ROW_ACT, ROW_PRE, ROW_PREA, ROW_REFAB,
                   ROW_REFPB, BankTimers, bits_for)
from .native_port import NativeRequestSignature, NativeResponseSignature
from .refresh import REFRESH_MODES, RefreshTimer
from .scheduler import PAGE_POLICIES, Scheduler
from .timing import HBMTiming

__all__ = ["ControllerConfig", "DFISignature", "HBMController", "STAT_NAMES", "HIST_BUCKETS"]

#: Performance counters (32 bit each) on the ``stat`` port, in this order.
STAT_NAMES = ("cycles", "act", "pre", "prea", "refab", "refpb", "rd", "wr", "rda", "wra",
              "row_hits", "row_misses", "row_conflicts", "bytes", "window_bytes",
              "reads_done", "read_latency_sum", "ecc_corrected", "ecc_uncorrectable")
HIST_BUCKETS = 16


@dataclass(frozen=True)
class ControllerConfig:
    """Configuration of one pseudo-channel controller (validated; errors name the field).

    Parameters
    ----------
    timing : HBMTiming
        Resolved timing (``hdl/hbm/timing.py`` ``resolve``).
    queue_depth : int
        Request queue entries: 16..32 (the issue's range), up to 128 for deep-reordering studies.
    page : str
        ``open``, ``closed`` or ``adaptive`` (see ``hdl/hbm/scheduler.py``).
    hit_cap : int
        Column commands to one open row, while another row of that bank waits, before the
        scheduler closes it (anti-starvation).
    write_high, write_low : int or None
        Write-batching watermarks (queued writes); default 3/4 and 1/4 of the depth.
    refresh : str
        ``allbank`` (REFab, postponable up to 8) or ``perbank`` (REFpb round robin).
    ecc : bool
        SECDED (72, 64) on the DFI data.
    channels : int
        Channels of the whole memory system (address-map channel bits; the controller ignores
        them).
    xor : bool
        Address map: XOR bank bits with low row bits.
    order : tuple or None
        Address-map field order (``hdl/hbm/addrmap.py``); default PC/BG bits low.
    rob_depth, wbuf_depth : int
        Read reorder-buffer and write-data-buffer entries (powers of two, 16..256).
    hist_shift : int
        Read-latency histogram bucket width = 2**hist_shift cycles (16 buckets, last open).
    window_log2 : int
        Bytes-per-window counter window = 2**window_log2 cycles.
    """
    timing: HBMTiming
    queue_depth: int = 32
    page: str = "open"
    hit_cap: int = 16
    write_high: int | None = None
    write_low: int | None = None
    refresh: str = "allbank"
    ecc: bool = False
    channels: int = 1
    xor: bool = False
    order: tuple | None = None
    rob_depth: int = 64
    wbuf_depth: int = 64
    hist_shift: int = 3
    window_log2: int = 10

    def __post_init__(self):
        if not isinstance(self.timing, HBMTiming):
            raise ConfigError("timing", f"must be an HBMTiming (timing.resolve), not {self.timing!r}")
        check_int("queue_depth", self.queue_depth, lo=16, hi=128)
        check_choice("page", self.page, PAGE_POLICIES)
        check_int("hit_cap", self.hit_cap, lo=1, hi=255)
        check_choice("refresh", self.refresh, REFRESH_MODES)
        check_int("channels", self.channels, lo=1, hi=64)
        if self.channels & (self.channels - 1):
            raise ConfigError("channels", f"must be a power of two, not {self.channels}")
        for f in ("rob_depth", "wbuf_depth"):
            v = check_int(f, getattr(self, f), lo=16, hi=512)
            if v & (v - 1):
                raise ConfigError(f, f"must be a power of two, not {v}")
        check_int("hist_shift", self.hist_shift, lo=0, hi=12)
        check_int("window_log2", self.window_log2, lo=4, hi=24)
        if self.write_high is not None:
            check_int("write_high", self.write_high, lo=1, hi=self.queue_depth)
        if self.write_low is not None:
            check_int("write_low", self.write_low, lo=0,
                      hi=(self.write_high or self.queue_depth * 3 // 4) - 1)
        self.addrmap   # validates the order

    @property
    def addrmap(self):
        t = self.timing
        return AddressMap.build(bytes_per_burst=t.bytes_per_burst, channels=self.channels,
                                sids=t.sids, bank_groups=t.bank_groups,
                                banks_per_group=t.banks_per_group, rows=t.rows,
                                columns=t.columns, order=self.order, xor=self.xor)

    @property
    def data_bits(self):
        return self.timing.bytes_per_burst * 8

    @property
    def dfi_data_bits(self):
        return self.data_bits * 9 // 8 if self.ecc else self.data_bits


class DFISignature(wiring.Signature):
    """The DFI-style PHY interface of the module docstring, from the controller's side."""

    def __init__(self, timing, *, ecc=False):
        t = timing
        sb, gb, bb = bits_for(t.sids), bits_for(t.bank_groups), bits_for(t.banks_per_group)
        dw = t.bytes_per_burst * 8 * (9 if ecc else 8) // 8
        self.timing, self.ecc = t, ecc
        super().__init__({
            "row_valid": Out(1), "row_cmd": Out(3), "row_sid": Out(sb), "row_bg": Out(gb),
            "row_ba": Out(bb), "row_addr": Out(bits_for(t.rows)),
            "col_valid": Out(1), "col_cmd": Out(3), "col_sid": Out(sb), "col_bg": Out(gb),
            "col_ba": Out(bb), "col_addr": Out(bits_for(t.columns)),
            "wrdata_en": Out(1), "wrdata": Out(dw), "wrdata_mask": Out(dw // 8),
            "rddata_valid": In(1), "rddata": In(dw),
        })

    def __eq__(self, other):
        return type(other) is type(self) and other.timing == self.timing and other.ecc == self.ecc

    def __hash__(self):
        return hash((type(self), self.timing, self.ecc))


class HBMController(wiring.Component):
    """One pseudo-channel controller: native port in, DFI out, performance counters.

    Members
    -------
    req : In(NativeRequestSignature)
        Burst requests (``hdl/hbm/native_port.py``); back-pressure when the queue is full, when
        the request hits a queued write (or is a write hitting a queued request) to the same
        burst, when no read-reorder / write-data slot is free, or (ECC) while a partial-word
        write's read-modify-write is in progress (module docstring).
    resp : In(NativeResponseSignature)
        Read data in request order.
    dfi : Out(DFISignature)
        PHY interface (module docstring).
    stat : Out
        32-bit counters named in :data:`STAT_NAMES` and ``lat_hist`` (16 x 32 bit): commands by
        type, row hits/misses/conflicts (per request, decided by the request's first column
        command, ``col_first`` of ``hdl/hbm/scheduler.py``; a 64 B request is one queue entry and
        two column commands: the first request served after an ACT is a miss, or a conflict when
        a PRE closed the bank's row for a waiting request; the others are hits), bytes (total
        and in the last complete window), read latency (native
        request accepted to response accepted) sum and histogram, ECC counts.

    Latency: a request accepted in cycle 0 is in the queue in cycle 1, its command is chosen in
    cycle 1 and is on the DFI in cycle 2; read data return RL cycles later, are in the reorder
    buffer one cycle after that and on ``resp`` the next cycle: an unloaded row hit answers
    RL + 4 cycles after the native request is accepted (RL + 5 from the AXI AR handshake through
    ``hdl/hbm/axi_port.py``: 19 cycles at HBM2, RL = 14, measured by ``diestack bench hbm``).
    """

    def __init__(self, config):
        if not isinstance(config, ControllerConfig):
            raise TypeError(f"config must be a ControllerConfig, not {config!r}")
        self._cfg = c = config
        self._map = c.addrmap
        stat = {n: Out(32) for n in STAT_NAMES}
        stat["lat_hist"] = Out(data.ArrayLayout(32, HIST_BUCKETS))
        super().__init__({
            "req": In(NativeRequestSignature(addr_width=self._map.addr_bits, data_width=c.data_bits)),
            "resp": In(NativeResponseSignature(data_width=c.data_bits)),
            "dfi": Out(DFISignature(c.timing, ecc=c.ecc)),
            "stat": Out(wiring.Signature(stat)),
        })

    @property
    def config(self):
        return self._cfg

    @property
    def addrmap(self):
        return self._map

    def elaborate(self, platform):
        m = Module()
        c, t = self._cfg, self._cfg.timing
        nb = t.banks
        bpg, bgs = t.banks_per_group, t.bank_groups
        tag_bits = max(bits_for(c.rob_depth), bits_for(c.wbuf_depth))
        # with ECC one more tag bit marks the internal read of a read-modify-write
        sch_tag_bits = tag_bits + 1 if c.ecc else tag_bits
        m.submodules.banks = banks = BankTimers(t)
        m.submodules.refresh = ref = RefreshTimer(t, mode=c.refresh)
        m.submodules.sched = sch = Scheduler(
            t, depth=c.queue_depth, tag_bits=sch_tag_bits, page=c.page, hit_cap=c.hit_cap,
            write_high=c.write_high, write_low=c.write_low, refresh=c.refresh)

        for name in ("open", "open_row", "act_ok", "pre_ok", "rd_ok", "wr_ok", "refpb_ok",
                     "prea_ok", "refab_ok"):
            m.d.comb += getattr(sch, name).eq(getattr(banks, name))
        m.d.comb += [sch.ref_pending.eq(ref.pending), sch.ref_urgent.eq(ref.urgent),
                     sch.pb_bank.eq(ref.pb_bank), ref.issued.eq(sch.ref_issued)]
        for name in ("row_valid", "row_cmd", "row_bank", "row_addr"):
            m.d.comb += getattr(banks, name).eq(getattr(sch, name))
        for name in ("col_valid", "col_cmd", "col_bank"):
            m.d.comb += getattr(banks, name).eq(getattr(sch, name))

        cycle = Signal(32)
        m.d.sync += cycle.eq(cycle + 1)

        # ---- decode and resources ----
        f = self._map.decode(self.req.addr)
        flat_bank = Cat(f["bank"][:bits_for(bpg)] if bpg > 1 else Const(0, 0),
                        f["bank_group"][:bits_for(bgs)] if bgs > 1 else Const(0, 0),
                        f["sid"][:bits_for(t.sids)] if t.sids > 1 else Const(0, 0))
        # read reorder buffer
        R = c.rob_depth
        rob_head = Signal(bits_for(R) + 1)
        rob_tail = Signal(bits_for(R) + 1)
        rob_free = (rob_tail - rob_head)[:bits_for(R) + 1] < R
        # write data buffer: free bitmap, lowest free slot
        W = c.wbuf_depth
        wfree = Signal(W, init=(1 << W) - 1)
        wslot = Signal(bits_for(W))
        e = Const(0, bits_for(W))
        for i in reversed(range(W)):          # an expression, not a process (Icarus, see scheduler)
            e = Mux(wfree[i], i, e)
        m.d.comb += wslot.eq(e)
        have_slot = Mux(self.req.we, wfree.any(), rob_free)
        host_tag = Mux(self.req.we, wslot, rob_tail[:bits_for(R)])
        if not c.ecc:
            m.d.comb += [
                sch.req_valid.eq(self.req.valid & have_slot),
                sch.req_we.eq(self.req.we), sch.req_bank.eq(flat_bank),
                sch.req_row.eq(f["row"]), sch.req_col.eq(f["column"]),
                sch.req_tag.eq(host_tag),
                self.req.ready.eq(sch.req_ready & have_slot),
            ]
            accept = self.req.valid & self.req.ready
        else:
            # Read-modify-write of partial ECC words (module docstring "ECC"): a write whose
            # strobes cover part of a 64-bit word is accepted into the RMW registers; the RMW
            # then enqueues an internal read of the burst, waits for its (corrected) data, merges
            # the strobed bytes and enqueues the full write. No host request is accepted
            # meanwhile, and the scheduler's same-burst hazard check orders the internal read
            # after every queued write and the write after every queued read of the burst.
            nwords = c.data_bits // 64
            strb = self.req.wstrb
            part = Cat(*[strb[8 * k:8 * k + 8].any() & ~strb[8 * k:8 * k + 8].all()
                         for k in range(nwords)])
            partial = Signal()
            m.d.comb += partial.eq(self.req.we & part.any())
            RMW_IDLE, RMW_RD, RMW_WAIT, RMW_WR = range(4)
            rmw = Signal(2)
            rmw_bank = Signal.like(sch.req_bank)
            rmw_row = Signal.like(sch.req_row)
            rmw_col = Signal.like(sch.req_col)
            rmw_wdata = Signal(c.data_bits)
            rmw_strb = Signal(c.data_bits // 8)
            rmw_old = Signal(c.data_bits)            # corrected data read back
            rmw_unc = Signal(nwords)                  # words with an uncorrectable error
            idle = rmw == RMW_IDLE
            rd_ph, wr_ph = rmw == RMW_RD, rmw == RMW_WR
            sch_acc = sch.req_valid & sch.req_ready
            m.d.comb += [
                sch.req_valid.eq(Mux(rd_ph, 1, Mux(wr_ph, wfree.any(),
                                                   idle & self.req.valid & ~partial & have_slot))),
                sch.req_we.eq(Mux(rd_ph, 0, Mux(wr_ph, 1, self.req.we))),
                sch.req_bank.eq(Mux(idle, flat_bank, rmw_bank)),
                sch.req_row.eq(Mux(idle, f["row"], rmw_row)),
                sch.req_col.eq(Mux(idle, f["column"], rmw_col)),
                sch.req_tag.eq(Mux(rd_ph, Const(1 << tag_bits, sch_tag_bits),
                                   Mux(wr_ph, wslot, host_tag))),
                self.req.ready.eq(idle & Mux(partial, 1, sch.req_ready & have_slot)),
            ]
            accept = self.req.valid & self.req.ready
            with m.If(idle & accept & partial):
                m.d.sync += [rmw.eq(RMW_RD), rmw_bank.eq(flat_bank), rmw_row.eq(f["row"]),
                             rmw_col.eq(f["column"]), rmw_wdata.eq(self.req.wdata),
                             rmw_strb.eq(strb)]
            with m.If(rd_ph & sch_acc):
                m.d.sync += rmw.eq(RMW_WAIT)
            with m.If(wr_ph & sch_acc):
                m.d.sync += rmw.eq(RMW_IDLE)

        # ---- write data buffer ----
        dw, mw = c.dfi_data_bits, c.dfi_data_bits // 8
        m.submodules.wbuf = wbuf = Memory(shape=dw + mw, depth=W, init=[])
        wb_w = wbuf.write_port()
        wb_r = wbuf.read_port()
        if c.ecc:
            # host write of whole words, or the RMW's merged burst: byte j from the write where
            # strobed, else the corrected old byte
            merged = Cat(*[Mux(rmw_strb[j], rmw_wdata[8 * j:8 * j + 8], rmw_old[8 * j:8 * j + 8])
                           for j in range(c.data_bits // 8)])
            enc_in = Signal(c.data_bits)
            m.d.comb += enc_in.eq(Mux(wr_ph, merged, self.req.wdata))
            words, masks = [], []
            for k in range(nwords):
                words.append(ecc_rtl.encode(m, enc_in[64 * k:64 * k + 64], name=f"enc{k}"))
                # a word is left as stored when no byte of it is written, or (RMW) when its old
                # value had an uncorrectable error: it keeps reading back as uncorrectable
                host_skip = ~strb[8 * k:8 * k + 8].any()
                rmw_skip = ~rmw_strb[8 * k:8 * k + 8].any() | rmw_unc[k]
                masks.append(Mux(Mux(wr_ph, rmw_skip, host_skip), Const(0x1FF, 9), Const(0, 9)))
            wdata_dfi, wmask_dfi = Cat(*words), Cat(*masks)
            wb_en = (accept & self.req.we & ~partial) | (wr_ph & sch_acc)
        else:
            wdata_dfi, wmask_dfi = self.req.wdata, ~self.req.wstrb
            wb_en = accept & self.req.we
        m.d.comb += [wb_w.addr.eq(wslot), wb_w.data.eq(Cat(wdata_dfi, wmask_dfi)),
                     wb_w.en.eq(wb_en)]

        # ---- DFI command registers ----
        sb, gb, bb = bits_for(t.sids), bits_for(bgs), bits_for(bpg)

        def split(flat):
            return (flat // (bpg * bgs))[:sb], ((flat // bpg) % bgs)[:gb], (flat % bpg)[:bb]

        rs, rg, ra = split(sch.row_bank)
        cs, cg, ca = split(sch.col_bank)
        d = self.dfi
        m.d.sync += [
            d.row_valid.eq(sch.row_valid), d.row_cmd.eq(Mux(sch.row_valid, sch.row_cmd, 0)),
            d.row_sid.eq(rs), d.row_bg.eq(rg), d.row_ba.eq(ra),
            d.row_addr.eq(Mux(sch.row_valid & (sch.row_cmd == ROW_ACT), sch.row_addr, 0)),
            d.col_valid.eq(sch.col_valid), d.col_cmd.eq(Mux(sch.col_valid, sch.col_cmd, 0)),
            d.col_sid.eq(cs), d.col_bg.eq(cg), d.col_ba.eq(ca), d.col_addr.eq(sch.col_addr),
        ]

        # ---- write data: WL cycles after the WR on the DFI ----
        wr_issue = sch.col_valid & sch.col_we
        wl = t.WL
        wp_v = [Signal(name=f"wp{k}_v") for k in range(wl)]
        wp_t = [Signal(bits_for(W), name=f"wp{k}_t") for k in range(wl)]
        m.d.sync += [wp_v[0].eq(wr_issue), wp_t[0].eq(sch.col_tag[:bits_for(W)])]
        for k in range(1, wl):
            m.d.sync += [wp_v[k].eq(wp_v[k - 1]), wp_t[k].eq(wp_t[k - 1])]
        last_v, last_t = wp_v[wl - 1], wp_t[wl - 1]
        m.d.comb += [wb_r.addr.eq(last_t), wb_r.en.eq(last_v)]
        wen = Signal()
        m.d.sync += wen.eq(last_v)
        m.d.comb += [d.wrdata_en.eq(wen), d.wrdata.eq(Mux(wen, wb_r.data[:dw], 0)),
                     d.wrdata_mask.eq(Mux(wen, wb_r.data[dw:], 0))]
        # slot bookkeeping: allocate on accept, free once its data has been read out
        alloc_oh = Mux(wb_en, Const(1, W) << wslot, 0)
        free_oh = Mux(last_v, Const(1, W) << last_t, 0)
        m.d.sync += wfree.eq((wfree & ~alloc_oh) | free_oh)

        # ---- read return: RL cycles after the RD on the DFI ----
        rd_issue = sch.col_valid & ~sch.col_we
        rl = t.RL
        rp_v = [Signal(name=f"rp{k}_v") for k in range(rl + 1)]
        rp_t = [Signal(bits_for(R), name=f"rp{k}_t") for k in range(rl + 1)]
        m.d.sync += [rp_v[0].eq(rd_issue), rp_t[0].eq(sch.col_tag[:bits_for(R)])]
        for k in range(1, rl + 1):
            m.d.sync += [rp_v[k].eq(rp_v[k - 1]), rp_t[k].eq(rp_t[k - 1])]
        ret_v, ret_t = rp_v[rl], rp_t[rl]
        if c.ecc:
            rp_i = [Signal(name=f"rp{k}_i") for k in range(rl + 1)]
            m.d.sync += rp_i[0].eq(sch.col_tag[tag_bits])
            for k in range(1, rl + 1):
                m.d.sync += rp_i[k].eq(rp_i[k - 1])
            ret_i = rp_i[rl]
            ret_host = ret_v & ~ret_i
        else:
            ret_host = ret_v
        corr_cnt = Signal(range(c.data_bits // 64 + 1))
        unc_any = Signal()
        if c.ecc:
            outs, corrs, uncs = [], [], []
            for k in range(c.data_bits // 64):
                dk, ck, uk = ecc_rtl.decode(m, d.rddata[72 * k:72 * k + 72], name=f"dec{k}")
                outs.append(dk)
                corrs.append(ck)
                uncs.append(uk)
            rdata_host = Cat(*outs)
            m.d.comb += [corr_cnt.eq(sum(corrs)), unc_any.eq(Cat(*uncs).any())]
            with m.If(ret_v & ret_i & (rmw == RMW_WAIT)):
                m.d.sync += [rmw_old.eq(rdata_host), rmw_unc.eq(Cat(*uncs)), rmw.eq(RMW_WR)]
        else:
            rdata_host = d.rddata
        m.submodules.rob = rob = Memory(shape=c.data_bits + 1, depth=R, init=[])
        m.submodules.rob_ts = rob_ts = Memory(shape=16, depth=R, init=[])
        rob_w = rob.write_port()
        rob_r = rob.read_port()
        ts_w = rob_ts.write_port()
        ts_r = rob_ts.read_port()
        m.d.comb += [rob_w.addr.eq(ret_t), rob_w.data.eq(Cat(rdata_host, unc_any)),
                     rob_w.en.eq(ret_host),
                     ts_w.addr.eq(rob_tail[:bits_for(R)]), ts_w.data.eq(cycle[:16]),
                     ts_w.en.eq(accept & ~self.req.we)]
        rob_valid = Signal(R)
        head = rob_head[:bits_for(R)]
        o_valid = Signal()
        advance = rob_valid.bit_select(head, 1) & (~o_valid | self.resp.ready)
        m.d.comb += [rob_r.addr.eq(head), rob_r.en.eq(advance), ts_r.addr.eq(head),
                     ts_r.en.eq(advance)]
        set_oh = Mux(ret_host, Const(1, R) << ret_t, 0)
        clr_oh = Mux(advance, Const(1, R) << head, 0)
        m.d.sync += rob_valid.eq((rob_valid & ~clr_oh) | set_oh)
        with m.If(advance):
            m.d.sync += [rob_head.eq(rob_head + 1), o_valid.eq(1)]
        with m.Elif(self.resp.ready):
            m.d.sync += o_valid.eq(0)
        with m.If(accept & ~self.req.we):
            m.d.sync += rob_tail.eq(rob_tail + 1)
        m.d.comb += [self.resp.valid.eq(o_valid), self.resp.rdata.eq(rob_r.data[:c.data_bits]),
                     self.resp.err.eq(rob_r.data[c.data_bits])]

        # ---- performance counters ----
        s = self.stat
        m.d.comb += s.cycles.eq(cycle)
        rv, rc = sch.row_valid, sch.row_cmd
        cv, cc = sch.col_valid, sch.col_cmd
        for name, cond in (("act", rv & (rc == ROW_ACT)), ("pre", rv & (rc == ROW_PRE)),
                           ("prea", rv & (rc == ROW_PREA)), ("refab", rv & (rc == ROW_REFAB)),
                           ("refpb", rv & (rc == ROW_REFPB)), ("rd", cv & (cc == COL_RD)),
                           ("wr", cv & (cc == COL_WR)), ("rda", cv & (cc == COL_RDA)),
                           ("wra", cv & (cc == COL_WRA)),
                           ("ecc_uncorrectable", ret_v & unc_any)):
            cnt = Signal(32, name=f"stat_{name}")
            m.d.sync += cnt.eq(cnt + cond)
            m.d.comb += getattr(s, name).eq(cnt)
        ecc_corr = Signal(32)
        m.d.sync += ecc_corr.eq(ecc_corr + Mux(ret_v, corr_cnt, 0))
        m.d.comb += s.ecc_corrected.eq(ecc_corr)
        # hit / miss / conflict per request (its first column command decides)
        fresh = Signal(nb)          # no request served since the ACT
        by_conf = Signal(nb)        # the bank's last PRE was a conflict PRE
        is_act = rv & (rc == ROW_ACT)
        act_oh = Mux(is_act, Const(1, nb) << sch.row_bank, 0)
        col_oh = Mux(cv & sch.col_first, Const(1, nb) << sch.col_bank, 0)
        conf_oh = Mux(sch.conflict_pre, Const(1, nb) << sch.row_bank, 0)
        m.d.sync += [fresh.eq((fresh & ~col_oh) | act_oh),
                     by_conf.eq((by_conf & ~col_oh) | conf_oh)]
        col_fresh = fresh.bit_select(sch.col_bank, 1)
        col_conf = by_conf.bit_select(sch.col_bank, 1)
        hits, misses, confs = Signal(32), Signal(32), Signal(32)
        with m.If(cv & sch.col_first):
            with m.If(~col_fresh):
                m.d.sync += hits.eq(hits + 1)
            with m.Elif(col_conf):
                m.d.sync += confs.eq(confs + 1)
            with m.Else():
                m.d.sync += misses.eq(misses + 1)
        m.d.comb += [s.row_hits.eq(hits), s.row_misses.eq(misses), s.row_conflicts.eq(confs)]
        # bytes
        total = Signal(32)
        win, win_acc, win_cnt = Signal(32), Signal(32), Signal(c.window_log2)
        nbytes = t.bytes_per_burst
        m.d.sync += [total.eq(total + Mux(cv, nbytes, 0)), win_cnt.eq(win_cnt + 1)]
        with m.If(win_cnt == (1 << c.window_log2) - 1):
            m.d.sync += [win.eq(win_acc + Mux(cv, nbytes, 0)), win_acc.eq(0)]
        with m.Else():
            m.d.sync += win_acc.eq(win_acc + Mux(cv, nbytes, 0))
        m.d.comb += [s.bytes.eq(total), s.window_bytes.eq(win)]
        # read latency
        done = self.resp.valid & self.resp.ready
        lat = Signal(16)
        m.d.comb += lat.eq(cycle[:16] - ts_r.data)
        nread, lsum = Signal(32), Signal(32)
        hist = [Signal(32, name=f"hist{k}") for k in range(HIST_BUCKETS)]
        bucket = Signal(range(HIST_BUCKETS))
        m.d.comb += bucket.eq(Mux((lat >> c.hist_shift) >= HIST_BUCKETS - 1, HIST_BUCKETS - 1,
                                  lat >> c.hist_shift))
        with m.If(done):
            m.d.sync += [nread.eq(nread + 1), lsum.eq(lsum + lat)]
            for k in range(HIST_BUCKETS):
                with m.If(bucket == k):
                    m.d.sync += hist[k].eq(hist[k] + 1)
        m.d.comb += [s.reads_done.eq(nread), s.read_latency_sum.eq(lsum)]
        for k in range(HIST_BUCKETS):
            m.d.comb += s.lat_hist[k].eq(hist[k])
        return m
