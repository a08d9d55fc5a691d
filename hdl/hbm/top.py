"""``hbm_top``: N pseudo-channel controllers, each behind its own AXI4 subordinate port.

Like vendor HBM hard IP (one AXI port per pseudo-channel), every channel ``c`` has an AXI port
``ch<c>_s_axi`` and a DFI port ``ch<c>_dfi`` (``hdl/hbm/controller.py``), plus its counters
``ch<c>_stat``. The address map's channel bits select the port (the host or an interconnect
routes); inside a channel they are ignored.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.axi import AXI4Signature
from ..common.params import check_int
from .axi_port import AXIPort
from .controller import ControllerConfig, HBMController

__all__ = ["HBMTop"]


class HBMTop(wiring.Component):
    """N controllers with AXI ports.

    Parameters
    ----------
    config : ControllerConfig
        Per-channel configuration (``channels`` = N).
    id_width : int
        AXI ID bits.
    """

    def __init__(self, config, *, id_width=4):
        if not isinstance(config, ControllerConfig):
            raise TypeError(f"config must be a ControllerConfig, not {config!r}")
        self._cfg = config
        self._iw = check_int("id_width", id_width, lo=1, hi=16)
        self._ctl = [HBMController(config) for _ in range(config.channels)]
        self._aw = max(12, self._ctl[0].addrmap.addr_bits)
        members = {}
        for c, ctl in enumerate(self._ctl):
            members[f"ch{c}_s_axi"] = In(AXI4Signature(addr_width=self._aw,
                                                       data_width=config.data_bits,
                                                       id_width=id_width))
            members[f"ch{c}_dfi"] = Out(ctl.dfi.signature)
            members[f"ch{c}_stat"] = Out(ctl.stat.signature)
        super().__init__(members)

    @property
    def config(self):
        return self._cfg

    @property
    def addr_width(self):
        return self._aw

    @property
    def addrmap(self):
        return self._ctl[0].addrmap

    def elaborate(self, platform):
        m = Module()
        for c, ctl in enumerate(self._ctl):
            port = AXIPort(addr_width=self._aw, data_width=self._cfg.data_bits,
                           id_width=self._iw, native_addr_width=ctl.addrmap.addr_bits,
                           outstanding=max(16, self._cfg.rob_depth // 2),
                           combine=self._cfg.ecc)     # fewer ECC read-modify-writes
            m.submodules[f"ch{c}_axi"] = port
            m.submodules[f"ch{c}_ctl"] = ctl
            wiring.connect(m, wiring.flipped(getattr(self, f"ch{c}_s_axi")), port.s_axi)
            wiring.connect(m, port.req, ctl.req)
            wiring.connect(m, port.resp, ctl.resp)
            wiring.connect(m, wiring.flipped(getattr(self, f"ch{c}_dfi")), ctl.dfi)
            wiring.connect(m, wiring.flipped(getattr(self, f"ch{c}_stat")), ctl.stat)
        return m
