"""cocotb testbench of ``hbm_top`` (one channel): narrow, unaligned, FIXED and WRAP AXI bursts,
sparse write strobes, ECC read-modify-write with injected errors, against a byte-level golden.

Job folder ``$DIESTACK_JOB`` (written by ``tests/hbm/test_partial.py``):

- ``job.json``: ``preset``, ``overrides``, ``ecc``, ``addrmap`` (``AddressMap.as_dict``),
  ``ops`` (number of random operations), ``workers`` (concurrent AXI operations), ``window`` (bytes of the
  address window), ``base``, ``inject`` (rounds of ECC injection under partial writes),
  ``backpressure`` (B/R), ``seed``.

Traffic: cocotbext-axi's ``AxiMaster`` ``read``/``write`` with ``size`` and ``burst`` arguments:
full-width INCR at unaligned addresses and odd lengths, narrow INCR (AxSIZE 0..4), FIXED, WRAP
(2/4/8/16 beats), a few illegal WRAP bursts (length 3, or an unaligned start: SLVERR expected,
memory unchanged), and random sparse strobes on half of the writes (ANDed into ``WSTRB`` by a
filter on the master's W channel).

The golden model works at bus level, from the AXI specification (``sim/hbm/axi_model.py``): every
AW/AR the master sends is recorded; each W beat the master drives (data + final strobes) is applied
to a byte memory at the spec's ``Address_N`` and byte lanes; each R beat is checked lane by lane
against it (and its RRESP). Per-burst locks keep a read from overlapping a write in flight.

ECC injection rounds (``ecc`` on): write a burst, flip one stored bit of a word in the device model,
write part of that word (narrow or sparse strobes), read the burst: the data must equal the golden
(the RMW corrected the old bytes) with RRESP OKAY, the stored word must now decode clean (golden
SECDED), and ``ecc_corrected`` must have counted it. A double-bit error under a partial write
must leave the word uncorrectable (RRESP SLVERR on the next read, the other words intact).

Results: ``results.json`` (counts, controller counters, device commands, violations, mismatches).
"""

import json
import logging
import os
import random
from collections import defaultdict, deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import Lock, RisingEdge

from ...hdl.hbm.addrmap import AddressMap
from ...hdl.hbm.timing import resolve
from . import ecc as golden_ecc
from .axi_model import FIXED, INCR, WRAP, ByteMemory, beats, legal
from .device import HBMDevice
from .dfi_monitor import DFIMonitor

BUS = 32
STATS = ("rd", "wr", "rda", "wra", "act", "ecc_corrected", "ecc_uncorrectable", "reads_done")


def _map(d):
    return AddressMap(d["offset_bits"], tuple((k, v) for k, v in d["widths"].items()),
                      tuple(tuple(p) for p in d["order"]), bool(d["xor"]))


