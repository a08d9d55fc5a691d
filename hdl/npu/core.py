"""NPU core: scratchpad + systolic array (WS/OS) + accumulator + requant, driven by tile commands.

Stream payload layouts (the interface between the core and the DMA/control/tiler around it)
are built from an :class:`~diestack.hdl.npu.config.NPUConfig` by the ``*_layout(cfg)`` functions
below. All streams are :mod:`amaranth.lib.stream` interfaces (valid/ready/payload); a transfer
happens in a cycle where both ``valid`` and ``ready`` are high.

Command semantics (``exe`` stream, one :func:`exec_cmd_layout` payload per tile op)
-------------------------------------------------------------------------------------
Let R = ``cfg.rows``, C = ``cfg.cols``. Scratchpad row *r*, byte *e* holds an int8 value;
accumulator row *r*, lane *j* (bits ``[32j, 32j+32)``) holds an int32.

``op = PRELOAD (0)``, ``dataflow = WS (0)``
    Load the B tile into the shadow weight buffer: PE[i][j] gets scratchpad row ``b_addr + i``,
    byte *j*, i.e. row ``b_addr + i`` holds ``B[k0+i][n0 : n0+C]``. Rows ``i >= k_valid`` and
    bytes ``j >= n_valid`` are taken as zero. Takes R cycles of the B read port; it overlaps a
    running COMPUTE (it waits only until the previous preload has been made active in every PE).
    The preloaded weights become active with the next WS COMPUTE. ``a_addr``, ``acc_addr``,
    ``rows``, ``accumulate`` are ignored.
``op = COMPUTE (1)``, ``dataflow = WS (0)``
    For m in 0..rows-1: read A row ``a_addr + m`` (bytes i < k_valid: ``A[m0+m][k0+i]``, bytes
    ``i >= k_valid`` taken as zero), stream it through the array against the active weights and
    write ``sum_i A[m][k0+i] * B[k0+i][n0+j]`` into accumulator row ``acc_addr + m`` lane *j*
    for ``j < n_valid`` (lanes ``j >= n_valid`` are not written): added to the stored value when
    ``accumulate`` = 1, overwriting it when 0. If a PRELOAD was issued since the previous WS
    COMPUTE, its weights become active with this command's first row (a COMPUTE without a new
    PRELOAD reuses the active weights). One A row per cycle: back-to-back COMPUTEs with PRELOADs
    in between run without bubbles as long as ``rows >= R + C``-ish (the preload of tile t+1
    starts once tile t's weights are active in all PEs, R + C - 1 cycles after its first row).
``op = COMPUTE (1)``, ``dataflow = OS (1)``
    Output-stationary C tile: ``rows`` = K steps (1..4096). Step *k* uses
    ``A[m0+i][k] = `` byte ``k % R`` of scratchpad row ``a_addr + (k // R) * a_stride + i``
    (i = 0..R-1, i.e. the A block is stored as groups of R rows, each row holding R consecutive
    K values of one M row; consecutive groups are ``a_stride`` rows apart) and
    ``B[k][n0+j]`` = byte *j* of scratchpad row ``b_addr + k``. The result row *i* (for
    ``i < k_valid``, here the number of valid M rows) is written to accumulator row
    ``acc_addr + i``, lanes ``j < n_valid``, accumulate or overwrite as above. The A groups pass
    through a double-buffered R x R transposer. Results drain through a double-buffered output
    register while the next tile computes; a tile's K must be >= 2R + C for zero bubbles
    (shorter tiles are padded with stall cycles). PRELOAD with ``dataflow = OS`` is a no-op.

Changing ``dataflow`` between commands waits until the array is empty (a few tens of cycles).

Other streams: ``sp_w`` writes one masked scratchpad row per cycle (always ready: writes use a
separate memory port and never disturb reads; a read of a row written in the same cycle sees the
old value). ``acc_w`` writes one accumulator row (``accumulate`` = 1 adds, 0 overwrites); it is
not ready in cycles where the array writes the accumulator. ``acc_rd_req``/``acc_rd`` read one
row per cycle (in order, full throughput, a few cycles latency; back-pressure on ``acc_rd``
stops ``acc_rd_req`` once the output FIFO is full): mode 0 returns C int32; mode 1 returns C
requantized int8 in the low C bytes (rule in :mod:`.requant`), upper bits zero. Reads are
ordered after all accumulator writes accepted earlier: wait for ``idle`` before reading results
of a COMPUTE.
"""

