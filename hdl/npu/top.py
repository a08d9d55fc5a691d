"""NPU top: control (AXI4-Lite) + GEMM tiler + DMA (AXI4 master) + core, as module ``npu_top``.

Ports: ``s_axil`` (AXI4-Lite subordinate, 12-bit addresses, 32-bit data; register map in
:mod:`.control`), ``m_axi`` (AXI4 manager to external memory, width ``cfg.axi_data_width``),
``irq`` (level, IRQ_STATUS & IRQ_ENABLE), plus ``clk``/``rst`` (synchronous, active high).
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.axi import AXI4Signature, AXI4LiteSignature
from .config import NPUConfig
from .control import Control
from .core import Core
from .dma import Dma

__all__ = ["NPUTop", "TOP_NAME"]

TOP_NAME = "npu_top"


class NPUTop(wiring.Component):
    """The NPU chiplet's compute block.

    Parameters
    ----------
    config : NPUConfig

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=12, data_width=32))
    m_axi : Out(AXI4Signature(addr_width, data_width, id_width from the config))
    irq : Out(1)
    """

    def __init__(self, config):
        if not isinstance(config, NPUConfig):
            raise TypeError(f"config must be an NPUConfig, not {config!r}")
        self._cfg = config
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=12, data_width=32)),
            "m_axi": Out(AXI4Signature(addr_width=config.axi_addr_width,
                                       data_width=config.axi_data_width,
                                       id_width=config.axi_id_width)),
            "irq": Out(1),
        })

    @property
    def config(self):
        return self._cfg

    def elaborate(self, platform):
        m = Module()
        m.submodules.control = ctl = Control(self._cfg)
        m.submodules.dma = dma = Dma(self._cfg)
        m.submodules.core = core = Core(self._cfg)
        wiring.connect(m, wiring.flipped(self.s_axil), ctl.s_axil)
        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        wiring.connect(m, ctl.rd_cmd, dma.rd_cmd)
        wiring.connect(m, ctl.wr_cmd, dma.wr_cmd)
        wiring.connect(m, ctl.exe, core.exe)
        wiring.connect(m, dma.sp_w, core.sp_w)
        wiring.connect(m, dma.acc_w, core.acc_w)
        wiring.connect(m, dma.acc_rd_req, core.acc_rd_req)
        wiring.connect(m, core.acc_rd, dma.acc_rd)
        m.d.comb += [
            ctl.rd_done.eq(dma.rd_done), ctl.rd_done_tag.eq(dma.rd_done_tag),
            ctl.wr_done.eq(dma.wr_done), ctl.dma_error.eq(dma.error),
            ctl.core_idle.eq(core.idle), ctl.mac_active.eq(core.mac_active),
            ctl.core_started.eq(core.started), ctl.core_started_tag.eq(core.started_tag),
            ctl.core_landed.eq(core.landed), ctl.core_landed_tag.eq(core.landed_tag),
            ctl.useful_macs_inc.eq(core.useful_macs_inc),
            self.irq.eq(ctl.irq),
        ]
        return m
