"""NPU parameters: one frozen, validated dataclass shared by the core and the system around it.

Every bad value raises :class:`~diestack.hdl.common.params.ConfigError` naming the field
(``NPUConfig(rows=0, cols=4)`` -> ``ConfigError("rows", ...)``).
"""

from dataclasses import dataclass

from ..common.params import ConfigError, check_choice, check_int

__all__ = ["NPUConfig", "DATAFLOWS", "PE_MULTIPLIERS"]

#: Synthesized dataflow capability. With ``"both"`` the runtime command selects WS or OS.
DATAFLOWS = ("ws", "os", "both")
#: PE multiplier implementations (same latency, see hdl/npu/pe.py).
PE_MULTIPLIERS = ("lut", "dsp")


def _is_pow2(n):
    return n >= 1 and (n & (n - 1)) == 0


def _log2_ceil(n):
    return max(1, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class NPUConfig:
    """Parameters of the systolic-array NPU (npu_contract / issue 2).

    Parameters
    ----------
    rows, cols : int
        Array size R x C (2..64 each; non-square allowed). WS: K on rows, N on columns.
    dataflow : str
        ``"ws"``, ``"os"`` or ``"both"`` (synthesized capability).
    sp_kib : int
        Scratchpad capacity in KiB (1..4096). One row holds :attr:`sp_row_bytes` int8 values.
    sp_banks : int
        Scratchpad banks (power of two, 1..16); bank = row address modulo banks.
    acc_kib : int
        Accumulator capacity in KiB (1..4096). One row holds ``cols`` int32 values.
    acc_banks : int
        Accumulator banks (power of two, 1..16).
    axi_data_width : int
        AXI data width in bits: 64, 128 or 256.
    axi_addr_width : int
        AXI address width (12..64).
    axi_id_width : int
        AXI ID width (1..16).
    max_reads_in_flight : int
        DMA read bursts outstanding (1..64).
    cmd_queue_depth : int
        Command queue depth (power of two, 2..256).
    pe_multiplier : str
        ``"lut"`` (default: pipelined shift-and-add in logic; fits 16x16 on an ECP5-85k, whose
        156 DSPs are fewer than 256 PEs, and avoids the DSP columns' long routes) or ``"dsp"``
        (a ``*`` operator the synthesizer maps to DSP blocks).
    """

    rows: int
    cols: int
    dataflow: str = "both"
    sp_kib: int = 64
    sp_banks: int = 4
    acc_kib: int = 32
    acc_banks: int = 2
    axi_data_width: int = 128
    axi_addr_width: int = 32
    axi_id_width: int = 4
    max_reads_in_flight: int = 4
    cmd_queue_depth: int = 8
    pe_multiplier: str = "lut"

    def __post_init__(self):
        check_int("rows", self.rows, lo=2, hi=64)
        check_int("cols", self.cols, lo=2, hi=64)
        if not isinstance(self.dataflow, str):
            raise ConfigError("dataflow", f"must be one of {', '.join(DATAFLOWS)}, not {self.dataflow!r}")
        check_choice("dataflow", self.dataflow, DATAFLOWS)
        check_int("sp_kib", self.sp_kib, lo=1, hi=4096)
        check_int("sp_banks", self.sp_banks, lo=1, hi=16)
        if not _is_pow2(self.sp_banks):
            raise ConfigError("sp_banks", f"must be a power of two, not {self.sp_banks}")
        check_int("acc_kib", self.acc_kib, lo=1, hi=4096)
        check_int("acc_banks", self.acc_banks, lo=1, hi=16)
        if not _is_pow2(self.acc_banks):
            raise ConfigError("acc_banks", f"must be a power of two, not {self.acc_banks}")
        check_int("axi_data_width", self.axi_data_width, choices=(64, 128, 256))
        check_int("axi_addr_width", self.axi_addr_width, lo=12, hi=64)
        check_int("axi_id_width", self.axi_id_width, lo=1, hi=16)
        check_int("max_reads_in_flight", self.max_reads_in_flight, lo=1, hi=64)
        check_int("cmd_queue_depth", self.cmd_queue_depth, lo=2, hi=256)
        if not _is_pow2(self.cmd_queue_depth):
            raise ConfigError("cmd_queue_depth", f"must be a power of two, not {self.cmd_queue_depth}")
        check_choice("pe_multiplier", self.pe_multiplier, PE_MULTIPLIERS)
        if self.sp_rows_per_bank < 1:
            raise ConfigError("sp_kib", f"{self.sp_kib} KiB holds fewer than one {self.sp_row_bytes}-byte "
                                        f"row per bank ({self.sp_banks} banks)")
        if self.acc_rows_per_bank < 1:
            raise ConfigError("acc_kib", f"{self.acc_kib} KiB holds fewer than one {self.acc_row_bytes}-byte "
                                         f"row per bank ({self.acc_banks} banks)")

    # -- derived ------------------------------------------------------------------------------
    @property
    def has_ws(self):
        return self.dataflow in ("ws", "both")

    @property
    def has_os(self):
        return self.dataflow in ("os", "both")

    @property
    def macs(self):
        """Peak MACs per cycle (R*C)."""
        return self.rows * self.cols

    @property
    def sp_row_bytes(self):
        """Bytes per scratchpad row: max(R, C) int8 values."""
        return max(self.rows, self.cols)

    @property
    def sp_rows_per_bank(self):
        return (self.sp_kib * 1024) // (self.sp_row_bytes * self.sp_banks)

    @property
    def sp_rows(self):
        """Scratchpad rows (addresses 0 .. sp_rows-1); bank = addr % sp_banks."""
        return self.sp_rows_per_bank * self.sp_banks

    @property
    def sp_addr_width(self):
        return _log2_ceil(self.sp_rows)

    @property
    def acc_row_bytes(self):
        """Bytes per accumulator row: C int32 values."""
        return 4 * self.cols

    @property
    def acc_rows_per_bank(self):
        return (self.acc_kib * 1024) // (self.acc_row_bytes * self.acc_banks)

    @property
    def acc_rows(self):
        """Accumulator rows (addresses 0 .. acc_rows-1); bank = addr % acc_banks."""
        return self.acc_rows_per_bank * self.acc_banks

    @property
    def acc_addr_width(self):
        return _log2_ceil(self.acc_rows)

    @property
    def axi_bytes(self):
        return self.axi_data_width // 8
