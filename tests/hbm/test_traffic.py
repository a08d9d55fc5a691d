"""Traffic patterns and the DRAMsim3 trace reader/writer."""

import os
import random

import numpy as np
import pytest

from diestack.hdl.common.params import ConfigError
from diestack.sim.hbm.traffic import (PATTERNS, REQUEST_BYTES, Trace, generate, mixed,
                                      read_trace, write_trace)

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(1 << 30)))
CAP = 1 << 29


def test_stream_is_sequential_reads():
    t = generate("stream", 100, base=4096, capacity=CAP)
    assert len(t) == 100 and t.writes == 0 and t.bytes == 6400
    assert t.addr.tolist() == [4096 + 64 * i for i in range(100)]
    assert not t.cycle.any()


def test_stream_wraps_in_capacity():
    t = generate("stream", 10, base=1024 - 128, capacity=1024)
    assert t.addr.tolist() == [896, 960, 0, 64, 128, 192, 256, 320, 384, 448]


def test_random_is_seeded_aligned_and_spread():
    print(f"seed {SEED}")
    a = generate("random", 20000, seed=SEED, capacity=CAP)
    b = generate("random", 20000, seed=SEED, capacity=CAP)
    c = generate("random", 20000, seed=SEED + 1, capacity=CAP)
    assert a == b and a != c, f"seed {SEED}"
    assert a.writes == 0
    assert not (a.addr % REQUEST_BYTES).any() and int(a.addr.max()) < CAP
    # uniform over the space: each eighth gets 1/8 +- 5 sigma
    counts = np.bincount((a.addr // np.uint64(CAP // 8)).astype(np.int64), minlength=8)
    assert (abs(counts - 2500) < 5 * np.sqrt(2500 * 7 / 8)).all(), f"seed {SEED}: {counts}"


def test_rw21_two_reads_per_write():
    t = generate("rw21", 300, capacity=CAP)
    assert (t.reads, t.writes) == (200, 100)
    ops = [op for _, op, _ in t][:6]
    assert ops == ["READ", "READ", "WRITE", "READ", "READ", "WRITE"]
    assert t.addr.tolist() == [64 * i for i in range(300)]


def test_interleaved4_round_robin_over_four_bases():
    t = generate("interleaved4", 12, capacity=CAP)
    q = CAP // 4
    assert t.addr.tolist() == [0, q, 2 * q, 3 * q, 64, q + 64, 2 * q + 64, 3 * q + 64,
                               128, q + 128, 2 * q + 128, 3 * q + 128]
    # the four streams differ only in the two top address bits
    low = t.addr % np.uint64(q)
    assert (low.reshape(3, 4) == low.reshape(3, 4)[:, :1]).all()
    t2 = generate("interleaved4", 8, bases=[0, 1 << 20, 2 << 20, 3 << 20], capacity=CAP)
    assert t2.addr.tolist()[:4] == [0, 1 << 20, 2 << 20, 3 << 20]


def test_mixed_revisits_a_scattered_window():
    print(f"seed {SEED}")
    n = 20000
    t = mixed(n, seed=SEED, capacity=CAP, write_fraction=0.25)
    assert t == mixed(n, seed=SEED, capacity=CAP, write_fraction=0.25), f"seed {SEED}"
    assert not (t.addr % REQUEST_BYTES).any() and int(t.addr.max()) < CAP
    # a window of W = n/2 lines drawn n times: W * (1 - exp(-2)) = 8647 distinct lines expected
    distinct = len(np.unique(t.addr))
    assert abs(distinct - 8647) < 200, f"seed {SEED}: {distinct} distinct lines"
    assert abs(t.writes - n / 4) < 5 * np.sqrt(n * 0.25 * 0.75), f"seed {SEED}: {t.writes}"
    # scattered: every eighth of the space is hit, none holds more than twice its share
    counts = np.bincount((t.addr // np.uint64(CAP // 8)).astype(np.int64), minlength=8)
    assert counts.min() > 0 and counts.max() < 2 * n / 8, f"seed {SEED}: {counts}"
    # every read of a line written before it sees that data in the testbench: there are such reads
    first_write = {}
    hits = 0
    for k, (a, w) in enumerate(zip(t.addr.tolist(), t.write.tolist())):
        if w:
            first_write.setdefault(a, k)
        elif a in first_write:
            hits += 1
    assert hits > n / 20, f"seed {SEED}: only {hits} reads after a write to the same line"


@pytest.mark.parametrize("kw,field", [
    (dict(n=0), "requests"),
    (dict(n=5, capacity=3000), "capacity"),
    (dict(n=5, write_fraction=1.5), "write_fraction"),
    (dict(n=5, window=0), "window"),
])
def test_mixed_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError) as info:
        mixed(kw.pop("n"), **kw)
    assert info.value.field == field


@pytest.mark.parametrize("kw,field", [
    (dict(pattern="zigzag", n=5), "pattern"),
    (dict(pattern="stream", n=0), "requests"),
    (dict(pattern="random", n=5, capacity=1000), "capacity"),
    (dict(pattern="random", n=5, seed=-1), "seed"),
    (dict(pattern="interleaved4", n=5, bases=[0, 1]), "bases"),
])
def test_generate_errors_name_the_field(kw, field):
    with pytest.raises(ConfigError) as info:
        generate(kw.pop("pattern"), kw.pop("n"), **kw)
    assert info.value.field == field


@pytest.mark.parametrize("pattern", PATTERNS)
def test_trace_roundtrip(tmp_path, pattern):
    t = generate(pattern, 500, seed=SEED, capacity=CAP)
    t.cycle[:] = np.arange(500, dtype=np.uint64) * np.uint64(3)
    p = tmp_path / "t.trace"
    write_trace(p, t)
    assert read_trace(p) == t, f"seed {SEED}"
    t.save_npz(tmp_path / "t.npz")
    assert Trace.load_npz(tmp_path / "t.npz") == t


def test_read_dramsim3_example(tmp_path):
    p = tmp_path / "peer.trace"
    p.write_text("# DRAMsim3 trace\n0x1AA9E6600 READ 0\n\n0x1aa9e6640 WRITE 0   # tail comment\n"
                 "1AA9E6685 read 7\n")
    t = read_trace(p)
    assert t.addr.tolist() == [0x1AA9E6600, 0x1AA9E6640, 0x1AA9E6680]   # last one aligned down
    assert t.write.tolist() == [False, True, False] and t.cycle.tolist() == [0, 0, 7]


@pytest.mark.parametrize("line,what", [
    ("0xZZ READ 0", "field 1 (address)"),
    ("0x100 FETCH 0", "field 2 (command)"),
    ("0x100 READ -4", "field 3 (cycle)"),
    ("0x100 READ 1.5", "field 3 (cycle)"),
    ("0x100 READ \u00b2", "field 3 (cycle)"),      # '\u00b2'.isdigit() but int() rejects it
    ("0x100 READ", "3 fields"),
    ("0x100 READ 0 extra", "3 fields"),
    ("0x100 READ 2", "earlier than"),           # after a line with cycle 5
    ("0x40000000 READ 9", "beyond"),             # capacity 1 GiB
])
def test_bad_lines_name_line_and_field(tmp_path, line, what):
    p = tmp_path / "bad.trace"
    p.write_text(f"0x0 READ 0\n# comment\n0x40 WRITE 5\n{line}\n0x80 READ 9\n")
    with pytest.raises(ConfigError) as info:
        read_trace(p, capacity=1 << 30)
    assert info.value.field == "bad.trace:4", str(info.value)
    assert what in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError) as info:
        read_trace(tmp_path / "nope.trace")
    assert info.value.field == "trace" and "nope.trace" in str(info.value)
    (tmp_path / "empty.trace").write_text("# nothing\n\n")
    with pytest.raises(ConfigError) as info:
        read_trace(tmp_path / "empty.trace")
    assert "no requests" in str(info.value)
    (tmp_path / "bin.trace").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as info:
        read_trace(tmp_path / "bin.trace")
    assert info.value.field == "trace"


def test_write_trace_is_atomic(tmp_path):
    p = tmp_path / "keep.trace"
    p.write_text("0x0 READ 0\n")

    class Broken(Trace):
        @property
        def write(self):
            raise RuntimeError("boom")

        @write.setter
        def write(self, v):
            pass

    with pytest.raises(RuntimeError):
        write_trace(p, Broken([0], [False]))
    assert p.read_text() == "0x0 READ 0\n"
    assert [f.name for f in tmp_path.iterdir()] == ["keep.trace"]