import enum

from amaranth.hdl import unsigned, signed
from amaranth.lib import data

from .config import NPUConfig

__all__ = ["ExecOp", "Dataflow", "exec_cmd_layout", "sp_write_layout", "acc_write_layout",
           "acc_read_req_layout", "acc_read_resp_layout", "MAX_ROWS"]

#: Largest ``rows`` (M for WS COMPUTE, K for OS COMPUTE) of one command.
MAX_ROWS = 4096


class ExecOp(enum.IntEnum):
    PRELOAD = 0
    COMPUTE = 1


class Dataflow(enum.IntEnum):
    WS = 0
    OS = 1


def _check_cfg(cfg):
    if not isinstance(cfg, NPUConfig):
        raise TypeError(f"cfg must be an NPUConfig, not {cfg!r}")


def exec_cmd_layout(cfg):
    """Payload of the ``exe`` stream (see the module docstring for the semantics).

    Fields: ``op`` (1 bit, :class:`ExecOp`), ``dataflow`` (1 bit, :class:`Dataflow`),
    ``a_addr``, ``b_addr``, ``a_stride`` (scratchpad rows, ``cfg.sp_addr_width`` bits; a_stride
    is used by OS only), ``acc_addr`` (``cfg.acc_addr_width`` bits), ``rows`` (13 bits, 1..4096),
    ``k_valid`` (1..R), ``n_valid`` (1..C), ``accumulate`` (1 bit).
    """
    _check_cfg(cfg)
    return data.StructLayout({
        "op": unsigned(1),
        "dataflow": unsigned(1),
        "a_addr": unsigned(cfg.sp_addr_width),
        "b_addr": unsigned(cfg.sp_addr_width),
        "a_stride": unsigned(cfg.sp_addr_width),
        "acc_addr": unsigned(cfg.acc_addr_width),
        "rows": unsigned(13),
        "k_valid": unsigned(cfg.rows.bit_length()),
        "n_valid": unsigned(cfg.cols.bit_length()),
        "accumulate": unsigned(1),
    })


def sp_write_layout(cfg):
    """Payload of ``sp_w``: ``addr`` (scratchpad row), ``data`` (sp_row_bytes int8, byte e in
    bits [8e, 8e+8)), ``mask`` (one write enable per byte)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.sp_addr_width),
        "data": unsigned(8 * cfg.sp_row_bytes),
        "mask": unsigned(cfg.sp_row_bytes),
    })


def acc_write_layout(cfg):
    """Payload of ``acc_w``: ``addr`` (accumulator row), ``data`` (C int32, lane j in bits
    [32j, 32j+32)), ``accumulate`` (1 = add to the stored row, 0 = overwrite)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.acc_addr_width),
        "data": unsigned(32 * cfg.cols),
        "accumulate": unsigned(1),
    })


def acc_read_req_layout(cfg):
    """Payload of ``acc_rd_req``: ``addr``, ``mode`` (0 = int32 row, 1 = requantized int8),
    ``scale`` (signed 32), ``shift`` (0..63), ``relu`` (1 bit)."""
    _check_cfg(cfg)
    return data.StructLayout({
        "addr": unsigned(cfg.acc_addr_width),
        "mode": unsigned(1),
        "scale": signed(32),
        "shift": unsigned(6),
        "relu": unsigned(1),
    })


def acc_read_resp_layout(cfg):
    """Payload of ``acc_rd``: ``data`` (mode 0: C int32, lane j in bits [32j, 32j+32); mode 1:
    C int8 in bits [8j, 8j+8), the rest zero)."""
    _check_cfg(cfg)
    return data.StructLayout({"data": unsigned(32 * cfg.cols)})
