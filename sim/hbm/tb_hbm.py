"""cocotb testbench of ``hbm_top``: AXI traffic in, HBM device models on the DFI, a data scoreboard.

Inputs and outputs go through a job folder named by ``$DIESTACK_JOB`` (written by
``diestack.sim.hbm.job``, used by both pytest and the CLI):

- ``job.json``: ``preset``, ``overrides`` (timing, ``hdl/hbm/timing.py`` names), ``channels``,
  ``ecc``, ``addrmap`` (``AddressMap.as_dict``), ``workers`` (concurrent AXI operations per
  channel), ``ids`` (AXI IDs used, round robin), ``backpressure`` (probability that BREADY/RREADY
  is low in a cycle), ``on_violation`` (``end`` fails the test, ``count`` only counts),
  ``command_log`` (CSV path or null), ``inject`` (ECC error injections, see below), ``seed``.
- ``requests.npy``: int64 ``(n, 4)``: byte address, is_write, beats, earliest issue cycle.

Checks: every read returns the last data written to each burst (the scoreboard is updated when a
write's response arrives; a read that overlaps a write in flight is never issued, per burst
locks); RRESP OKAY; zero device timing violations (``on_violation="end"``). Injections
(``{"addr", "bits"}``): after the traffic, write random data, flip the stored bits in the device
model, read back: one bit must be corrected (data equal, RRESP OKAY), two must give SLVERR.

Writes ``results.json``: bytes, cycles (first request accepted to last read data / last column
command), bandwidth per cycle, AXI read latency (AR accepted to first R beat) average and p99,
the controller's counters per channel, device violations, mismatches.
"""

import json
import logging
import os
import random
from collections import defaultdict, deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, Lock, ReadOnly, RisingEdge, Timer

from ...hdl.hbm.addrmap import AddressMap
from ...hdl.hbm.timing import resolve
from .device import HBMDevice
from .dfi_monitor import DFIMonitor, write_command_log

STATS = ("cycles", "act", "pre", "prea", "refab", "refpb", "rd", "wr", "rda", "wra",
         "row_hits", "row_misses", "row_conflicts", "bytes", "window_bytes",
         "reads_done", "read_latency_sum", "ecc_corrected", "ecc_uncorrectable")


def _job():
    d = Path(os.environ["DIESTACK_JOB"])
    return d, json.loads((d / "job.json").read_text())


def _map(d):
    return AddressMap(d["offset_bits"], tuple((k, v) for k, v in d["widths"].items()),
                      tuple(tuple(p) for p in d["order"]), bool(d["xor"]))


class AxiWatch:
    """Per channel: AR/R handshakes (read latency) and the cycle of the last R beat."""

    def __init__(self, dut, prefix, clock_ref):
        g = lambda n: getattr(dut, f"{prefix}__{n}")
        self.s = {n: g(n) for n in ("arvalid", "arready", "arid", "rvalid", "rready", "rid", "rlast")}
        self.pending = defaultdict(deque)
        self.latencies = []
        self.first_beat = {}
        self.last_r = 0
        self.first_req = None
        self.clock_ref = clock_ref

    async def run(self, clk):
        s = self.s
        in_burst = defaultdict(bool)
        while True:
            await RisingEdge(clk)
            await ReadOnly()
            n = self.clock_ref()
            if s["arvalid"].value and s["arready"].value:
                self.pending[int(s["arid"].value)].append(n)
                if self.first_req is None:
                    self.first_req = n
            if s["rvalid"].value and s["rready"].value:
                rid = int(s["rid"].value)
                if not in_burst[rid]:
                    self.latencies.append(n - self.pending[rid].popleft())
                    in_burst[rid] = True
                if s["rlast"].value:
                    in_burst[rid] = False
                self.last_r = n


