"""Refresh timer: all-bank refresh with postponing, or per-bank refresh in round-robin order.

The timer only counts obligations; the scheduler (``hdl/hbm/scheduler.py``) decides when to
precharge and issue the refresh commands.

- ``mode="allbank"``: every tREFI one REFab becomes due. ``pending`` counts due, not yet issued
  REFabs. The scheduler refreshes opportunistically when its queue is empty; when ``pending``
  reaches ``postpone`` (at most 8, JEDEC's limit on postponed REFab, hbm.md §1.2 tREFI) the
  refresh becomes ``urgent``: the scheduler stops activating, precharges and refreshes until
  ``pending`` is zero (the postponed refreshes are issued back to back, which costs one PREA for
  all of them).
- ``mode="perbank"``: every tREFIpb (tREFI / banks) one REFpb becomes due, for the bank named by
  ``pb_bank`` (banks in a fixed round-robin order, so every bank is refreshed once per tREFI on
  average); postponing and urgency as above, counted in REFpb.

Members
-------
issued : In(1)
    A refresh command of the configured kind was issued this cycle.
pending : Out(4)
    Refreshes due and not yet issued.
urgent : Out(1)
    ``pending >= postpone``: refresh must go now.
pb_bank : Out(bank bits)
    The bank the next REFpb must refresh (per-bank mode).
"""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.params import check_choice, check_int
from .bank import bits_for

__all__ = ["RefreshTimer", "REFRESH_MODES"]

REFRESH_MODES = ("allbank", "perbank")


class RefreshTimer(wiring.Component):
    """Counts refresh obligations (see module docstring). Latency: ``pending`` updates one
    cycle after ``issued`` or an interval expiry."""

    def __init__(self, timing, *, mode="allbank", postpone=8):
        self._t = timing
        self._mode = check_choice("refresh", mode, REFRESH_MODES)
        self._postpone = check_int("postpone", postpone, lo=1, hi=8)
        super().__init__({"issued": In(1), "pending": Out(4), "urgent": Out(1),
                          "pb_bank": Out(bits_for(timing.banks))})

    def elaborate(self, platform):
        m = Module()
        t = self._t
        interval = t.tREFI if self._mode == "allbank" else t.tREFIpb
        cnt = Signal(range(interval + 1))
        tick = cnt == interval - 1
        m.d.sync += cnt.eq(Mux(tick, 0, cnt + 1))
        pending = Signal(4)
        with m.If(tick & ~self.issued):
            m.d.sync += pending.eq(Mux(pending == 15, 15, pending + 1))
        with m.Elif(~tick & self.issued & (pending != 0)):
            m.d.sync += pending.eq(pending - 1)
        if self._mode == "perbank":
            with m.If(self.issued):
                m.d.sync += self.pb_bank.eq(Mux(self.pb_bank == t.banks - 1, 0, self.pb_bank + 1))
        m.d.comb += [self.pending.eq(pending), self.urgent.eq(pending >= self._postpone)]
        return m
