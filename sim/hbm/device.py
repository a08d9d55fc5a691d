"""A pure-Python HBM pseudo-channel device model: stores data and checks every JEDEC timing rule.

No cocotb here: :mod:`diestack.sim.hbm.dfi_monitor` feeds it from a simulation, tests feed it by
hand. One :class:`HBMDevice` models ONE pseudo-channel (PC) of the organisation and timing in a
resolved :class:`~diestack.hdl.hbm.timing.HBMTiming` (all values in controller cycles = CK).

Commands (names as on the device interface and in the command log):
row bus ``ACT``, ``PRE``, ``PREA`` (all banks, every SID), ``REFab`` (all banks, every SID),
``REFpb`` (one bank); column bus ``RD``, ``WR``, ``RDA``, ``WRA``.

Rules checked (rule name -> meaning; "group" = bank group within one SID):

============== ==============================================================================
``tRCD_RD``     ACT -> RD/RDA, same bank
``tRCD_WR``     ACT -> WR/WRA, same bank
``tRP``         PRE/PREA/auto-precharge -> ACT, REFab or REFpb of that bank
``tRAS``        ACT -> PRE/PREA, same bank (RDA/WRA delay their internal precharge instead)
``tRC``         ACT -> ACT, same bank
``tCCD_L``      RD -> RD or WR -> WR, same group
``tCCD_S``      RD -> RD or WR -> WR, same SID, other group
``tCCD_R``      RD -> RD or WR -> WR, other SID
``tRRD_L``      ACT -> ACT, same group
``tRRD_S``      ACT -> ACT, other group or SID
``tFAW``        at most four ACT in any tFAW window of the PC
``tWR``         WR -> PRE/PREA same bank: WL + BL + tWR (write recovery after the last data)
``tWTR_L``      WR -> RD same group: WL + BL + tWTR_L
``tWTR_S``      WR -> RD other group or SID: WL + BL + tWTR_S
``tRTP``        RD -> PRE/PREA, same bank
``tRTW``        RD -> WR anywhere in the PC (read-to-write turnaround)
``tPPD``        PRE/PREA -> PRE/PREA in the PC (HBM3)
``tRFC``        REFab -> ACT, REFab or REFpb
``tRFCpb``      REFpb -> ACT or REFpb of the same bank, and -> REFab
``tRREFD``      REFpb -> ACT or REFpb of another bank
``tREFI``       refresh deadline: refresh k is due at k x tREFI and may be postponed by up to 8
                intervals, so a command at or after (done + 9) x tREFI is late, where "done"
                counts REFab as one and REFpb as 1/banks; pulling in is credited up to 8 ahead;
                and no bank may go 9 x tREFI without a refresh (REFab or its REFpb)
``bank_open``   ACT, REFab or REFpb to a bank that is open (needs a closed bank)
``bank_closed`` RD/WR/RDA/WRA to a bank that is closed (needs an open bank)
``row_bus``     two row commands in one cycle
``col_bus``     two column commands in one cycle
``write_data``  write data not presented exactly WL cycles after its WR/WRA
``address``     SID / bank group / bank / row / column out of range
============== ==============================================================================

PRE to a bank that is already closed is legal (a no-op for the bank; tPPD still counts).
RDA precharges internally at ``max(RDA + tRTP, ACT + tRAS)``, WRA at ``max(WRA + WL + BL + tWR,
ACT + tRAS)``; the bank counts as closed for further commands right after RDA/WRA, and ``tRP`` is
measured from that internal precharge (the violation message names the RDA/WRA).

Data: stored sparsely (a dict keyed by location), as little-endian integers of ``data_bytes``
bytes per burst (``bytes_per_burst`` by default; 9/8 of it when the controller stores ECC check
bytes). Unwritten locations read as 0. A write's data are given with the WR (``data=``), or later
with :meth:`HBMDevice.write_data` exactly WL cycles after the WR as on the DFI bus. A read returns
``(due_cycle, data)`` with ``due_cycle = cycle + RL``.

Violations: :class:`TimingViolation` (an ``AssertionError``) names the rule and both commands with
their cycles. ``strict=True`` raises the first one; ``strict=False`` records them all in
``violations`` (the first ``max_recorded``) and counts them in ``violation_counts``.
"""

from collections import Counter, deque, namedtuple

__all__ = ["ROW_COMMANDS", "COL_COMMANDS", "COMMANDS", "Command", "TimingViolation", "HBMDevice"]