class BusGolden:
    """Records the master's AW/AR, applies its W beats to the golden and checks its R beats."""

    def __init__(self, master):
        self.mem = ByteMemory(BUS)
        self.aw = deque()                   # [(addr, size, beats, burst), beat index]
        self.ar = defaultdict(deque)        # per ID
        self.strobe_masks = deque()         # per write command: list of per-beat masks or None
        self.cmd_masks = None
        self.poisoned = set()               # (burst address, word): data unknown, SLVERR due
        self.mismatches = []
        self.beats_w = self.beats_r = 0
        wi, ri = master.write_if, master.read_if
        self._wrap(wi.aw_channel, "send", self._on_aw)
        self._wrap(wi.w_channel, "send", self._on_w)
        self._wrap(ri.ar_channel, "send", self._on_ar)
        orig_recv = ri.r_channel.recv

        async def recv():
            r = await orig_recv()
            self._on_r(r)
            return r
        ri.r_channel.recv = recv

    @staticmethod
    def _wrap(channel, name, hook):
        orig = getattr(channel, name)

        async def send(obj):
            hook(obj)
            await orig(obj)
        setattr(channel, name, send)

    def _on_aw(self, aw):
        self.aw.append([(int(aw.awaddr), int(aw.awsize), int(aw.awlen) + 1, int(aw.awburst)), 0])

    def _on_w(self, w):
        rec = self.aw[0]
        (addr, size, n, burst), i = rec
        if self.cmd_masks is None:
            self.cmd_masks = self.strobe_masks.popleft()
        beats_left, masks, k = self.cmd_masks
        extra = masks[k] if masks else (1 << BUS) - 1
        self.cmd_masks[2] += 1
        if self.cmd_masks[2] == beats_left:
            self.cmd_masks = None
        strb = int(w.wstrb) & extra
        w.wstrb = strb
        if legal(addr, size, n, burst, BUS):
            an, lo, hi = beats(addr, size, n, burst, BUS)[i]
            self.mem.write_beat(an, lo, hi, int(w.wdata), strb)
        self.beats_w += 1
        rec[1] += 1
        if rec[1] == n:
            self.aw.popleft()

    def _on_ar(self, ar):
        self.ar[int(ar.arid)].append(
            [(int(ar.araddr), int(ar.arsize), int(ar.arlen) + 1, int(ar.arburst)), 0])

    def _on_r(self, r):
        rid = int(r.rid)
        rec = self.ar[rid][0]
        (addr, size, n, burst), i = rec
        rdata, rresp = int(r.rdata), int(r.rresp)
        what = f"R beat {i} of AR addr {addr:#x} size {size} len {n} burst {burst}"
        if legal(addr, size, n, burst, BUS):
            an, lo, hi = beats(addr, size, n, burst, BUS)[i]
            base = an // BUS * BUS
            bad = {w for (b, w) in self.poisoned if b == base}
            want_resp = 2 if bad else 0
            diff = [d for d in self.mem.check_beat(an, lo, hi, rdata) if d[0] // 8 not in bad]
            if diff:
                self.mismatches.append(f"{what}: lanes (lane, got, want) {diff[:4]}")
        else:
            want_resp = 2
        if rresp != want_resp:
            self.mismatches.append(f"{what}: RRESP {rresp}, want {want_resp}")
        self.beats_r += 1
        rec[1] += 1
        if rec[1] == n:
            self.ar[rid].popleft()

    def lanes_of(self, addr, size, n, burst):
        """Bursts (32 B addresses) a transfer touches."""
        if not legal(addr, size, n, burst, BUS):
            return {addr // BUS * BUS + BUS * k for k in range(n + 1)}
        return {an // BUS * BUS for an, _, _ in beats(addr, size, n, burst, BUS)}


def _make_ops(rng, count, window, base):
    """Random operations: (is_write, addr, nbytes, size, burst, nbeats, sparse)."""
    ops = []
    for _ in range(count):
        is_w = rng.random() < 0.55
        kind = rng.random()
        if kind < 0.3:                          # full width, unaligned start, odd length
            size, burst = 5, INCR
            nbytes = rng.randint(1, 3 * BUS)
            addr = base + rng.randrange(window - nbytes)
        elif kind < 0.55:                       # narrow INCR
            size, burst = rng.randrange(5), INCR
            nbytes = rng.randint(1, 48)
            addr = base + rng.randrange(window - nbytes - BUS)
        elif kind < 0.7:                        # FIXED
            size, burst = rng.randrange(6), FIXED
            n = rng.randint(1, 4)
            addr = base + (rng.randrange(window - BUS) >> size << size)
            nbytes = n << size
        elif kind < 0.95:                       # WRAP, legal, no 4 KB split in the master
            size, burst = rng.randrange(6), WRAP
            n = rng.choice((2, 4, 8, 16) if size < 4 else (2, 4))
            span = n << size
            while True:
                addr = base + (rng.randrange(window - span) >> size << size)
                if (addr & 0xFFF) + span <= 0x1000:
                    break
            nbytes = span
        else:                                   # illegal WRAP: 3 beats, or unaligned start
            size, burst = rng.randrange(1, 6), WRAP
            if rng.random() < 0.5:
                addr = base + (rng.randrange(window - 4 * BUS) >> size << size)
                nbytes = 3 << size
            else:
                addr = base + (rng.randrange(window - 4 * BUS) >> size << size) + 1
                nbytes = (4 << size) - 1
        nb = 1 << size
        nbeats = (nbytes + addr % nb + nb - 1) // nb
        ops.append((is_w, addr, nbytes, size, burst, nbeats, is_w and rng.random() < 0.5))
    return ops


@cocotb.test()
async def run_job(dut):
    jobdir = Path(os.environ["DIESTACK_JOB"])
    job = json.loads((jobdir / "job.json").read_text())
    seed = int(job["seed"])
    rng = random.Random(seed)
    dut._log.info("tb_partial seed %d (DIESTACK_SEED overrides)", seed)
    timing = resolve(job["preset"], job.get("overrides") or {})
    amap = _map(job["addrmap"])
    ecc = bool(job["ecc"])

    from cocotbext.axi import AxiBurstType, AxiBus, AxiMaster, AxiResp

    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    dut.rst.value = 1
    for n in ("awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
              "wlast", "wvalid", "bready", "arid", "araddr", "arlen", "arsize", "arburst",
              "arvalid", "rready"):
        getattr(dut, f"ch0_s_axi__{n}").value = 0
    dev = HBMDevice(timing, strict=False, data_bytes=BUS * 9 // 8 if ecc else BUS)
    mon = DFIMonitor(dut, dut.clk, timing, prefix="ch0_dfi", device=dev, on_violation="end",
                     log_commands=False)
    mon.start()
    m = AxiMaster(AxiBus.from_prefix(dut, "ch0_s_axi", bus_separator="__"), dut.clk, dut.rst)
    for lg in (m.write_if.log, m.read_if.log):
        lg.setLevel(logging.WARNING)
    bp = float(job.get("backpressure", 0.0))
    if bp > 0:
        def pause(r=random.Random(seed + 5)):
            while True:
                yield r.random() < bp
        m.write_if.b_channel.set_pause_generator(pause())
        m.read_if.r_channel.set_pause_generator(pause())
    g = BusGolden(m)

    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)

    def stat(name):
        return int(getattr(dut, f"ch0_stat__{name}").value)

    locks = defaultdict(Lock)
    errors = []
    counts = defaultdict(int)

    async def locked(bursts, fn):
        held = []
        for b in sorted(bursts):
            await locks[b].acquire()
            held.append(locks[b])
        try:
            return await fn()
        finally:
            for lk in held:
                lk.release()

    async def write(addr, data, size, burst, masks=None):
        # per-beat extra strobe masks for the W filter, in the master's command order
        g.strobe_masks.append([_beats_of(addr, len(data), size), masks, 0])
        return await m.write(addr, data, awid=rng.randrange(4), size=size,
                             burst=AxiBurstType(burst))

    def _beats_of(addr, nbytes, size):
        nb = 1 << size
        return (nbytes + addr % nb + nb - 1) // nb

    async def one(op):
        is_w, addr, nbytes, size, burst, nbeats, sparse = op
        ok = legal(addr, size, nbeats, burst, BUS)
        counts[("write " if is_w else "read ") + ("illegal" if not ok else
               {FIXED: "fixed", INCR: "incr", WRAP: "wrap"}[burst] + ("" if size == 5 else " narrow"))] += 1
        bursts = g.lanes_of(addr, size, nbeats, burst)
        if is_w:
            data = rng.randbytes(nbytes)
            masks = [rng.getrandbits(BUS) for _ in range(nbeats)] if sparse else None
            counts["sparse writes"] += bool(sparse)
            resp = await locked(bursts, lambda: write(addr, data, size, burst, masks))
        else:
            resp = await locked(bursts, lambda: m.read(addr, nbytes, arid=rng.randrange(4),
                                                       size=size, burst=AxiBurstType(burst)))
        want = AxiResp.OKAY if ok else AxiResp.SLVERR
        if resp.resp != want:
            errors.append(f"{'write' if is_w else 'read'} {addr:#x} size {size} burst {burst} "
                          f"{nbytes} B: resp {resp.resp}, want {want}")

    ops = _make_ops(rng, int(job["ops"]), int(job["window"]), int(job["base"]))
    queue = deque(ops)

    async def worker():
        while queue:
            await one(queue.popleft())

    start = mon.cycle
    tasks = [cocotb.start_soon(worker()) for _ in range(int(job.get("workers", 8)))]
    for t in tasks:
        await t
    traffic_cycles = mon.cycle - start
    traffic_w_beats = g.beats_w

    # ---- ECC: errors injected under partial writes ----
    inj = []
    if ecc:
        window, base = int(job["window"]), int(job["base"])
        settle = 4 * (timing.WL + timing.tWR + timing.tRP) + 200
        for k in range(int(job.get("inject", 0))):
            double = k % 3 == 2
            b = base + rng.randrange(window // BUS) * BUS
            f = amap.decode_int(b)
            loc = (f["sid"], f["bank_group"], f["bank"], f["row"], f["column"])
            data = rng.randbytes(BUS)
            await write(b, data, 5, INCR)
            # posted write: wait until the device holds it (refresh catch-up may delay it)
            coded = golden_ecc.encode_burst(int.from_bytes(data, "little"), BUS // 8)
            for _ in range(50 * settle):
                if dev.peek(*loc) == coded:
                    break
                await RisingEdge(dut.clk)
            else:
                errors.append(f"write of {b:#x} never reached the device")
            word = rng.randrange(BUS // 8)
            flips = rng.sample(range(72 * word, 72 * word + 72), 2 if double else 1)
            dev.flip_bits(*loc, flips)
            corr0, unc0 = stat("ecc_corrected"), stat("ecc_uncorrectable")
            # partial write of that word: a narrow INCR inside it, or sparse strobes
            if rng.random() < 0.5:
                off = rng.randrange(8)
                n = rng.randint(1, 8 - off - (off == 0))
                resp = await write(b + 8 * word + off, rng.randbytes(n), 0, INCR)
            else:
                mask = rng.getrandbits(8) << (8 * word)
                if mask >> (8 * word) in (0, 0xFF):
                    mask = 0x5A << (8 * word)
                resp = await write(b, rng.randbytes(BUS), 5, INCR, masks=[mask])
            if double:
                g.poisoned.add((b, word))
            rres = await m.read(b, BUS, arid=0)
            stored = dev.peek(*loc)
            _, st = golden_ecc.decode_word((stored >> (72 * word)) & ((1 << 72) - 1))
            rec = {"addr": b, "word": word, "bits": flips, "bresp": int(resp.resp),
                   "rresp": int(rres.resp), "stored_status": st,
                   "corrected": stat("ecc_corrected") - corr0,
                   "uncorrectable": stat("ecc_uncorrectable") - unc0}
            inj.append(rec)
            if double:
                if rres.resp != AxiResp.SLVERR or st != golden_ecc.UNCORRECTABLE:
                    errors.append(f"double-bit error under a partial write must stay "
                                  f"uncorrectable: {rec}")
                await write(b, rng.randbytes(BUS), 5, INCR)     # a full write heals the burst
                g.poisoned.discard((b, word))
            elif (rres.resp != AxiResp.OKAY or st != golden_ecc.OK or rec["corrected"] < 1
                  or rec["uncorrectable"]):
                errors.append(f"single-bit error under a partial write not corrected: {rec}")
        await m.read(base, BUS, arid=1)

    for _ in range(40):
        await RisingEdge(dut.clk)
    if g.strobe_masks or g.cmd_masks is not None or g.aw or any(g.ar.values()):
        errors.append("bus golden out of step: W beats / R beats do not match the AW / AR sent")
    mon.check()
    res = {"seed": seed, "ecc": ecc, "ops": len(ops), "counts": dict(counts),
           "w_beats": g.beats_w, "r_beats": g.beats_r, "traffic_cycles": traffic_cycles,
           "traffic_w_beats": traffic_w_beats,
           # internal reads of the ECC read-modify-write (RD commands beyond the host's beats)
           "rmw_reads": stat("rd") + stat("rda") - g.beats_r,
           "mismatches": len(g.mismatches), "first_mismatches": g.mismatches[:10],
           "errors": errors[:10], "inject": inj,
           "stat": {n: stat(n) for n in STATS}, "device": mon.summary()}
    (jobdir / "results.json").write_text(json.dumps(res, indent=2))
    assert not g.mismatches, f"{len(g.mismatches)} mismatches (seed {seed}): {g.mismatches[:5]}"
    assert not errors, f"errors (seed {seed}): {errors[:5]}"
