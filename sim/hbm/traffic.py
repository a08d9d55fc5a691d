"""HBM request traffic: synthetic patterns and the DRAMsim3 trace format.

A :class:`Trace` is three equal-length numpy arrays: ``addr`` (uint64 byte address, 64-byte
aligned), ``write`` (bool) and ``cycle`` (uint64 issue cycle; 0 everywhere = a closed, always-full
queue, as in the peer runs of hbm.md). Every request moves :data:`REQUEST_BYTES` = 64 bytes.

Patterns (:func:`generate`), all seeded and reproducible:

``stream``
    Sequential 64-byte reads from ``base`` (hbm.md "stream read").
``random``
    Uniformly random 64-byte-aligned reads over ``capacity`` bytes (hbm.md "random read").
``rw21``
    The sequential stream with every third request a write: 2 reads : 1 write
    (hbm.md "stream read/write 2:1").
``interleaved4``
    Four sequential read streams, taken round-robin, whose bases are ``capacity / 4`` apart, so
    they differ only in the two top address bits: under any address map that keeps the row in the
    high bits they hit the same bank (and SID/bank group/channel) in four different rows
    (hbm.md "4 streams colliding in one bank"). ``bases=`` overrides the four bases.

:func:`mixed` makes the data-integrity traffic of the testbenches and the 1M-command benchmark:
random reads and writes over a window of lines that are revisited, scattered over the address
space.

Trace files (:func:`read_trace`, :func:`write_trace`): DRAMsim3's format, one request per line,
``<hex byte address> <READ|WRITE> <issue cycle>``, e.g. ``0x1AA9E6600 READ 0`` (hbm.md, "Peer trace
format"). Blank lines and ``#`` comments are skipped. A bad line raises
:class:`~diestack.hdl.common.params.ConfigError` whose field is ``<file>:<line>`` and whose
message names the bad field.
"""

import os
import tempfile

import numpy as np

from ...hdl.common.params import ConfigError, check_choice, check_int

__all__ = ["REQUEST_BYTES", "PATTERNS", "Trace", "generate", "mixed", "read_trace", "write_trace"]

REQUEST_BYTES = 64
PATTERNS = ("stream", "random", "rw21", "interleaved4")


class Trace:
    """Requests as arrays: ``addr`` (uint64), ``write`` (bool), ``cycle`` (uint64)."""

    def __init__(self, addr, write, cycle=None):
        self.addr = np.asarray(addr, dtype=np.uint64)
        self.write = np.asarray(write, dtype=bool)
        self.cycle = (np.zeros(len(self.addr), dtype=np.uint64) if cycle is None
                      else np.asarray(cycle, dtype=np.uint64))
        if not (self.addr.shape == self.write.shape == self.cycle.shape) or self.addr.ndim != 1:
            raise ValueError("addr, write and cycle must be 1-D arrays of one length")

    def __len__(self):
        return len(self.addr)

    def __iter__(self):
        """Yield ``(addr, "READ"|"WRITE", cycle)`` tuples of Python ints."""
        for a, w, c in zip(self.addr.tolist(), self.write.tolist(), self.cycle.tolist()):
            yield a, ("WRITE" if w else "READ"), c

    def __eq__(self, other):
        return (isinstance(other, Trace) and np.array_equal(self.addr, other.addr)
                and np.array_equal(self.write, other.write) and np.array_equal(self.cycle, other.cycle))

    def __repr__(self):
        return f"Trace({len(self)} requests, {int(self.write.sum())} writes)"

    @property
    def reads(self):
        return int(len(self) - self.write.sum())

    @property
    def writes(self):
        return int(self.write.sum())

    @property
    def bytes(self):
        return len(self) * REQUEST_BYTES

    def save_npz(self, path):
        """Save as .npz (for passing a trace to a cocotb testbench through a job folder)."""
        np.savez(path, addr=self.addr, write=self.write, cycle=self.cycle)

    @classmethod
    def load_npz(cls, path):
        with np.load(path) as z:
            return cls(z["addr"], z["write"], z["cycle"])


