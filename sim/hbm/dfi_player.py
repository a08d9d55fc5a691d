"""A tiny DFI command player: a stand-in controller so the DFI monitor can be tested without one.

:class:`DFIPlayer` drives the ``dfi__*`` controller-side outputs straight from ``play__*`` inputs
(combinationally, so a cocotb test that sets ``play__*`` just after a rising edge issues that
command in that cycle, like a registered controller output). It captures read data like a
controller would: ``rd_count`` counts cycles with ``dfi__rddata_valid`` high and ``rd_last`` holds
the last ``dfi__rddata`` seen (both registered). Used only by tests/hbm/test_dfi_monitor.py.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...hdl.hbm.controller import DFISignature

__all__ = ["DFIPlayer"]


class DFIPlayer(wiring.Component):
    """Pass-through DFI driver with read-data capture (test top).

    Members
    -------
    play : In(command part of the DFI signature)
        Command, write data and mask to put on the DFI bus this cycle.
    dfi : Out(DFISignature)
        The DFI bus (watched by :class:`~diestack.sim.hbm.dfi_monitor.DFIMonitor`).
    rd_count : Out(16)
        Number of cycles with ``rddata_valid`` seen so far.
    rd_last : Out(width of ``rddata``)
        Last read data seen.
    """

    def __init__(self, timing, *, ecc=False):
        sig = DFISignature(timing, ecc=ecc)
        cmd = wiring.Signature({k: v for k, v in sig.members.items() if k not in ("rddata", "rddata_valid")})
        self._names = list(cmd.members)
        width = sig.members["rddata"].shape
        super().__init__({"play": In(cmd), "dfi": Out(sig), "rd_count": Out(16), "rd_last": Out(width)})

    def elaborate(self, platform):
        m = Module()
        for name in self._names:
            m.d.comb += getattr(self.dfi, name).eq(getattr(self.play, name))
        with m.If(self.dfi.rddata_valid):
            m.d.sync += [self.rd_count.eq(self.rd_count + 1), self.rd_last.eq(self.dfi.rddata)]
        return m