#: DFI ``row_cmd`` / ``col_cmd`` codes (hdl/hbm/controller.py docstring).
ROW_COMMANDS = {1: "ACT", 2: "PRE", 3: "PREA", 4: "REFab", 5: "REFpb"}
COL_COMMANDS = {1: "RD", 2: "WR", 3: "RDA", 4: "WRA"}
COMMANDS = tuple(ROW_COMMANDS.values()) + tuple(COL_COMMANDS.values())
_COL = frozenset(COL_COMMANDS.values())
_BANK_CMDS = frozenset(("ACT", "PRE", "REFpb", "RD", "WR", "RDA", "WRA"))
_BANK, _ALL, _COLK = 0, 1, 2
_KIND = {"ACT": _BANK, "PRE": _BANK, "REFpb": _BANK, "PREA": _ALL, "REFab": _ALL,
         "RD": _COLK, "WR": _COLK, "RDA": _COLK, "WRA": _COLK}
_new = tuple.__new__
_NEVER = float("inf")


class Command(namedtuple("Command", "cycle cmd sid bg ba row col")):
    """One issued command (bank fields are None for PREA/REFab)."""
    __slots__ = ()

    def __str__(self):
        if self.cmd in ("PREA", "REFab"):
            where = ""
        elif self.cmd == "ACT":
            where = f" sid{self.sid} bg{self.bg} ba{self.ba} row {self.row}"
        elif self.cmd in _COL:
            where = f" sid{self.sid} bg{self.bg} ba{self.ba} col {self.col}"
        elif self.cmd in _BANK_CMDS:
            where = f" sid{self.sid} bg{self.bg} ba{self.ba}"
        else:
            where = ""
        return f"{self.cmd}{where} @ cycle {self.cycle}"


class TimingViolation(AssertionError):
    """A broken device rule.

    Attributes
    ----------
    rule : str
        Rule name (a JEDEC parameter such as ``tRCD_RD``, or ``bank_open`` etc., see module doc).
    earlier_cmd : Command or None
        The earlier command the rule is measured from (None if there is none, e.g. a read of a bank
        never opened).
    later_cmd : Command
        The command that broke the rule.
    needed, actual : int or None
        Required and actual spacing in cycles from ``earlier_cmd`` to ``later_cmd``; for
        ``kind == "max"`` (refresh deadline) ``needed`` is the largest spacing allowed.
    detail : str
        Extra context.
    """

    def __init__(self, rule, earlier_cmd, later_cmd, needed=None, actual=None, kind="min", detail=""):
        self.rule = rule
        self.earlier_cmd = earlier_cmd
        self.later_cmd = later_cmd
        self.needed = needed
        self.actual = actual
        self.kind = kind
        self.detail = detail
        super().__init__(self._message())

    def _message(self):
        later = str(self.later_cmd) if self.later_cmd is not None else "?"
        if self.earlier_cmd is None:
            text = f"{self.rule} violated by {later}"
        else:
            text = f"{self.rule} violated: {later} after {self.earlier_cmd}"
        if self.needed is not None:
            bound = ">=" if self.kind == "min" else "<="
            text += f": spacing {self.actual} cycles, needs {bound} {self.needed}"
        if self.detail:
            text += f" ({self.detail})"
        return text

    def __reduce__(self):
        return (TimingViolation, (self.rule, self.earlier_cmd, self.later_cmd, self.needed,
                                  self.actual, self.kind, self.detail))