@cocotb.test()
async def run_job(dut):
    jobdir, job = _job()
    seed = int(job.get("seed", 1))
    rng = random.Random(seed)
    dut._log.info("tb_hbm seed %d (DIESTACK_SEED overrides)", seed)
    timing = resolve(job["preset"], job.get("overrides") or {})
    amap = _map(job["addrmap"])
    channels = int(job["channels"])
    ecc = bool(job.get("ecc"))
    beat = timing.bytes_per_burst
    reqs = np.load(jobdir / "requests.npy")

    from cocotbext.axi import AxiBus, AxiMaster, AxiResp

    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    dut.rst.value = 1
    # drive every AXI input from time 0 (Icarus is 4-state)
    for c in range(channels):
        for n in ("awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                  "wlast", "wvalid", "bready", "arid", "araddr", "arlen", "arsize", "arburst",
                  "arvalid", "rready"):
            getattr(dut, f"ch{c}_s_axi__{n}").value = 0

    mons, masters, watches = [], [], []
    data_bytes = beat * 9 // 8 if ecc else beat
    for c in range(channels):
        dev = HBMDevice(timing, strict=False, data_bytes=data_bytes)
        mon = DFIMonitor(dut, dut.clk, timing, prefix=f"ch{c}_dfi", channel=c // 2,
                         pseudo_channel=c % 2, device=dev,
                         on_violation="count" if job.get("on_violation") == "count" else "end",
                         log_commands=bool(job.get("command_log")))
        mons.append(mon)
    for mon in mons:
        mon.start()
    now = lambda: mons[0].cycle
    for c in range(channels):
        bus = AxiBus.from_prefix(dut, f"ch{c}_s_axi", bus_separator="__")
        m = AxiMaster(bus, dut.clk, dut.rst)
        # cocotbext-axi logs every transfer at INFO: that I/O costs more than the simulation
        for lg in (m.write_if.log, m.read_if.log):
            lg.setLevel(logging.WARNING)
        bp = float(job.get("backpressure", 0.0))
        if bp > 0:
            def pause(p=bp, r=random.Random(seed + 17 * c)):
                while True:
                    yield r.random() < p
            m.write_if.b_channel.set_pause_generator(pause())
            m.read_if.r_channel.set_pause_generator(pause())
        masters.append(m)
        w = AxiWatch(dut, f"ch{c}_s_axi", now)
        cocotb.start_soon(w.run(dut.clk))
        watches.append(w)

    for _ in range(4):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)

    model = {}                       # burst address -> bytes
    locks = defaultdict(Lock)
    mismatches = []
    errors = []
    ids = int(job.get("ids", 4))
    workers = int(job.get("workers", 32))
    queue = deque(range(len(reqs)))
    total_bytes = 0

    def chan_of(addr):
        return amap.decode_int(addr)["channel"]

    async def one(k):
        nonlocal total_bytes
        addr, is_w, beats, at = (int(x) for x in reqs[k])
        addr -= addr % beat
        while now() < at:
            await RisingEdge(dut.clk)
        bursts = [addr + i * beat for i in range(beats)]
        ch = chan_of(addr)
        m = masters[ch]
        held = []
        for b in sorted(bursts):
            await locks[b].acquire()
            held.append(locks[b])
        try:
            aid = k % ids
            if is_w:
                data = rng.randbytes(beats * beat)
                resp = await m.write(addr, data, awid=aid)
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"write {k} at {addr:#x}: BRESP {resp.resp}")
                for i, b in enumerate(bursts):
                    model[b] = data[i * beat:(i + 1) * beat]
            else:
                resp = await m.read(addr, beats * beat, arid=aid)
                if resp.resp != AxiResp.OKAY:
                    errors.append(f"read {k} at {addr:#x}: RRESP {resp.resp}")
                got = bytes(resp.data)
                for i, b in enumerate(bursts):
                    want = model.get(b, bytes(beat))
                    if got[i * beat:(i + 1) * beat] != want:
                        mismatches.append(f"read {k} burst {b:#x}: got "
                                          f"{got[i * beat:(i + 1) * beat].hex()[:16]}.. want "
                                          f"{want.hex()[:16]}..")
            total_bytes += beats * beat
        finally:
            for lk in held:
                lk.release()

    async def worker():
        while queue:
            await one(queue.popleft())

    start_cycle = now()
    tasks = [cocotb.start_soon(worker()) for _ in range(workers)]
    for t in tasks:
        await t

    # drain: every column command issued (controller byte counters reach the traffic)
    def stat(c, name):
        return int(getattr(dut, f"ch{c}_stat__{name}").value)

    limit = now() + 20000 + 12 * timing.tRFC
    while sum(stat(c, "bytes") for c in range(channels)) < total_bytes and now() < limit:
        await RisingEdge(dut.clk)
    end_cycle = max([now()] + [w.last_r for w in watches])

    # ECC injections
    inj_results = []
    for inj in job.get("inject", []):
        addr = int(inj["addr"]) - int(inj["addr"]) % beat
        bits = [int(b) for b in inj["bits"]]
        ch = chan_of(addr)
        data = rng.randbytes(beat)
        await masters[ch].write(addr, data, awid=0)
        for _ in range(4 * (timing.WL + timing.tWR + timing.tRP) + 200):
            await RisingEdge(dut.clk)
        f = amap.decode_int(addr)
        mons[ch].device.flip_bits(f["sid"], f["bank_group"], f["bank"], f["row"], f["column"], bits)
        resp = await masters[ch].read(addr, beat, arid=0)
        inj_results.append({"addr": addr, "bits": bits, "resp": int(resp.resp),
                            "data_ok": bytes(resp.data) == data})
        model[addr] = data
    for _ in range(8):
        await RisingEdge(dut.clk)

    viol = 0
    per_channel = []
    for c, mon in enumerate(mons):
        mon.finish()
        viol += mon.device.violation_total
        st = {n: stat(c, n) for n in STATS}
        hist_raw = int(getattr(dut, f"ch{c}_stat__lat_hist").value)
        st["lat_hist"] = [(hist_raw >> (32 * k)) & 0xFFFFFFFF for k in range(16)]
        st["monitor"] = mon.summary()
        per_channel.append(st)
    if job.get("command_log"):
        entries = sorted((e for mon in mons for e in mon.log), key=lambda e: (e[0], e[1], e[2]))
        write_command_log(job["command_log"], entries)
    lats = sorted(x for w in watches for x in w.latencies)
    first = min([w.first_req for w in watches if w.first_req is not None] or [start_cycle])
    cycles = max(1, end_cycle - first)
    res = {
        "requests": int(len(reqs)), "bytes": total_bytes, "cycles": cycles,
        "bytes_per_cycle": total_bytes / cycles,
        "read_latency_avg": float(np.mean(lats)) if lats else None,
        "read_latency_p99": float(np.percentile(lats, 99)) if lats else None,
        "read_latency_min": int(lats[0]) if lats else None,
        "read_latency_max": int(lats[-1]) if lats else None,
        "read_latency_p50": float(np.percentile(lats, 50)) if lats else None,
        "reads": len(lats),
        "row_hits": sum(p["row_hits"] for p in per_channel),
        "row_misses": sum(p["row_misses"] for p in per_channel),
        "row_conflicts": sum(p["row_conflicts"] for p in per_channel),
        "timing_violations": viol,
        "commands": sum(sum(p["monitor"]["commands"].values()) for p in per_channel),
        "mismatches": len(mismatches), "first_mismatches": mismatches[:10],
        "errors": errors[:10], "inject": inj_results, "channels": per_channel, "seed": seed,
    }
    (jobdir / "results.json").write_text(json.dumps(res, indent=2))
    assert not errors, f"AXI error responses (seed {seed}): {errors[:5]}"
    assert not mismatches, f"{len(mismatches)} data mismatches (seed {seed}): {mismatches[:5]}"
    if job.get("on_violation") != "count":
        for mon in mons:
            mon.check()
