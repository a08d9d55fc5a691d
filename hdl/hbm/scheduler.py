"""Request queue and FR-FCFS command scheduler of one pseudo-channel.

The queue holds up to ``depth`` (16-32) requests in age order (a collapsing queue: entry 0 is the
oldest; when an entry leaves, the younger ones move down). Logically it is a set of per-bank
queues sharing one pool of entries: every decision below is taken per bank, and the age order
inside each bank is the arrival order.

Entries are host requests, not bursts: an entry holds one burst (32 B) or two consecutive bursts of
one row (a 64 B request, the unit of hbm.md's traffic). A burst joins the youngest entry when it is
the next column of the same bank, row and direction and that entry holds a single burst that had
not issued before this cycle (if it issues in this very cycle, the entry stays with the new burst
as its second half): the second beat of a 64 B AXI burst, which the AXI port offers right after the
first, always joins its first beat. Without this a 64 B request took two entries and a 32-entry queue held 16 requests: on
four streams colliding in one bank (interleaved4) that caps the requests per row activation near
two (per bank the queue holds on average half of each waiting stream's next batch, so 16 requests
over 4 banks allow about 2 per ACT), about 60% of peak.

Every cycle the scheduler issues at most one row command and at most one column command
(``hdl/hbm/controller.py`` describes the buses):

- Column (first-ready): a request that hits its bank's open row, of the current batch direction
  (read or write), whose bank, bank group, SID and channel timing allow it (``hdl/hbm/bank.py``).
  Among those, requests of banks with at most :attr:`Scheduler.FEW_HITS` queued hit entries go
  first, then the oldest: a bank that is about to run out of hits finishes, precharges and
  activates its next row while the banks with many hits keep the data bus busy, so the
  PRE/ACT/tRCD gaps of the banks overlap with data instead of coinciding (interleaved4, HBM2,
  32 entries: 62% of peak before the merging and this priority, 91% with both, RTL against the
  device model). A two-burst entry issues its bursts in order and stays in the queue until the
  second has issued.
  With page policy ``closed`` the last column command of every request auto-precharges
  (RD + RDA for 64 B); ``adaptive`` auto-precharges when no other queued request hits the same
  row; ``open`` never does.
- Row (first-come): the oldest request whose bank is closed gets an ACT (requests of the current
  direction first), or the oldest request whose bank holds another row gets a PRE, once no queued
  request of the current direction still hits that open row (a hit of the other direction must
  not hold a row against the direction being served, or the two would wait on each other);
  a row-hit cap (``hit_cap`` requests since the ACT) stops a stream of hits from starving a
  waiting conflict; the second burst of a started request is never cut off by the cap.
  Refresh (``hdl/hbm/refresh.py``) takes the row bus first when due.
- Batching: writes wait in the queue while reads are served; the scheduler switches to writes
  when ``write_high`` writes are queued (or no reads are), and back to reads when the writes drop
  to ``write_low`` (or none are left).

Ordering: a request that targets the same burst as a queued request, when either is a write, is
not accepted until that queued request has been issued, so reads see the last write accepted before
them and writes land in arrival order; everything else may be reordered.

Members
-------
req_valid, req_ready, req_we, req_bank, req_row, req_col, req_tag : In/Out
    Enqueue handshake, one burst per cycle. ``req_ready`` is combinational from the payload
    (hazard check, merge check) and the queue fill level (a burst that merges needs no free
    entry). Latency: an accepted request may issue its first command in the next cycle.
row_*, col_* : Out
    The commands issued this cycle (combinational from registered state); ``col_tag``/``col_we``
    identify the burst a column command serves.
col_first : Out(1)
    The column command is the first of its queue entry (its request): the controller counts row
    hits, misses and conflicts on these, i.e. per request.
ref_issued : Out(1)
    A refresh (REFab or REFpb, per mode) is issued this cycle.
conflict_pre : Out(1)
    A PRE issued this cycle closes a row because a queued request needs another row.
count : Out
    Queue entries in use.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.params import check_choice, check_int
from .bank import (COL_RD, COL_RDA, COL_WR, COL_WRA, ROW_ACT, ROW_PRE, ROW_PREA, ROW_REFAB,
                   ROW_REFPB, bits_for)

__all__ = ["Scheduler", "PAGE_POLICIES"]

PAGE_POLICIES = ("open", "closed", "adaptive")


def _oldest(m, name, flags, width):
    """Index of the lowest set flag (the oldest entry) and whether any is set.

    Built as expressions (continuous assignments), not procedural blocks: Icarus never runs an
    ``always @*`` whose inputs keep their initial values, which would leave its outputs X."""
    idx = Signal(width, name=f"{name}_idx")
    found = Signal(name=f"{name}_found")
    e = Const(0, width)
    for i in reversed(range(len(flags))):
        e = Mux(flags[i], i, e)
    m.d.comb += [idx.eq(e), found.eq(Cat(*flags).any())]
    return idx, found


def _pick(m, sigs, idx):
    """``sigs[idx]`` as an AND-OR expression (see :func:`_oldest` on procedural blocks)."""
    out = Signal.like(sigs[0], name=f"{sigs[0].name}_sel")
    acc = Const(0, len(sigs[0]))
    for i, s in enumerate(sigs):
        acc = acc | Mux(idx == i, s, 0)
    m.d.comb += out.eq(acc)
    return out


class Scheduler(wiring.Component):
    """FR-FCFS request queue and command arbiter (see module docstring)."""

    #: A bank with at most this many queued hit entries gets the column bus first.
    FEW_HITS = 2

    def __init__(self, timing, *, depth=32, tag_bits=6, page="open", hit_cap=16,
                 write_high=None, write_low=None, refresh="allbank"):
        self._t = t = timing
        self._depth = check_int("queue_depth", depth, lo=16, hi=128)
        self._page = check_choice("page", page, PAGE_POLICIES)
        self._hit_cap = check_int("hit_cap", hit_cap, lo=1, hi=255)
        self._whi = check_int("write_high", depth * 3 // 4 if write_high is None else write_high,
                              lo=1, hi=depth)
        self._wlo = check_int("write_low", depth // 4 if write_low is None else write_low,
                              lo=0, hi=self._whi - 1)
        self._refresh = check_choice("refresh", refresh, ("allbank", "perbank"))
        self._tag_bits = tag_bits
        bb = bits_for(t.banks)
        self._bb, self._rb, self._cb = bb, bits_for(t.rows), bits_for(t.columns)
        super().__init__({
            "req_valid": In(1), "req_ready": Out(1), "req_we": In(1), "req_bank": In(bb),
            "req_row": In(self._rb), "req_col": In(self._cb), "req_tag": In(tag_bits),
            "open": In(t.banks), "open_row": In(data.ArrayLayout(self._rb, t.banks)),
            "act_ok": In(t.banks), "pre_ok": In(t.banks), "rd_ok": In(t.banks),
            "wr_ok": In(t.banks), "refpb_ok": In(t.banks), "prea_ok": In(1), "refab_ok": In(1),
            "ref_pending": In(4), "ref_urgent": In(1), "pb_bank": In(bb),
            "ref_issued": Out(1),
            "row_valid": Out(1), "row_cmd": Out(3), "row_bank": Out(bb), "row_addr": Out(self._rb),
            "col_valid": Out(1), "col_cmd": Out(3), "col_bank": Out(bb), "col_addr": Out(self._cb),
            "col_tag": Out(tag_bits), "col_we": Out(1), "col_first": Out(1),
            "conflict_pre": Out(1), "count": Out(range(depth + 1)), "write_mode": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        t = self._t
        N, nb = self._depth, t.banks
        ib = bits_for(N + 1)

        valid = [Signal(name=f"q{i}_valid") for i in range(N)]
        we = [Signal(name=f"q{i}_we") for i in range(N)]
        bank = [Signal(self._bb, name=f"q{i}_bank") for i in range(N)]
        row = [Signal(self._rb, name=f"q{i}_row") for i in range(N)]
        col = [Signal(self._cb, name=f"q{i}_col") for i in range(N)]
        tag = [Signal(self._tag_bits, name=f"q{i}_tag") for i in range(N)]
        hit = [Signal(name=f"q{i}_hit") for i in range(N)]
        two = [Signal(name=f"q{i}_two") for i in range(N)]      # holds col and col + 1
        tag2 = [Signal(self._tag_bits, name=f"q{i}_tag2") for i in range(N)]   # tag of col + 1
        cont = [Signal(name=f"q{i}_cont") for i in range(N)]    # its first burst has issued
        count = Signal(range(N + 1))
        m.d.comb += self.count.eq(count)

        # ---- per-entry views of bank state ----
        e_open = [self.open.bit_select(bank[i], 1) for i in range(N)]
        oh = []   # one-hot bank of valid entries
        for i in range(N):
            s = Signal(nb, name=f"q{i}_oh")
            m.d.comb += s.eq(Mux(valid[i], Const(1, nb) << bank[i], 0))
            oh.append(s)
        any_hit = Signal(nb)      # a queued request hits the bank's open row
        any_conf = Signal(nb)     # a queued request needs another row of an open bank
        any_hit_mode = Signal(nb)  # ... and is of the current batch direction
        wmode = Signal()
        acc_h = Const(0, nb)
        acc_hm = Const(0, nb)
        acc_c = Const(0, nb)
        for i in range(N):
            acc_h = acc_h | Mux(hit[i], oh[i], 0)
            acc_hm = acc_hm | Mux(hit[i] & (we[i] == wmode), oh[i], 0)
            acc_c = acc_c | Mux(hit[i], 0, oh[i])
        m.d.comb += [any_hit.eq(acc_h), any_hit_mode.eq(acc_hm), any_conf.eq(acc_c & self.open)]
        # banks whose row is held by the second half of a started request (of this direction)
        any_cont_mode = Signal(nb)
        acc_k = Const(0, nb)
        for i in range(N):
            acc_k = acc_k | Mux(hit[i] & cont[i] & (we[i] == wmode), oh[i], 0)
        m.d.comb += any_cont_mode.eq(acc_k)
        # banks with at most FEW_HITS queued hit entries of the current direction: their column
        # commands go first, so the bank runs out of hits, precharges and activates its next
        # row while the banks with more hits keep the data bus busy
        # (at most FEW_HITS bits set: clearing the lowest set bit FEW_HITS times leaves none)
        few = Signal(nb)
        for b in range(nb):
            v = Signal(N, name=f"hitv{b}")
            m.d.comb += v.eq(Cat(hit[i] & (we[i] == wmode) & oh[i][b] for i in range(N)))
            for k in range(self.FEW_HITS):
                x = Signal(N, name=f"hitv{b}_{k}")
                m.d.comb += x.eq(v & (v - 1))
                v = x
            m.d.comb += few[b].eq(v == 0)

        # ---- row-hit cap ----
        hits_since_act = [Signal(range(self._hit_cap + 1), name=f"hits{b}") for b in range(nb)]
        capped = Signal(nb)
        for b in range(nb):
            m.d.comb += capped[b].eq((hits_since_act[b] >= self._hit_cap) & any_conf[b])

        # ---- read/write batching ----
        nwr = Signal(range(N + 1))
        nrd = Signal(range(N + 1))
        m.d.comb += [nwr.eq(sum(valid[i] & we[i] for i in range(N))),
                     nrd.eq(sum(valid[i] & ~we[i] for i in range(N)))]
        m.d.comb += self.write_mode.eq(wmode)
        with m.If(~wmode):
            with m.If((nwr >= self._whi) | ((nrd == 0) & (nwr != 0))):
                m.d.sync += wmode.eq(1)
        with m.Else():
            with m.If((nwr == 0) | ((nwr <= self._wlo) & (nrd != 0))):
                m.d.sync += wmode.eq(0)

        # ---- refresh state ----
        ab_mode = self._refresh == "allbank"
        ref_hold = Signal()      # urgent refresh in progress: keep going until none pending
        with m.If(self.ref_urgent):
            m.d.sync += ref_hold.eq(1)
        with m.Elif(self.ref_pending == 0):
            m.d.sync += ref_hold.eq(0)
        ref_active = Signal()
        pb_queued = Signal()
        m.d.comb += pb_queued.eq(Cat(valid[i] & (bank[i] == self.pb_bank) for i in range(N)).any())
        if ab_mode:
            m.d.comb += ref_active.eq((self.ref_pending != 0)
                                      & (self.ref_urgent | ref_hold | (count == 0)))
        else:
            m.d.comb += ref_active.eq((self.ref_pending != 0)
                                      & (self.ref_urgent | ref_hold | ~pb_queued))

        def blocked(i):
            if ab_mode:
                return ref_active
            return ref_active & (bank[i] == self.pb_bank)

        # ---- candidates ----
        col_c, colp_c, act_c, act_cm, pre_c = [], [], [], [], []
        for i in range(N):
            rdok = self.rd_ok.bit_select(bank[i], 1)
            wrok = self.wr_ok.bit_select(bank[i], 1)
            cap = capped.bit_select(bank[i], 1)
            c = Signal(name=f"q{i}_colc")
            m.d.comb += c.eq(valid[i] & hit[i] & (we[i] == wmode) & Mux(we[i], wrok, rdok)
                             & (~cap | cont[i]) & ~blocked(i))
            col_c.append(c)
            cp = Signal(name=f"q{i}_colp")
            m.d.comb += cp.eq(c & few.bit_select(bank[i], 1))
            colp_c.append(cp)
            a = Signal(name=f"q{i}_actc")
            m.d.comb += a.eq(valid[i] & ~e_open[i] & self.act_ok.bit_select(bank[i], 1)
                             & ~blocked(i))
            act_c.append(a)
            am = Signal(name=f"q{i}_actcm")
            m.d.comb += am.eq(a & (we[i] == wmode))
            act_cm.append(am)
            p = Signal(name=f"q{i}_prec")
            m.d.comb += p.eq(valid[i] & e_open[i] & ~hit[i]
                             & (~any_hit_mode.bit_select(bank[i], 1)
                                | (cap & ~any_cont_mode.bit_select(bank[i], 1)))
                             & self.pre_ok.bit_select(bank[i], 1) & ~blocked(i))
            pre_c.append(p)
        colp_i, colp_f = _oldest(m, "colp", colp_c, ib)
        cola_i, col_f = _oldest(m, "cola", col_c, ib)
        col_i = Signal(ib, name="col_idx")
        m.d.comb += col_i.eq(Mux(colp_f, colp_i, cola_i))
        actm_i, actm_f = _oldest(m, "actm", act_cm, ib)
        acta_i, acta_f = _oldest(m, "acta", act_c, ib)
        pre_i, pre_f = _oldest(m, "pre", pre_c, ib)
        act_i = Mux(actm_f, actm_i, acta_i)
        act_f = actm_f | acta_f

        def pick(sigs, idx):
            return _pick(m, sigs, idx)

        # ---- row bus ----
        r_valid = Signal()
        r_cmd = Signal(3)
        r_bank = Signal(self._bb)
        r_row = Signal(self._rb)
        conflict = Signal()
        ref_issue = Signal()
        pb_open = self.open.bit_select(self.pb_bank, 1)
        # refresh's own row command (expressions only, see _oldest)
        if ab_mode:
            f_prea = ref_active & (self.open != 0) & self.prea_ok
            f_ref = ref_active & (self.open == 0) & self.refab_ok
            f_valid = f_prea | f_ref
            f_cmd = Mux(f_ref, ROW_REFAB, ROW_PREA)
            f_bank = Const(0, self._bb)
        else:
            f_pre = ref_active & pb_open & self.pre_ok.bit_select(self.pb_bank, 1)
            f_ref = ref_active & ~pb_open & self.refpb_ok.bit_select(self.pb_bank, 1)
            f_valid = f_pre | f_ref
            f_cmd = Mux(f_ref, ROW_REFPB, ROW_PRE)
            f_bank = self.pb_bank
        sel_act_bank = pick(bank, act_i)
        sel_act_row = pick(row, act_i)
        sel_pre_bank = pick(bank, pre_i)
        do_pre = ~f_valid & pre_f & (~act_f | (pre_i < act_i))
        do_act = ~f_valid & ~do_pre & act_f
        m.d.comb += [
            r_valid.eq(f_valid | do_pre | do_act),
            r_cmd.eq(Mux(f_valid, f_cmd, Mux(do_pre, ROW_PRE, Mux(do_act, ROW_ACT, 0)))),
            r_bank.eq(Mux(f_valid, f_bank, Mux(do_pre, sel_pre_bank, Mux(do_act, sel_act_bank, 0)))),
            r_row.eq(Mux(do_act, sel_act_row, 0)),
            conflict.eq(do_pre), ref_issue.eq(f_ref),
        ]
        m.d.comb += [self.row_valid.eq(r_valid), self.row_cmd.eq(r_cmd),
                     self.row_bank.eq(r_bank), self.row_addr.eq(r_row),
                     self.conflict_pre.eq(conflict), self.ref_issued.eq(ref_issue)]

        # ---- column bus ----
        c_bank = pick(bank, col_i)
        c_row = pick(row, col_i)
        c_we = pick(we, col_i)
        c_two = pick(two, col_i)
        c_cont = pick(cont, col_i)
        other_hit = Cat(valid[j] & hit[j] & (bank[j] == c_bank) & (col_i != j)
                        for j in range(N)).any()
        if self._page == "open":
            auto = Const(0, 1)
        elif self._page == "closed":
            auto = ~c_two
        else:
            auto = ~other_hit & ~c_two
        m.d.comb += [
            self.col_valid.eq(col_f), self.col_bank.eq(c_bank), self.col_addr.eq(pick(col, col_i)),
            self.col_tag.eq(pick(tag, col_i)), self.col_we.eq(c_we),
            self.col_first.eq(col_f & ~c_cont),
            self.col_cmd.eq(Mux(c_we, Mux(auto, COL_WRA, COL_WR), Mux(auto, COL_RDA, COL_RD))),
        ]
        col_auto = col_f & auto

        # ---- hit-cap counters ----
        for b in range(nb):
            with m.If(r_valid & (r_cmd == ROW_ACT) & (r_bank == b)):
                m.d.sync += hits_since_act[b].eq(0)
            with m.Elif(col_f & ~c_cont & (c_bank == b) & (hits_since_act[b] != self._hit_cap)):
                m.d.sync += hits_since_act[b].eq(hits_since_act[b] + 1)

        # ---- enqueue ----
        match = Cat(valid[i] & (bank[i] == self.req_bank) & (row[i] == self.req_row)
                    & ((col[i] == self.req_col) | (two[i] & (col[i] + 1 == self.req_col)))
                    & (we[i] | self.req_we) for i in range(N)).any()
        # merge: the burst right after the youngest entry's (same bank, row, direction) joins
        # it (one host request) while that entry holds one burst that has not issued before
        # this cycle; if it issues in this very cycle, the entry stays with the new burst as
        # its second half ("live" merge), so back-to-back bursts are always one request
        youngest = Signal(ib)
        m.d.comb += youngest.eq(count - 1)
        merge = Signal()
        m.d.comb += merge.eq((count != 0) & ~pick(two, youngest) & ~pick(cont, youngest)
                             & (pick(we, youngest) == self.req_we)
                             & (pick(bank, youngest) == self.req_bank)
                             & (pick(row, youngest) == self.req_row)
                             & (pick(col, youngest) + 1 == self.req_col))
        live = col_f & (col_i == youngest)
        m.d.comb += self.req_ready.eq(((count < N) | merge) & ~match)
        ins = self.req_valid & self.req_ready & ~merge
        mrg = self.req_valid & self.req_ready & merge
        mrg_idle = mrg & ~live              # becomes the entry's second burst
        mrg_live = mrg & live               # replaces the entry's issuing burst
        rm = col_f & ~c_two & ~mrg_live     # the entry leaves with its last burst
        half = col_f & c_two                # the entry's first burst issues, its second stays
        m.d.sync += count.eq(count + ins - rm)
        ins_pos = Signal(ib)
        m.d.comb += ins_pos.eq(count - rm)

        # events that change which queued requests hit an open row
        ev_act = r_valid & (r_cmd == ROW_ACT)
        ev_close_all = r_valid & (r_cmd == ROW_PREA)
        ev_pre = r_valid & (r_cmd == ROW_PRE)

        def hit_next(b, r, h):
            closes = ev_close_all | (ev_pre & (r_bank == b)) | (col_auto & (c_bank == b))
            return Mux(ev_act & (r_bank == b), r == r_row, Mux(closes, 0, h))

        new_hit = hit_next(self.req_bank, self.req_row,
                           self.open.bit_select(self.req_bank, 1)
                           & (self.open_row[self.req_bank] == self.req_row))
        for i in range(N):
            shift = rm & (col_i <= i)
            nxt = i + 1
            s_valid = Mux(shift, valid[nxt] if nxt < N else 0, valid[i])
            s_we = Mux(shift, we[nxt] if nxt < N else 0, we[i])
            s_bank = Mux(shift, bank[nxt] if nxt < N else 0, bank[i])
            s_row = Mux(shift, row[nxt] if nxt < N else 0, row[i])
            s_col = Mux(shift, col[nxt] if nxt < N else 0, col[i])
            s_tag = Mux(shift, tag[nxt] if nxt < N else 0, tag[i])
            s_hit = Mux(shift, hit[nxt] if nxt < N else 0, hit[i])
            s_two = Mux(shift, two[nxt] if nxt < N else 0, two[i])
            s_tag2 = Mux(shift, tag2[nxt] if nxt < N else 0, tag2[i])
            s_cont = Mux(shift, cont[nxt] if nxt < N else 0, cont[i])
            halved = half & (col_i == i)        # no shift happens in that cycle
            lived = mrg_live & (col_i == i)     # (nor here)
            joins = mrg_idle & (ins_pos == i + 1)
            with m.If(ins & (ins_pos == i)):
                m.d.sync += [valid[i].eq(1), we[i].eq(self.req_we), bank[i].eq(self.req_bank),
                             row[i].eq(self.req_row), col[i].eq(self.req_col),
                             tag[i].eq(self.req_tag), hit[i].eq(new_hit), two[i].eq(0),
                             cont[i].eq(0)]
            with m.Else():
                m.d.sync += [valid[i].eq(s_valid), we[i].eq(s_we), bank[i].eq(s_bank),
                             row[i].eq(s_row),
                             col[i].eq(Mux(halved | lived, s_col + 1, s_col)),
                             tag[i].eq(Mux(halved, s_tag2, Mux(lived, self.req_tag, s_tag))),
                             hit[i].eq(s_valid & hit_next(s_bank, s_row, s_hit)),
                             two[i].eq(Mux(halved, 0, s_two) | joins),
                             tag2[i].eq(Mux(joins, self.req_tag, s_tag2)),
                             cont[i].eq(s_cont | halved | lived)]
        return m