class HBMDevice:
    """One HBM pseudo-channel: data storage plus a JEDEC timing and state checker.

    Parameters
    ----------
    timing : HBMTiming
        Resolved timing and organisation (cycles).
    strict : bool
        Raise the first :class:`TimingViolation` (True) or record and continue (False).
    data_bytes : int, optional
        Bytes per burst as stored (default ``timing.bytes_per_burst``; 36 for 32 B + ECC).
    check_refresh : bool
        Check the tREFI deadline (disable for short hand-written sequences that are not about it).
    max_recorded : int
        Violations kept in ``violations`` (all are counted).
    """

    def __init__(self, timing, strict=True, data_bytes=None, check_refresh=True, max_recorded=1000):
        t = timing
        self.timing = t
        self.strict = bool(strict)
        self.data_bytes = int(data_bytes or t.bytes_per_burst)
        self.check_refresh = bool(check_refresh)
        self.max_recorded = int(max_recorded)
        self._nbg = t.bank_groups
        self._nba = t.banks_per_group
        self._nsid = t.sids
        self._rows = t.rows
        self._cols = t.columns
        nbank = t.sids * t.bank_groups * t.banks_per_group
        ngroup = t.sids * t.bank_groups
        self.banks = nbank
        # timing shortcuts (cycles)
        self._RL, self._WL, self._BL = t.RL, t.WL, t.BL
        self._wr_end = t.WL + t.BL             # WR -> end of its write data
        # hot-path copies of the column-command rules
        self._tRCD_RD, self._tRCD_WR, self._tRTW = t.tRCD_RD, t.tRCD_WR, t.tRTW
        self._tCCD_L, self._tCCD_S, self._tCCD_R = t.tCCD_L, t.tCCD_S, t.tCCD_R
        self._tCCD_max = max(t.tCCD_L, t.tCCD_S, t.tCCD_R)
        self._wtr_l = self._wr_end + t.tWTR_L  # WR -> RD, same group
        self._wtr_s = self._wr_end + t.tWTR_S  # WR -> RD, other group
        self._tRTP, self._tRAS, self._tWR = t.tRTP, t.tRAS, t.tWR
        # per bank
        self._open = [None] * nbank            # open row or None
        self._act = [None] * nbank             # Command of the ACT that opened / last opened it
        self._pre_at = [None] * nbank          # cycle the bank's (auto-)precharge started
        self._pre_cmd = [None] * nbank         # Command responsible (PRE, PREA, RDA, WRA)
        self._rd = [None] * nbank              # last RD/RDA to the bank
        self._wr = [None] * nbank              # last WR/WRA to the bank
        self._refpb = [None] * nbank           # last REFpb of the bank
        self._last_ref = [0] * nbank           # cycle of the bank's last refresh (0 = power-up)
        # per group (sid, bg) and per SID
        self._g_act = [None] * ngroup
        self._g_rd = [None] * ngroup
        self._g_wr = [None] * ngroup
        self._s_rd = [None] * t.sids
        self._s_wr = [None] * t.sids
        # per pseudo-channel
        self._act_any = None
        self._faw = deque(maxlen=4)
        self._rd_any = None
        self._wr_any = None
        self._pre_any = None
        self._refab = None
        self._refpb_any = None
        self._row_cycle = None                 # Command last seen on the row bus
        self._col_cycle = None
        self._now = 0
        self._pending = deque()                # (due cycle, key, Command) writes waiting for data
        # refresh accounting, in bank-refresh units
        self._ref_credit = 0
        self._last_ref_cmd = None
        self._ref_deadline = None
        self._ref_reported = False
        self._bank_ref_deadline = 9 * t.tREFI + 1
        self._update_ref_deadline()
        # storage and statistics
        self.mem = {}
        self._counts = dict.fromkeys(COMMANDS, 0)
        self.violation_counts = Counter()
        self.violations = []

    # --- public API --------------------------------------------------------------------------
    @property
    def command_counts(self):
        """Commands issued, by type (types never issued are left out)."""
        return {k: v for k, v in self._counts.items() if v}

    @property
    def commands(self):
        return sum(self._counts.values())

    @property
    def violation_total(self):
        return sum(self.violation_counts.values())

    def issue(self, cycle, cmd, sid=0, bg=0, ba=0, row=None, col=None, data=None, mask=None):
        """Issue one command at ``cycle``; check it, update state, move data.

        Returns ``(due_cycle, data)`` for RD/RDA, else None. WR/WRA with ``data`` store it at once
        (``mask``: one bit per byte, 1 = keep the old byte); without ``data`` the write waits for
        :meth:`write_data` at ``cycle + WL``.
        """
        if cycle < self._now:
            raise ValueError(f"commands must be issued in cycle order: {cmd} at {cycle} after {self._now}")
        self._now = cycle
        if self._pending and self._pending[0][0] < cycle:
            self._expire(cycle)
        kind = _KIND.get(cmd)
        if kind is None:
            raise ValueError(f"unknown HBM command {cmd!r}; expected one of {', '.join(COMMANDS)}")
        if kind == _ALL:
            b = None
            c = _new(Command, (cycle, cmd, None, None, None, row, col))
        else:
            if not (0 <= sid < self._nsid and 0 <= bg < self._nbg and 0 <= ba < self._nba):
                self._counts[cmd] += 1
                return self._bad_address(cycle, cmd, sid, bg, ba, row, col, "bank")
            b = (sid * self._nbg + bg) * self._nba + ba
            c = _new(Command, (cycle, cmd, sid, bg, ba, row, col))
        self._counts[cmd] += 1
        if cycle >= self._ref_deadline_min:
            self._refresh_deadline(c)
        if kind == _COLK:
            last = self._col_cycle
            self._col_cycle = c
            if last is not None and last[0] == cycle:
                self._violate("col_bus", last, c, 1, 0)
            if col is None or not 0 <= col < self._cols:
                return self._bad_address(cycle, cmd, sid, bg, ba, row, col, "column", c)
            if cmd == "RD" or cmd == "RDA":
                return self._read(c, b, sid, bg, col, cmd == "RDA")
            self._write(c, b, sid, bg, col, cmd == "WRA", data, mask)
            return None
        last = self._row_cycle
        self._row_cycle = c
        if last is not None and last[0] == cycle:
            self._violate("row_bus", last, c, 1, 0)
        if cmd == "ACT":
            if row is None or not 0 <= row < self._rows:
                return self._bad_address(cycle, cmd, sid, bg, ba, row, col, "row", c)
            self._activate(c, b, sid * self._nbg + bg, row)
        elif cmd == "PRE":
            self._ppd(c)
            self._precharge(c, b)
        elif cmd == "PREA":
            self._ppd(c)
            for i in range(self.banks):
                self._precharge(c, i)
        elif cmd == "REFab":
            self._refresh_all(c)
        else:
            self._refresh_bank(c, b)
        return None

    def issue_dfi(self, cycle, bus, code, sid, bg, ba, addr, data=None, mask=None):
        """Issue by DFI code: ``bus`` is ``"row"`` (``addr`` = row) or ``"col"`` (``addr`` = column)."""
        if bus == "row":
            cmd = ROW_COMMANDS.get(code)
            if cmd is None:
                raise ValueError(f"bad DFI row_cmd code {code}")
            return self.issue(cycle, cmd, sid, bg, ba, row=addr)
        cmd = COL_COMMANDS.get(code)
        if cmd is None:
            raise ValueError(f"bad DFI col_cmd code {code}")
        return self.issue(cycle, cmd, sid, bg, ba, col=addr, data=data, mask=mask)

    def write_data(self, cycle, data, mask=0):
        """Write data seen on the bus at ``cycle``; it belongs to the WR/WRA issued at ``cycle - WL``."""
        if self._pending and self._pending[0][0] < cycle:
            self._expire(cycle)
        if not self._pending or self._pending[0][0] != cycle:
            c = Command(cycle, "wrdata", None, None, None, None, None)
            self._violate("write_data", None, c, None, None,
                          detail=f"write data at cycle {cycle} with no WR/WRA issued WL={self._WL} cycles before")
            return
        _, key, _ = self._pending.popleft()
        self._store(key, data, mask)

    def finish(self, cycle):
        """End of simulation at ``cycle``: check the refresh deadline and writes still owed data."""
        self._now = max(self._now, cycle)
        if self._pending:
            self._expire(cycle + 1)
        if cycle >= self._ref_deadline_min:
            self._refresh_deadline(Command(cycle, "end", None, None, None, None, None))
        return self.violation_total

    def open_row(self, sid, bg, ba):
        """Row open in the bank, or None (closed, or the bank is out of range)."""
        if 0 <= sid < self._nsid and 0 <= bg < self._nbg and 0 <= ba < self._nba:
            return self._open[(sid * self._nbg + bg) * self._nba + ba]
        return None

    # storage helpers (also the error-injection hooks) -----------------------------------------
    def key(self, sid, bg, ba, row, col):
        return (((sid * self._nbg + bg) * self._nba + ba) * self._rows + row) * self._cols + col

    def location(self, key):
        """Inverse of :meth:`key`: ``(sid, bg, ba, row, col)``."""
        key, col = divmod(key, self._cols)
        key, row = divmod(key, self._rows)
        key, ba = divmod(key, self._nba)
        sid, bg = divmod(key, self._nbg)
        return sid, bg, ba, row, col

    def peek(self, sid, bg, ba, row, col):
        return self.mem.get(self.key(sid, bg, ba, row, col), 0)

    def poke(self, sid, bg, ba, row, col, value):
        self.mem[self.key(sid, bg, ba, row, col)] = int(value)

    def flip_bits(self, sid, bg, ba, row, col, bits):
        """Error injection: invert the stored bits at positions ``bits`` (0 = LSB of byte 0)."""
        k = self.key(sid, bg, ba, row, col)
        v = self.mem.get(k, 0)
        for bit in bits:
            if not 0 <= bit < 8 * self.data_bytes:
                raise ValueError(f"bit {bit} outside the {8 * self.data_bytes}-bit burst")
            v ^= 1 << bit
        self.mem[k] = v

    def written(self):
        """Locations ever written, as ``(sid, bg, ba, row, col)`` tuples (for error injection)."""
        return [self.location(k) for k in self.mem]

    # --- checks ------------------------------------------------------------------------------
    def _violate(self, rule, earlier, later, needed, actual, kind="min", detail=""):
        v = TimingViolation(rule, earlier, later, needed, actual, kind, detail)
        self.violation_counts[rule] += 1
        if len(self.violations) < self.max_recorded:
            self.violations.append(v)
        if self.strict:
            raise v

    def _bad_address(self, cycle, cmd, sid, bg, ba, row, col, what, c=None):
        c = c or Command(cycle, cmd, sid, bg, ba, row, col)
        t = self.timing
        self._violate("address", None, c, None, None, detail=(
            f"{what} out of range: sids {t.sids}, bank groups {t.bank_groups}, banks/group "
            f"{t.banks_per_group}, rows {t.rows}, columns {t.columns}"))
        return None

    def _activate(self, c, b, g, row):
        t = self.timing
        now = c.cycle
        if self._open[b] is not None:
            self._violate("bank_open", self._act[b], c, None, None,
                          detail=f"row {self._open[b]} still open")
        p = self._pre_at[b]
        if p is not None and now - p < t.tRP:
            pc = self._pre_cmd[b]
            self._violate("tRP", pc, c, p + t.tRP - pc.cycle, now - pc.cycle)
        a = self._act[b]
        if a is not None and now - a.cycle < t.tRC:
            self._violate("tRC", a, c, t.tRC, now - a.cycle)
        r = self._refpb[b]
        if r is not None and now - r.cycle < t.tRFCpb:
            self._violate("tRFCpb", r, c, t.tRFCpb, now - r.cycle)
        r = self._refab
        if r is not None and now - r.cycle < t.tRFC:
            self._violate("tRFC", r, c, t.tRFC, now - r.cycle)
        r = self._refpb_any
        if r is not None and r is not self._refpb[b] and now - r.cycle < t.tRREFD:
            self._violate("tRREFD", r, c, t.tRREFD, now - r.cycle)
        a = self._g_act[g]
        if a is not None and a is not self._act[b] and now - a.cycle < t.tRRD_L:   # same bank: tRC
            self._violate("tRRD_L", a, c, t.tRRD_L, now - a.cycle)
        a = self._act_any
        if a is not None and a is not self._g_act[g] and now - a.cycle < t.tRRD_S:
            self._violate("tRRD_S", a, c, t.tRRD_S, now - a.cycle)
        faw = self._faw
        if len(faw) == 4 and now - faw[0].cycle < t.tFAW:
            self._violate("tFAW", faw[0], c, t.tFAW, now - faw[0].cycle,
                          detail="fifth ACT in the window")
        faw.append(c)
        self._open[b] = row
        self._act[b] = c
        self._rd[b] = None
        self._wr[b] = None
        self._g_act[g] = c
        self._act_any = c

    def _ppd(self, c):
        p = self._pre_any
        tppd = self.timing.tPPD
        if p is not None and c.cycle - p.cycle < tppd:
            self._violate("tPPD", p, c, tppd, c.cycle - p.cycle)
        self._pre_any = c

    def _precharge(self, c, b):
        if self._open[b] is None:
            return                              # PRE to a closed bank: a no-op
        t = self.timing
        now = c.cycle
        a = self._act[b]
        if now - a.cycle < t.tRAS:
            self._violate("tRAS", a, c, t.tRAS, now - a.cycle)
        r = self._rd[b]
        if r is not None and now - r.cycle < t.tRTP:
            self._violate("tRTP", r, c, t.tRTP, now - r.cycle)
        w = self._wr[b]
        if w is not None and now - w.cycle < self._wr_end + t.tWR:
            self._violate("tWR", w, c, self._wr_end + t.tWR, now - w.cycle)
        self._open[b] = None
        self._pre_at[b] = now
        self._pre_cmd[b] = c

    def _closed_and_precharged(self, c, b):
        """REFab / REFpb need the bank closed for tRP and not in its own per-bank refresh."""
        t = self.timing
        now = c.cycle
        if self._open[b] is not None:
            sid, bg, ba, _, _ = self.location(b * self._rows * self._cols)
            self._violate("bank_open", self._act[b], c, None, None,
                          detail=f"bank sid{sid} bg{bg} ba{ba} row {self._open[b]} open at refresh")
            self._open[b] = None
            self._pre_at[b] = now
            self._pre_cmd[b] = c
        else:
            p = self._pre_at[b]
            if p is not None and now - p < t.tRP:
                pc = self._pre_cmd[b]
                self._violate("tRP", pc, c, p + t.tRP - pc.cycle, now - pc.cycle)
        r = self._refpb[b]
        if r is not None and now - r.cycle < t.tRFCpb:
            self._violate("tRFCpb", r, c, t.tRFCpb, now - r.cycle)

    def _refresh_all(self, c):
        t = self.timing
        now = c.cycle
        r = self._refab
        if r is not None and now - r.cycle < t.tRFC:
            self._violate("tRFC", r, c, t.tRFC, now - r.cycle)
        for b in range(self.banks):
            self._closed_and_precharged(c, b)
        self._refab = c
        for b in range(self.banks):
            self._last_ref[b] = now
        self._credit(c, self.banks)

    def _refresh_bank(self, c, b):
        t = self.timing
        now = c.cycle
        self._closed_and_precharged(c, b)
        r = self._refab
        if r is not None and now - r.cycle < t.tRFC:
            self._violate("tRFC", r, c, t.tRFC, now - r.cycle)
        r = self._refpb_any
        if r is not None and r is not self._refpb[b] and now - r.cycle < t.tRREFD:
            self._violate("tRREFD", r, c, t.tRREFD, now - r.cycle)
        self._refpb[b] = c
        self._refpb_any = c
        self._last_ref[b] = now
        self._credit(c, 1)

    def _ccd(self, c, now, sid, g, same_g, same_s):
        """tCCD_L / tCCD_S / tCCD_R against the last column command of the same type."""
        x = same_g[g]
        if x is not None and now - x[0] < self._tCCD_L:
            self._violate("tCCD_L", x, c, self._tCCD_L, now - x[0])
        y = same_s[sid]
        if y is not None and y is not x and now - y[0] < self._tCCD_S:
            self._violate("tCCD_S", y, c, self._tCCD_S, now - y[0])
        if self._nsid > 1:
            for s, y in enumerate(same_s):
                if s != sid and y is not None and now - y[0] < self._tCCD_R:
                    self._violate("tCCD_R", y, c, self._tCCD_R, now - y[0])

    def _bank_closed(self, c, b):
        self._violate("bank_closed", self._pre_cmd[b], c, None, None,
                      detail="bank was never opened" if self._act[b] is None else "bank is closed")

    def _read(self, c, b, sid, bg, col, auto):
        now = c[0]
        g = sid * self._nbg + bg
        row = self._open[b]
        if row is None:
            self._bank_closed(c, b)
        else:
            a = self._act[b]
            if now - a[0] < self._tRCD_RD:
                self._violate("tRCD_RD", a, c, self._tRCD_RD, now - a[0])
        g_rd, s_rd = self._g_rd, self._s_rd
        # fast path: every earlier read is at least tCCD_R (the largest tCCD) away
        last = self._rd_any
        if last is not None and now - last[0] < self._tCCD_max:
            self._ccd(c, now, sid, g, g_rd, s_rd)
        w = self._wr_any
        if w is not None and now - w[0] < self._wtr_l:
            x = self._g_wr[g]
            if x is not None and now - x[0] < self._wtr_l:
                self._violate("tWTR_L", x, c, self._wtr_l, now - x[0])
            if w is not x and now - w[0] < self._wtr_s:
                self._violate("tWTR_S", w, c, self._wtr_s, now - w[0])
        g_rd[g] = c
        s_rd[sid] = c
        self._rd_any = c
        if row is None:
            return (now + self._RL, 0)
        self._rd[b] = c
        data = self.mem.get((b * self._rows + row) * self._cols + col, 0)
        if auto:
            a = self._act[b]
            self._open[b] = None
            self._pre_at[b] = max(now + self._tRTP, a[0] + self._tRAS)
            self._pre_cmd[b] = c
        return (now + self._RL, data)

    def _write(self, c, b, sid, bg, col, auto, data, mask):
        now = c[0]
        g = sid * self._nbg + bg
        row = self._open[b]
        if row is None:
            self._bank_closed(c, b)
        else:
            a = self._act[b]
            if now - a[0] < self._tRCD_WR:
                self._violate("tRCD_WR", a, c, self._tRCD_WR, now - a[0])
        last = self._wr_any
        if last is not None and now - last[0] < self._tCCD_max:
            self._ccd(c, now, sid, g, self._g_wr, self._s_wr)
        r = self._rd_any
        if r is not None and now - r[0] < self._tRTW:
            self._violate("tRTW", r, c, self._tRTW, now - r[0])
        self._g_wr[g] = c
        self._s_wr[sid] = c
        self._wr_any = c
        key = None if row is None else (b * self._rows + row) * self._cols + col
        if data is not None:
            if key is not None:
                self._store(key, data, mask)
        else:
            self._pending.append((now + self._WL, key, c))
        if row is None:
            return
        self._wr[b] = c
        if auto:
            a = self._act[b]
            self._open[b] = None
            self._pre_at[b] = max(now + self._wr_end + self._tWR, a[0] + self._tRAS)
            self._pre_cmd[b] = c

    def _store(self, key, data, mask):
        if key is None:
            return
        data = int(data)
        if mask:
            old = self.mem.get(key, 0)
            keep = 0
            m, i = int(mask), 0
            while m:
                if m & 1:
                    keep |= 0xFF << (8 * i)
                m >>= 1
                i += 1
            data = (data & ~keep) | (old & keep)
        self.mem[key] = data & ((1 << (8 * self.data_bytes)) - 1)

    def _expire(self, cycle):
        """Writes whose data slot (WR + WL) passed before ``cycle`` without data."""
        while self._pending and self._pending[0][0] < cycle:
            due, _, wc = self._pending.popleft()
            self._violate("write_data", wc, Command(due, "wrdata", None, None, None, None, None),
                          self._WL, None, detail=f"no write data at cycle {due} = WR + WL")

    # refresh deadline ----------------------------------------------------------------------------
    def _required(self, cycle):
        """Bank-refreshes due by ``cycle`` at one all-bank refresh per tREFI."""
        return (cycle // self.timing.tREFI) * self.banks

    def _update_ref_deadline(self):
        t = self.timing
        # Refresh k (k = 1, 2, ...) is due at k x tREFI and may be postponed 8 intervals, so with
        # `credit` bank-refreshes done (REFab = `banks` of them) the next deadline is
        # (credit // banks + 1 + 8) x tREFI: a command at or after it is a violation.
        self._ref_deadline = (self._ref_credit // self.banks + 9) * t.tREFI
        self._bank_ref_deadline = min(self._last_ref) + 9 * t.tREFI
        self._ref_deadline_min = (min(self._ref_deadline, self._bank_ref_deadline)
                                  if self.check_refresh and not self._ref_reported else _NEVER)

    def _credit(self, c, units):
        nb = self.banks
        # pulling in: at most 8 refreshes ahead of the schedule count
        self._ref_credit = min(self._ref_credit + units, self._required(c.cycle) + 8 * nb)
        self._last_ref_cmd = c
        self._ref_reported = False
        self._update_ref_deadline()     # re-arms the check

    def _refresh_deadline(self, c):
        t = self.timing
        now = c.cycle
        earlier = self._last_ref_cmd or Command(0, "power-up", None, None, None, None, None)
        self._ref_reported = True       # report once per missed deadline, until the next refresh
        self._ref_deadline_min = _NEVER
        if now >= self._ref_deadline:
            owed = (self._required(now) - self._ref_credit) / self.banks
            self._violate("tREFI", earlier, c, self._ref_deadline - 1 - earlier.cycle,
                          now - earlier.cycle, kind="max",
                          detail=f"{owed:g} refreshes owed, at most 8 may be postponed")
        else:
            b = min(range(self.banks), key=self._last_ref.__getitem__)
            sid, bg, ba, _, _ = self.location(b * self._rows * self._cols)
            self._violate("tREFI", earlier, c, 9 * t.tREFI, now - self._last_ref[b], kind="max",
                          detail=f"bank sid{sid} bg{bg} ba{ba} not refreshed since cycle "
                                 f"{self._last_ref[b]} (9 x tREFI allowed)")
