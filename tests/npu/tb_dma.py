"""cocotb testbench for the DMA alone (``hdl/npu/dma.py`` emitted as top ``dma_top``).

External memory is cocotbext-axi's AxiRam with random pauses on all five channels. The core is
modelled here: ``sp_w``/``acc_w`` are recorded with random ``ready``, ``acc_rd_req``/``acc_rd``
answer from a table of random rows with random delays. Expected results come from plain numpy
slicing of the memory image, written from the transfer rules in the DMA docstring:

- mvin: the list of local-row writes, in order (kind, address, bytes, accumulate);
- mvout: the whole memory image afterwards (bytes outside the rows must be untouched).

Job folder (``$DIESTACK_JOB``): ``job.json`` with the config fields and ``seed``.

Every AR/AW handshake is checked against the AXI burst rules (beat-aligned INCR, at most 256
beats, no 4 KiB crossing). The random command generators and ``expected_mvin`` are shared with
test_dma.py (Amaranth simulator, its own AXI model); this cocotb test runs the generated Verilog
against a different subordinate (AxiRam) on Verilator and Icarus (test_dma.py runs it). Long
read rows (> 256 beats) start just below a 4 KiB line; write rows are placed across one.

(It used to hang: the core model's ``show = pending and ...`` aliased the empty list, so an
accumulator read request appended in the same cycle was popped at once and never answered.)
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from diestack.hdl.npu.config import NPUConfig
from diestack.hdl.npu.dma import rd_cmd_layout, wr_cmd_layout
from diestack.sim.npu.driver import axi_ram
from diestack.sim.npu.packing import pack, unpack
from diestack.hdl.npu.core import acc_read_req_layout

MEM = 1 << 16


def hi(sig):
    """Signal is 1 (an undefined value in a 4-state simulator counts as 0)."""
    v = sig.value
    return v.is_resolvable and int(v) == 1


def expected_mvin(mem, c, cfg):
    """Local writes of one read command, from the rules (independent of the RTL)."""
    out = []
    chunk = c["chunk_bytes"]
    for r in range(c["rows"]):
        a = c["mem_addr"] + r * c["mem_stride"]
        row = mem[a:a + c["row_bytes"]]
        nch = -(-c["row_bytes"] // chunk)
        for j in range(nch):
            b = np.zeros(cfg.acc_row_bytes if c["to_acc"] else cfg.sp_row_bytes, np.uint8)
            piece = row[j * chunk:(j + 1) * chunk]
            b[:len(piece)] = piece
            addr = c["local_addr"] + r * c["row_step"] + j * c["chunk_step"]
            aw = cfg.acc_addr_width if c["to_acc"] else cfg.sp_addr_width
            out.append(("acc" if c["to_acc"] else "sp", addr & ((1 << aw) - 1), bytes(b),
                        c["accumulate"] if c["to_acc"] else 0))
    return out


def random_rd_cmd(rng, cfg, tag):
    to_acc = rng.random() < 0.35
    if to_acc:
        chunk = cfg.acc_row_bytes
        row_bytes = 4 * rng.randint(1, 2 * cfg.cols)
        addr = 4 * rng.randrange((MEM // 2 - 2048) // 4)
    else:
        chunk = rng.choice([cfg.sp_row_bytes, cfg.rows, max(1, cfg.sp_row_bytes - 1)])
        row_bytes = rng.choice([rng.randint(1, 3 * chunk), rng.randint(1, 40)])
        addr = rng.randrange(MEM // 2 - 2048)
    if rng.random() < 0.15:                      # long rows: > 256 beats, crossing 4 KiB
        row_bytes = rng.randint(256 * cfg.axi_bytes - 20, 256 * cfg.axi_bytes + 300)
        row_bytes -= row_bytes % 4
        addr = 4096 * rng.randint(1, 4) - rng.randrange(1, 64) * 4
        rows = rng.randint(1, 2)
    else:
        rows = rng.randint(1, 6)
    stride = row_bytes + rng.choice([0, 0, rng.randrange(64)])
    if to_acc:
        stride -= stride % 4
    nch = -(-row_bytes // chunk)
    if rng.random() < 0.5:
        row_step, chunk_step = nch, 1
    else:
        row_step, chunk_step = 1, rows
    return dict(mem_addr=addr, mem_stride=stride, rows=rows, row_bytes=row_bytes,
                chunk_bytes=chunk, to_acc=int(to_acc), accumulate=rng.randint(0, 1),
                local_addr=rng.randrange(4096), row_step=row_step, chunk_step=chunk_step,
                tag=tag)


def random_wr_cmd(rng, cfg):
    mode = rng.randint(0, 1)
    rows = rng.randint(1, 6)
    elems = rng.randint(1, cfg.cols)
    eb = 1 if mode else 4
    addr = rng.randrange(MEM // 2, MEM - 8 * 64 * rows)
    if rng.random() < 0.3:
        addr = 4096 * rng.randint(9, 14) - rng.randrange(1, eb * elems + 1)
    if not mode:
        addr -= addr % 4
    stride = elems * eb + rng.choice([0, rng.randrange(1, 40)])
    return dict(mem_addr=addr, mem_stride=stride, rows=rows, elems=elems,
                acc_addr=rng.randrange(200), acc_step=rng.randint(1, 3), mode=mode,
                scale=rng.randrange(-2**31, 2**31), shift=rng.randrange(64), relu=rng.randint(0, 1))


@cocotb.test()
async def dma_random(dut):
    job = Path(os.environ["DIESTACK_JOB"])
    spec = json.loads((job / "job.json").read_text())
    cfg = NPUConfig(**spec["config"])
    seed = spec["seed"]
    rng = random.Random(seed)
    dut._log.info("seed %d", seed)
    rlay, wlay, qlay = rd_cmd_layout(cfg), wr_cmd_layout(cfg), acc_read_req_layout(cfg)

    for s in ("rd_cmd__valid", "wr_cmd__valid", "sp_w__ready", "acc_w__ready",
              "acc_rd_req__ready", "acc_rd__valid", "rd_cmd__payload", "wr_cmd__payload",
              "acc_rd__payload"):
        getattr(dut, s).value = 0
    dut.rst.value = 1
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    ram = axi_ram(dut, "m_axi", MEM + 8192, spec.get("pause", 0.3), rng)
    image = np.frombuffer(rng.randbytes(MEM + 8192), np.uint8).copy()
    ram.write(0, image.tobytes())
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    n_rd, n_wr = spec.get("n_rd", 30), spec.get("n_wr", 16)
    rd_cmds = [random_rd_cmd(rng, cfg, i % 4) for i in range(n_rd)]
    wr_cmds = [random_wr_cmd(rng, cfg) for _ in range(n_wr)]
    # mvin reads only the lower half, mvout writes only the upper half: the expectations
    # do not depend on how reads and writes interleave.
    exp_writes = []
    for c in rd_cmds:
        exp_writes += expected_mvin(image, c, cfg)
    acc_table = {}

    def acc_row(addr, mode):
        if addr not in acc_table:
            acc_table[addr] = rng.randbytes(cfg.acc_row_bytes)
        b = acc_table[addr]
        if mode:
            b = b[:cfg.cols] + bytes(cfg.acc_row_bytes - cfg.cols)
        return b

    exp_mem = image.copy()
    exp_reqs = []
    for c in wr_cmds:
        eb = 1 if c["mode"] else 4
        for r in range(c["rows"]):
            aa = (c["acc_addr"] + r * c["acc_step"]) & 0xFFFF
            row = np.frombuffer(acc_row(aa, c["mode"]), np.uint8)[:c["elems"] * eb]
            a = c["mem_addr"] + r * c["mem_stride"]
            exp_mem[a:a + len(row)] = row
            exp_reqs.append(dict(addr=aa & ((1 << cfg.acc_addr_width) - 1), mode=c["mode"],
                                 scale=c["scale"] & 0xFFFFFFFF, shift=c["shift"], relu=c["relu"]))

    got_writes, got_tags, got_reqs = [], [], []
    W = cfg.axi_bytes
    bursts = {"ar": 0, "aw": 0, "ar_to_4k": 0, "aw_to_4k": 0}
    wr_done = [0]
    resp_q = []
    cycles = [0]

    async def drive(valid, payload, ready, items):
        for i, it in enumerate(items):
            valid.value = 1
            payload.value = it
            for _ in range(spec.get("timeout", 60000)):
                await ReadOnly()
                fire = hi(ready)
                await RisingEdge(dut.clk)
                if fire:
                    break
            else:
                raise AssertionError(f"seed {seed}: command {i} on {valid._name} not accepted; "
                                     + status())
            valid.value = 0
            for _ in range(rng.choice([0, 0, 0, 1, 5])):
                await RisingEdge(dut.clk)

    async def core_model():
        cr = random.Random(rng.random())
        pending = []
        while True:
            await RisingEdge(dut.clk)
            cycles[0] += 1
            dut.sp_w__ready.value = int(cr.random() < 0.7)
            dut.acc_w__ready.value = int(cr.random() < 0.7)
            dut.acc_rd_req__ready.value = int(cr.random() < 0.8)
            for q in pending:
                q[0] -= 1
            # a bool, not `pending and ...`: that aliased the (empty) list, so a request
            # appended below made `show` true and popped at once (the old hang)
            show = bool(pending) and pending[0][0] <= 0 and cr.random() < 0.8
            dut.acc_rd__valid.value = int(show)
            if show:
                dut.acc_rd__payload.value = int.from_bytes(pending[0][1], "little")
            await ReadOnly()
            if hi(dut.sp_w__valid) and hi(dut.sp_w__ready):
                f = unpack(sp_lay, dut.sp_w__payload.value)
                got_writes.append(("sp", f["addr"], f["data"].to_bytes(cfg.sp_row_bytes, "little"), 0))
                assert f["mask"] == (1 << cfg.sp_row_bytes) - 1, f"seed {seed}: mask {f['mask']:x}"
            if hi(dut.acc_w__valid) and hi(dut.acc_w__ready):
                f = unpack(acc_lay, dut.acc_w__payload.value)
                got_writes.append(("acc", f["addr"], f["data"].to_bytes(cfg.acc_row_bytes, "little"),
                                   f["accumulate"]))
            for ch in ("ar", "aw"):        # AXI burst rules (A3.4.1): aligned INCR, <= 256
                if hi(getattr(dut, f"m_axi__{ch}valid")) and hi(getattr(dut, f"m_axi__{ch}ready")):
                    a = int(getattr(dut, f"m_axi__{ch}addr").value)
                    n = int(getattr(dut, f"m_axi__{ch}len").value) + 1
                    assert a % W == 0 and n <= 256 and a // 4096 == (a + n * W - 1) // 4096, \
                        f"seed {seed}: {ch} burst at {a:#x}, {n} beats of {W} bytes"
                    bursts[ch] += 1
                    bursts[ch + "_to_4k"] += (a + n * W) % 4096 == 0   # ends on a 4 KiB line
            if hi(dut.rd_done):
                got_tags.append(int(dut.rd_done_tag.value))
            if hi(dut.wr_done):
                wr_done[0] += 1
            if hi(dut.acc_rd_req__valid) and hi(dut.acc_rd_req__ready):
                f = unpack(qlay, dut.acc_rd_req__payload.value)
                got_reqs.append(f)
                pending.append([cr.randint(1, 4), acc_row(f["addr"], f["mode"])])
            if show and hi(dut.acc_rd__ready):
                pending.pop(0)

    from diestack.hdl.npu.core import sp_write_layout, acc_write_layout
    sp_lay, acc_lay = sp_write_layout(cfg), acc_write_layout(cfg)
    cocotb.start_soon(core_model())

    async def debug_monitor():
        names = ["acc_rd_req__valid", "acc_rd_req__ready", "acc_rd__valid", "acc_rd__ready",
                 "m_axi__awvalid", "m_axi__awready", "m_axi__wvalid", "m_axi__wready",
                 "m_axi__wlast", "m_axi__bvalid", "wr_done", "wr_cmd__valid", "wr_cmd__ready"]
        inner = ["in_row", "drain", "bursts", "credits", "w_beats", "bcnt", "w_busy", "req_rows",
                 "rows_left", "aw_done"]
        for c in range(400):
            await ReadOnly()
            vals = [f"{n.split('__')[0][:6]}.{n.split('__')[-1]}={getattr(dut, n).value}"
                    for n in names]
            for n in inner:
                try:
                    vals.append(f"{n}={getattr(dut, n).value}")
                except AttributeError:
                    vals.append(f"{n}=?")
            dut._log.info("c%d %s", c, " ".join(vals))
            await RisingEdge(dut.clk)

    if os.environ.get("DIESTACK_DMA_DEBUG"):
        cocotb.start_soon(debug_monitor())
    rd = cocotb.start_soon(drive(dut.rd_cmd__valid, dut.rd_cmd__payload, dut.rd_cmd__ready,
                                 [pack(rlay, **c) for c in rd_cmds]))
    wr = cocotb.start_soon(drive(dut.wr_cmd__valid, dut.wr_cmd__payload, dut.wr_cmd__ready,
                                 [pack(wlay, **c) for c in wr_cmds]))
    def status():
        return (f"{len(got_tags)}/{n_rd} reads done, {wr_done[0]}/{n_wr} "
                f"writes done, {len(got_writes)}/{len(exp_writes)} local writes, {len(got_reqs)}/"
                f"{len(exp_reqs)} acc reads; arvalid {dut.m_axi__arvalid.value} rvalid "
                f"{dut.m_axi__rvalid.value} rready {dut.m_axi__rready.value} awvalid "
                f"{dut.m_axi__awvalid.value} wvalid {dut.m_axi__wvalid.value} acc_rd_req.valid "
                f"{dut.acc_rd_req__valid.value} acc_rd.ready {dut.acc_rd__ready.value}")

    await rd
    await wr
    for _ in range(spec.get("timeout", 60000)):
        await RisingEdge(dut.clk)
        if len(got_tags) == n_rd and wr_done[0] == n_wr:
            break
    else:
        raise AssertionError(f"seed {seed}: timeout: " + status())
    for _ in range(20):
        await RisingEdge(dut.clk)
    dut._log.info("cycles %d, %d local writes, %d acc reads, bursts %s", cycles[0],
                  len(got_writes), len(got_reqs), bursts)
    assert got_tags == [c["tag"] for c in rd_cmds], f"seed {seed}: done tags {got_tags}"
    assert wr_done[0] == n_wr, f"seed {seed}: {wr_done[0]} of {n_wr} write commands done"
    assert len(got_writes) == len(exp_writes), \
        f"seed {seed}: {len(got_writes)} local writes, expected {len(exp_writes)}"
    for i, (g, e) in enumerate(zip(got_writes, exp_writes)):
        assert g == e, f"seed {seed}: local write {i}: got {g}, expected {e}"
    assert got_reqs == exp_reqs, f"seed {seed}: accumulator read requests differ"
    mem = np.frombuffer(ram.read(0, MEM + 8192), np.uint8)
    bad = np.nonzero(mem != exp_mem)[0]
    assert bad.size == 0, (f"seed {seed}: {bad.size} memory bytes differ, first at "
                           f"{bad[0]:#x}: got {mem[bad[0]]}, expected {exp_mem[bad[0]]}")
    assert int(dut.error.value) == 0
