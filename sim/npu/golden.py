"""Independent numpy golden model of the NPU (written from the spec, not from the RTL).

- :func:`gemm`: ``C = A @ B (+ D)`` in exact int32 (int64 internally, wrapped to int32 like
  the hardware's int32 accumulators).
- :func:`requant`: the requantization rule of npu_contract (also documented in
  hdl/npu/requant.py):

      y = clamp(((x * scale) + (1 << (shift-1) if shift > 0 else 0)) >> shift, -128, 127)

  with the product in 64 bits and an arithmetic (flooring) shift, i.e. round half up towards
  +inf; with ReLU, ``y = max(y, 0)`` (before or after the clamp: same result).
- Tile-level references for the core commands (:func:`ws_tile`, :func:`os_tile`) and a dict
  model of the accumulator (:class:`AccModel`).
"""

import numpy as np

__all__ = ["gemm", "requant", "wrap32", "ws_tile", "os_tile", "AccModel"]


def wrap32(x):
    """Wrap an integer array to int32 (two's complement), like a 32-bit accumulator."""
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) % (1 << 32) - (1 << 31)).astype(np.int32)


def gemm(a, b, d=None):
    """Exact ``A[MxK] @ B[KxN] (+ D[MxN])`` as int32 (int8 inputs, int32 D)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not multiply")
    c = a.astype(np.int64) @ b.astype(np.int64)
    if d is not None:
        d = np.asarray(d)
        if d.shape != c.shape:
            raise ValueError(f"gemm: D shape {d.shape} is not {c.shape}")
        c = c + d.astype(np.int64)
    return wrap32(c)


def requant(x, scale, shift, relu=False):
    """Requantize int32 ``x`` to int8 by the documented rule (numpy int64 arithmetic)."""
    shift = int(shift)
    if not 0 <= shift <= 63:
        raise ValueError(f"requant: shift must be 0..63, not {shift}")
    scale = int(scale)
    if not -(1 << 31) <= scale < (1 << 31):
        raise ValueError(f"requant: scale must be an int32, not {scale}")
    p = np.asarray(x, dtype=np.int64) * np.int64(scale)       # |p| <= 2**62: exact in int64
    if shift > 0:
        p = p + np.int64(1 << (shift - 1))
    y = p >> np.int64(shift)                                  # numpy >> on int64 is arithmetic
    if relu:
        y = np.maximum(y, 0)
    return np.clip(y, -128, 127).astype(np.int8)


def ws_tile(a_rows, b_rows, k_valid, n_valid):
    """What one WS COMPUTE produces: ``a_rows`` is the M x W block of scratchpad A rows (W =
    row bytes), ``b_rows`` the R x W block preloaded; lanes beyond k_valid/n_valid count as
    zero. Returns M x n_valid int64 (the caller adds/overwrites and wraps)."""
    a = np.asarray(a_rows, dtype=np.int64)[:, :k_valid]
    b = np.asarray(b_rows, dtype=np.int64)[:k_valid, :n_valid]
    return a @ b


def os_tile(a_block, b_rows, k, m_valid, n_valid):
    """What one OS COMPUTE produces: ``a_block`` is the R x K matrix A[m0:m0+R, 0:K],
    ``b_rows`` the K x W block of B rows. Returns m_valid x n_valid int64."""
    a = np.asarray(a_block, dtype=np.int64)[:m_valid, :k]
    b = np.asarray(b_rows, dtype=np.int64)[:k, :n_valid]
    return a @ b


class AccModel:
    """Dict model of the accumulator: ``write(addr, values, mask, accumulate)``, ``read(addr)``."""

    def __init__(self, cols):
        self.cols = cols
        self.rows = {}

    def write(self, addr, values, mask=None, accumulate=False):
        old = self.rows.get(addr, np.zeros(self.cols, dtype=np.int64))
        new = old.copy()
        values = np.asarray(values, dtype=np.int64)
        for j in range(self.cols):
            if mask is None or (mask >> j) & 1:
                new[j] = (old[j] + values[j]) if accumulate else values[j]
        self.rows[addr] = wrap32(new).astype(np.int64)

    def read(self, addr):
        return self.rows.get(addr, np.zeros(self.cols, dtype=np.int64)).copy()
