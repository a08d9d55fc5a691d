"""Bank state and every timing constraint of one pseudo-channel, as countdown timers.

:class:`BankTimers` watches the commands the scheduler issues on the row and column buses and
tells it, for every bank, which command may be issued in the current cycle. Each constraint is a
saturating countdown timer loaded with ``N - 1`` when its starting command issues (so the next
command may go exactly ``N`` cycles later) and kept at the maximum of all pending loads.

Constraints (names as in ``hdl/hbm/timing.py``; "group" = one bank group of one SID):

- per bank: tRCD_RD / tRCD_WR (ACT->RD/WR), tRAS (ACT->PRE), tRC (ACT->ACT), tRP (PRE->ACT/REF),
  tRTP (RD->PRE), WL + BL + tWR (WR->PRE), auto-precharge of RDA/WRA at the earliest legal PRE
  time, then tRP; tRFC (REFab->ACT), tRFCpb (REFpb->ACT, same bank);
- per group: tCCD_L (column->column), tRRD_L (ACT->ACT), WL + BL + tWTR_L (WR->RD);
- per SID: tCCD_R (column to another SID);
- per pseudo-channel: tCCD_S, tRRD_S, tFAW (4-entry window: four timers, an ACT needs a free
  one), WL + BL + tWTR_S (WR->RD), tRTW (RD->WR), tPPD (PRE->PRE), tRREFD (REFpb->ACT/REFpb).

Latency: the ready outputs are combinational from registers; a command issued in cycle t is
reflected in the ready outputs from cycle t+1 on.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ROW_ACT", "ROW_PRE", "ROW_PREA", "ROW_REFAB", "ROW_REFPB",
           "COL_RD", "COL_WR", "COL_RDA", "COL_WRA", "BankTimers", "bits_for"]

ROW_ACT, ROW_PRE, ROW_PREA, ROW_REFAB, ROW_REFPB = 1, 2, 3, 4, 5
COL_RD, COL_WR, COL_RDA, COL_WRA = 1, 2, 3, 4


def bits_for(n):
    """Bits to index ``n`` items (at least 1)."""
    return max(1, (n - 1).bit_length())


def _timer(m, name, width, loads):
    """A saturating countdown; ``loads`` = [(condition, value)], value = cycles - 1 (>= 0)."""
    cnt = Signal(width, name=name)
    m.d.sync += cnt.eq(_max_loads(m, name, width, cnt, loads))
    return cnt


def _max_loads(m, name, width, cnt, loads):
    """``max(cnt - 1 (saturating), value for each active load)`` through named intermediate
    signals (a Mux reusing its own input twice per stage would grow the expression tree
    exponentially)."""
    nxt = Signal(width, name=f"{name}_dec")
    m.d.comb += nxt.eq(Mux(cnt == 0, 0, cnt - 1))
    for k, (cond, value) in enumerate(loads):
        stage = Signal(width, name=f"{name}_ld{k}")
        m.d.comb += stage.eq(Mux(cond & (value > nxt), value, nxt))
        nxt = stage
    return nxt


class BankTimers(wiring.Component):
    """Per-bank open/closed state and command-ready flags for one pseudo-channel.

    Parameters
    ----------
    timing : HBMTiming
        Resolved timing (``hdl/hbm/timing.py``).

    Members
    -------
    row_valid, row_cmd, row_bank, row_addr : In
        The row command issued this cycle (``row_bank`` is the flat bank index
        ``(sid * bank_groups + bg) * banks_per_group + ba``).
    col_valid, col_cmd, col_bank : In
        The column command issued this cycle.
    open : Out(banks)
        Bank is active (a row is open).
    open_row : Out(ArrayLayout(row_bits, banks))
        The open row of each bank.
    act_ok, pre_ok, rd_ok, wr_ok, refpb_ok : Out(banks)
        The command may be issued to that bank this cycle (every bank, group and channel
        constraint included; ``rd_ok``/``wr_ok`` assume the bank is open, ``act_ok`` that it is
        closed).
    prea_ok : Out(1)
        PREA may be issued (every open bank may be precharged).
    refab_ok : Out(1)
        REFab may be issued (every bank closed and past tRP / tRFC).
    """

    def __init__(self, timing):
        self._t = t = timing
        self._nb = t.banks
        self._row_bits = bits_for(t.rows)
        super().__init__({
            "row_valid": In(1), "row_cmd": In(3), "row_bank": In(bits_for(t.banks)),
            "row_addr": In(self._row_bits),
            "col_valid": In(1), "col_cmd": In(3), "col_bank": In(bits_for(t.banks)),
            "open": Out(t.banks), "open_row": Out(data.ArrayLayout(self._row_bits, t.banks)),
            "act_ok": Out(t.banks), "pre_ok": Out(t.banks), "rd_ok": Out(t.banks),
            "wr_ok": Out(t.banks), "refpb_ok": Out(t.banks),
            "prea_ok": Out(1), "refab_ok": Out(1),
        })

    @property
    def timing(self):
        return self._t

    def elaborate(self, platform):
        m = Module()
        t = self._t
        nb, bpg, bg = t.banks, t.banks_per_group, t.bank_groups
        ngroups = t.sids * bg
        wr_end = t.WL + t.BL     # end of write data, counted from the WR command

        def ld(n):
            return max(0, n - 1)

        w = bits_for(max(t.tRFC, t.tRC, wr_end + t.tWR + t.tRP, t.tRTP + t.tRAS + t.tRP,
                         wr_end + t.tWTR_L, t.tRTW, t.tFAW) + 2) + 1

        row_v, col_v = self.row_valid, self.col_valid
        act = row_v & (self.row_cmd == ROW_ACT)
        pre = row_v & (self.row_cmd == ROW_PRE)
        prea = row_v & (self.row_cmd == ROW_PREA)
        refab = row_v & (self.row_cmd == ROW_REFAB)
        refpb = row_v & (self.row_cmd == ROW_REFPB)
        rd = col_v & ((self.col_cmd == COL_RD) | (self.col_cmd == COL_RDA))
        wr = col_v & ((self.col_cmd == COL_WR) | (self.col_cmd == COL_WRA))
        auto = col_v & ((self.col_cmd == COL_RDA) | (self.col_cmd == COL_WRA))

        row_group = self.row_bank // bpg
        col_group = self.col_bank // bpg
        col_sid = self.col_bank // (bpg * bg)

        # ---- channel-wide timers ----
        ccd_any = _timer(m, "ccd_any", w, [(col_v, ld(t.tCCD_S))])
        rrd_any = _timer(m, "rrd_any", w, [(act, ld(t.tRRD_S))])
        wtr_any = _timer(m, "wtr_any", w, [(wr, ld(wr_end + t.tWTR_S))])
        rtw_any = _timer(m, "rtw_any", w, [(rd, ld(t.tRTW))])
        ppd_any = _timer(m, "ppd_any", w, [(pre | prea, ld(t.tPPD))])
        rrefd_any = _timer(m, "rrefd_any", w, [(refpb, ld(t.tRREFD))])
        # tFAW: four window slots; an ACT takes the first free one.
        faw = [Signal(w, name=f"faw{k}") for k in range(4)]
        free = [f == 0 for f in faw]
        for k in range(4):
            first_free = free[k]
            for j in range(k):
                first_free = first_free & ~free[j]
            m.d.sync += faw[k].eq(Mux(act & first_free, ld(t.tFAW), Mux(faw[k] == 0, 0, faw[k] - 1)))
        faw_ok = free[0] | free[1] | free[2] | free[3]

        # ---- per-SID timers (tCCD_R: a column command to another SID) ----
        ccd_sid_ok = []
        for s in range(t.sids):
            c = _timer(m, f"ccd_r{s}", w, [(col_v & (col_sid != s), ld(t.tCCD_R))])
            ccd_sid_ok.append(c == 0)

        # ---- per-group timers ----
        ccd_g_ok, rrd_g_ok, wtr_g_ok = [], [], []
        for g in range(ngroups):
            ccd_g_ok.append(_timer(m, f"ccd_l{g}", w, [(col_v & (col_group == g), ld(t.tCCD_L))]) == 0)
            rrd_g_ok.append(_timer(m, f"rrd_l{g}", w, [(act & (row_group == g), ld(t.tRRD_L))]) == 0)
            wtr_g_ok.append(_timer(m, f"wtr_l{g}", w,
                                   [(wr & (col_group == g), ld(wr_end + t.tWTR_L))]) == 0)

        # ---- per-bank state and timers ----
        opened = Signal(nb)
        open_row = Signal(data.ArrayLayout(self._row_bits, nb))
        m.d.comb += [self.open.eq(opened), self.open_row.eq(open_row)]
        act_bank_ok, pre_bank_ok = [], []
        for b in range(nb):
            g, s = b // bpg, b // (bpg * bg)
            row_here = self.row_bank == b
            col_here = self.col_bank == b
            pre_cnt = Signal(w, name=f"pre_cnt{b}")
            # When RDA/WRA auto-precharges: at the earliest legal PRE time after the column command.
            rda_act = Mux(pre_cnt > ld(t.tRTP), pre_cnt, ld(t.tRTP)) + t.tRP
            wra_act = Mux(pre_cnt > ld(wr_end + t.tWR), pre_cnt, ld(wr_end + t.tWR)) + t.tRP
            is_rda = col_v & col_here & (self.col_cmd == COL_RDA)
            is_wra = col_v & col_here & (self.col_cmd == COL_WRA)
            m.d.sync += pre_cnt.eq(_max_loads(m, f"pre_cnt{b}", w, pre_cnt, [
                (act & row_here, ld(t.tRAS)), (rd & col_here, ld(t.tRTP)),
                (wr & col_here, ld(wr_end + t.tWR))]))
            act_cnt = _timer(m, f"act_cnt{b}", w, [
                (act & row_here, ld(t.tRC)),
                (pre & row_here, ld(t.tRP)),
                (prea & opened[b], ld(t.tRP)),
                (is_rda, rda_act), (is_wra, wra_act),
                (refab, ld(t.tRFC)),
                (refpb & row_here, ld(t.tRFCpb)),
            ])
            rd_cnt = _timer(m, f"rd_cnt{b}", w, [(act & row_here, ld(t.tRCD_RD))])
            wr_cnt = _timer(m, f"wr_cnt{b}", w, [(act & row_here, ld(t.tRCD_WR))])
            with m.If(act & row_here):
                m.d.sync += [opened[b].eq(1), open_row[b].eq(self.row_addr)]
            with m.Elif((pre & row_here) | prea | (auto & col_here)):
                m.d.sync += opened[b].eq(0)

            act_bank_ok.append(act_cnt == 0)
            pre_bank_ok.append(pre_cnt == 0)
            m.d.comb += [
                self.act_ok[b].eq((act_cnt == 0) & (rrd_any == 0) & rrd_g_ok[g] & faw_ok
                                  & (rrefd_any == 0)),
                self.pre_ok[b].eq((pre_cnt == 0) & (ppd_any == 0)),
                self.rd_ok[b].eq((rd_cnt == 0) & (ccd_any == 0) & ccd_g_ok[g] & ccd_sid_ok[s]
                                 & (wtr_any == 0) & wtr_g_ok[g]),
                self.wr_ok[b].eq((wr_cnt == 0) & (ccd_any == 0) & ccd_g_ok[g] & ccd_sid_ok[s]
                                 & (rtw_any == 0)),
                self.refpb_ok[b].eq(~opened[b] & (act_cnt == 0) & (rrd_any == 0)
                                    & (rrefd_any == 0)),
            ]
        all_pre_ok = Cat(~opened[b] | pre_bank_ok[b] for b in range(nb)).all()
        all_closed_ready = Cat(~opened[b] & act_bank_ok[b] for b in range(nb)).all()
        m.d.comb += [self.prea_ok.eq(all_pre_ok & (ppd_any == 0) & (opened != 0)),
                     self.refab_ok.eq(all_closed_ready & (rrefd_any == 0))]
        return m