def generate(pattern, n, *, seed=0, capacity=1 << 29, base=0, bases=None):
    """Make ``n`` 64-byte requests of ``pattern`` (see module doc).

    Parameters
    ----------
    pattern : str
        One of :data:`PATTERNS`.
    n : int
        Number of requests.
    seed : int
        Seed of the ``random`` pattern (the others are deterministic).
    capacity : int
        Address space in bytes (a power of two, at least 4 x 64): ``random`` draws from it,
        ``interleaved4`` splits it in four, all addresses wrap into it.
    base : int
        First address of ``stream`` / ``rw21``.
    bases : sequence of 4 ints, optional
        Bases of the ``interleaved4`` streams.
    """
    check_choice("pattern", pattern, PATTERNS)
    n = check_int("requests", n, lo=1)
    capacity = check_int("capacity", capacity, lo=4 * REQUEST_BYTES)
    if capacity & (capacity - 1):
        raise ConfigError("capacity", f"must be a power of two, not {capacity}")
    seed = check_int("seed", seed, lo=0)
    base = check_int("base", base, lo=0)
    lines = capacity // REQUEST_BYTES
    i = np.arange(n, dtype=np.uint64)
    if pattern == "random":
        rng = np.random.default_rng(seed)
        line = rng.integers(0, lines, size=n, dtype=np.uint64)
        write = np.zeros(n, dtype=bool)
    elif pattern in ("stream", "rw21"):
        line = (np.uint64(base // REQUEST_BYTES) + i) % np.uint64(lines)
        write = (i % np.uint64(3) == np.uint64(2)) if pattern == "rw21" else np.zeros(n, dtype=bool)
    else:
        if bases is None:
            bases = [k * (capacity // 4) for k in range(4)]
        if len(bases) != 4:
            raise ConfigError("bases", f"interleaved4 needs 4 stream bases, not {len(bases)}")
        b = np.array([check_int(f"bases[{k}]", v, lo=0) // REQUEST_BYTES for k, v in enumerate(bases)],
                     dtype=np.uint64)
        line = (b[(i % np.uint64(4)).astype(np.intp)] + i // np.uint64(4)) % np.uint64(lines)
        write = np.zeros(n, dtype=bool)
    return Trace(line * np.uint64(REQUEST_BYTES), write)


def mixed(n, *, seed=0, capacity=1 << 29, write_fraction=0.5, window=None):
    """``n`` random 64-byte reads and writes for data-integrity checks.

    Requests draw one of ``window`` lines (default ``max(64, n // 2)``, so a line is visited about
    twice and reads find data written before them); the line index is scattered over the whole
    ``capacity`` by an odd multiplier (a bijection modulo the power-of-two number of lines), so
    the traffic spreads over channels, bank groups, banks and rows under any address map. Each
    request is a write with probability ``write_fraction``.
    """
    n = check_int("requests", n, lo=1)
    capacity = check_int("capacity", capacity, lo=4 * REQUEST_BYTES)
    if capacity & (capacity - 1):
        raise ConfigError("capacity", f"must be a power of two, not {capacity}")
    if not 0.0 <= write_fraction <= 1.0:
        raise ConfigError("write_fraction", f"must be in [0, 1], not {write_fraction!r}")
    window = max(64, n // 2) if window is None else check_int("window", window, lo=1)
    rng = np.random.default_rng(check_int("seed", seed, lo=0))
    slot = rng.integers(0, window, n, dtype=np.int64)
    line = (slot * 0x9E3779B1) % (capacity // REQUEST_BYTES)
    write = rng.random(n) < write_fraction
    return Trace(line.astype(np.uint64) * np.uint64(REQUEST_BYTES), write)


def read_trace(path, *, capacity=None):
    """Read a DRAMsim3 trace file into a :class:`Trace`.

    Addresses are aligned down to 64 bytes (a request moves the 64-byte line holding the address).
    Cycles must be non-decreasing. With ``capacity``, addresses must lie below it.

    Raises
    ------
    ConfigError
        ``field`` = ``"<file>:<line>"``; the message names the bad field (address, command,
        cycle) or says what is missing. A missing or empty file has ``field`` ``"trace"``.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        f = open(path, encoding="utf-8", errors="strict")
    except OSError as e:
        raise ConfigError("trace", f"cannot read {path}: {e.strerror or e}") from None
    addrs, writes, cycles = [], [], []
    last = 0
    with f:
        try:
            for lineno, text in enumerate(f, 1):
                text = text.split("#", 1)[0].strip()
                if not text:
                    continue
                where = f"{name}:{lineno}"
                parts = text.split()
                if len(parts) != 3:
                    raise ConfigError(where, f"expected '<hex address> <READ|WRITE> <cycle>' (3 fields), "
                                             f"found {len(parts)}: {text!r}")
                a, op, c = parts
                try:
                    addr = int(a, 16)
                    if addr < 0:
                        raise ValueError
                except ValueError:
                    raise ConfigError(where, f"field 1 (address) {a!r} is not a hexadecimal byte address") from None
                if capacity is not None and addr >= capacity:
                    raise ConfigError(where, f"field 1 (address) {a} is beyond the {capacity:#x}-byte address space")
                opu = op.upper()
                if opu not in ("READ", "WRITE"):
                    raise ConfigError(where, f"field 2 (command) {op!r} is not READ or WRITE")
                if not (c.isascii() and c.isdigit()):     # '²'.isdigit() is True
                    raise ConfigError(where, f"field 3 (cycle) {c!r} is not a non-negative decimal integer")
                cyc = int(c)
                if cyc < last:
                    raise ConfigError(where, f"field 3 (cycle) {cyc} is earlier than the previous request's {last}")
                last = cyc
                addrs.append(addr & ~(REQUEST_BYTES - 1))
                writes.append(opu == "WRITE")
                cycles.append(cyc)
        except UnicodeDecodeError as e:
            raise ConfigError("trace", f"{path} is not a text trace ({e.reason})") from None
    if not addrs:
        raise ConfigError("trace", f"{path} holds no requests")
    if max(addrs) >= 1 << 64 or max(cycles) >= 1 << 64:
        raise ConfigError("trace", f"{path}: address or cycle does not fit in 64 bits")
    return Trace(np.array(addrs, dtype=np.uint64), np.array(writes, dtype=bool),
                 np.array(cycles, dtype=np.uint64))


def write_trace(path, trace):
    """Write a :class:`Trace` in DRAMsim3's format (atomic: temp file, then rename)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".trace-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            ops = np.where(trace.write, "WRITE", "READ")
            f.writelines(f"0x{a:X} {o} {c}\n" for a, o, c in
                         zip(trace.addr.tolist(), ops.tolist(), trace.cycle.tolist()))
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
