"""cocotb testbench of ``hbm_top``: AXI traffic in, HBM device models on the DFI, a data scoreboard.

Inputs and outputs go through a job folder named by ``$DIESTACK_JOB`` (written by
``diestack.flows.hbm.simulate``, used by both pytest and the CLI):

- ``job.json``: ``preset``, ``overrides`` (timing, ``hdl/hbm/timing.py`` names), ``channels``,
  ``ecc``, ``addrmap`` (``AddressMap.as_dict``), ``workers`` (requests in flight at once, all
  channels), ``ids`` (AXI IDs used, round robin), ``backpressure`` (probability that BREADY/RREADY
  is low in a cycle), ``on_violation`` (``end`` fails the test, ``count`` only counts),
  ``command_log`` (CSV path or null), ``inject`` (ECC error injections, see below), ``seed``,
  ``driver`` (``fast``, default: :class:`~diestack.sim.hbm.axi_host.AxiHost` in one clock loop;
  ``cocotbext``: cocotbext-axi's ``AxiMaster``, a coroutine per channel, kept as an independent
  cross-check of the AXI port, about ten times slower).
- ``requests.npy``: int64 ``(n, 4)``: byte address, is_write, beats, earliest issue cycle.

Checks: every read returns the last data written to each burst (the scoreboard is updated when a
write's response arrives; a request never starts while another request touching one of its
bursts is in flight: per-burst exclusion, in request order); RRESP/BRESP OKAY; zero device timing
violations (``on_violation="end"``). Injections (``{"addr", "bits"}``): after the traffic, write
random data, flip the stored bits in the device model, read back: one bit must be corrected (data
equal, RRESP OKAY), two must give SLVERR.

Fast driver: ONE coroutine runs the clock loop, with two triggers per cycle: at the falling edge
the DFI monitors sample the (registered) controller outputs and drive read data, and the AXI
hosts drive their buses; in the ``ReadOnly`` phase that follows, the hosts see the settled
handshakes of the coming rising edge. While it runs, the testbench rewrites
``$DIESTACK_JOB/progress.json`` (``done``, ``total`` requests, ``cycle``, ``commands``) about once
a second, for a progress bar in the calling process.

Writes ``results.json``: bytes, cycles (first request accepted to last read data / last column
command), bandwidth per cycle, AXI read latency (AR accepted to first R beat) average and p99,
the controller's counters per channel, device violations, mismatches, commands, wall time.
"""

import json
import logging
import os
import random
import time
from collections import defaultdict, deque
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import Event, FallingEdge, Lock, ReadOnly, RisingEdge

from ...hdl.hbm.addrmap import AddressMap
from ...hdl.hbm.timing import resolve
from .axi_host import AxiHost, Op
from .device import HBMDevice
from .dfi_monitor import DFIMonitor, write_command_log

STATS = ("cycles", "act", "pre", "prea", "refab", "refpb", "rd", "wr", "rda", "wra",
         "row_hits", "row_misses", "row_conflicts", "bytes", "window_bytes",
         "reads_done", "read_latency_sum", "ecc_corrected", "ecc_uncorrectable")
RESET_CYCLES = 4          # rst high in cycles 0..3
START_CYCLE = 6           # first cycle in which traffic may start
PROGRESS_SECONDS = 1.0


def _job():
    d = Path(os.environ["DIESTACK_JOB"])
    return d, json.loads((d / "job.json").read_text())


def _map(d):
    return AddressMap(d["offset_bits"], tuple((k, v) for k, v in d["widths"].items()),
                      tuple(tuple(p) for p in d["order"]), bool(d["xor"]))


def _write_progress(path, obj):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


class Scoreboard:
    """Expected memory contents and the request bookkeeping shared by both drivers."""

    def __init__(self, beat, seed):
        self.beat = beat
        self.rng = random.Random(seed)
        self.model = {}                  # burst address -> bytes
        self.mismatches = []
        self.errors = []
        self.total_bytes = 0
        self.done = 0

    def data_for(self, beats):
        return self.rng.randbytes(beats * self.beat)

    def wrote(self, k, addr, data, resp):
        if resp != 0:
            self.errors.append(f"write {k} at {addr:#x}: BRESP {resp}")
        b = self.beat
        for i in range(len(data) // b):
            self.model[addr + i * b] = data[i * b:(i + 1) * b]
        self.total_bytes += len(data)
        self.done += 1

    def read(self, k, addr, got, resp):
        if resp != 0:
            self.errors.append(f"read {k} at {addr:#x}: RRESP {resp}")
        b = self.beat
        for i in range(len(got) // b):
            want = self.model.get(addr + i * b, bytes(b))
            if got[i * b:(i + 1) * b] != want:
                self.mismatches.append(f"read {k} burst {addr + i * b:#x}: got "
                                       f"{got[i * b:(i + 1) * b].hex()[:16]}.. want {want.hex()[:16]}..")
        self.total_bytes += len(got)
        self.done += 1


class Traffic:
    """Feeds the request array into the :class:`AxiHost` of each channel (fast driver).

    At most ``workers`` requests are taken at once (in flight, or waiting for a burst held by an
    earlier request); a request is not taken before its issue cycle; requests touching a common
    burst run one after the other, in request order.
    """

    def __init__(self, reqs, hosts, chan_of, board, *, ids, workers):
        self.reqs = reqs.tolist()
        self.hosts = hosts
        self.chan_of = chan_of
        self.board = board
        self.ids = ids
        self.workers = workers
        self.next = 0
        self.taken = 0
        self.waiting = deque()           # (k, bursts) taken but blocked
        self.busy = set()                # bursts of requests in flight
        self.dirty = False

    @property
    def finished(self):
        return self.next == len(self.reqs) and self.taken == 0

    def _bursts(self, k):
        addr, _, beats, _ = self.reqs[k]
        beat = self.board.beat
        addr -= addr % beat
        return addr, tuple(addr + i * beat for i in range(beats))

    def _start(self, k, addr, bursts):
        _, is_w, beats, _ = self.reqs[k]
        self.busy.update(bursts)
        data = self.board.data_for(beats) if is_w else None
        op = Op(addr, beats, bool(is_w), data, aid=k % self.ids, tag=(k, bursts),
                on_done=self._done)
        self.hosts[self.chan_of(addr)].submit(op)

    def _done(self, op):
        k, bursts = op.tag
        if op.write:
            self.board.wrote(k, op.addr, op.data, op.resp)
        else:
            self.board.read(k, op.addr, op.data, op.resp)
        self.busy.difference_update(bursts)
        self.taken -= 1
        self.dirty = True

    def pump(self, n):
        """Start what may start in cycle ``n`` (called at the falling edge, before the hosts)."""
        if self.waiting and self.dirty:
            blocked = set()
            keep = deque()
            busy = self.busy
            for k, addr, bursts in self.waiting:
                if any(b in busy or b in blocked for b in bursts):
                    keep.append((k, addr, bursts))
                    blocked.update(bursts)
                else:
                    self._start(k, addr, bursts)
            self.waiting = keep
        self.dirty = False
        reqs = self.reqs
        while self.taken < self.workers and self.next < len(reqs) and reqs[self.next][3] <= n:
            k = self.next
            self.next += 1
            self.taken += 1
            addr, bursts = self._bursts(k)
            if self.waiting or any(b in self.busy for b in bursts):
                self.waiting.append((k, addr, bursts))
                self.dirty = True
            else:
                self._start(k, addr, bursts)


class ClockLoop:
    """The fast driver's single clock loop (see module doc): monitors, traffic, hosts, waiters."""

    def __init__(self, dut, mons, hosts, progress=None, total=0):
        self.dut = dut
        self.mons = mons
        self.hosts = hosts
        self.traffic = None
        self.waiters = []                # (predicate, Event)
        self.progress = progress
        self.total = total
        self.cycle = -1

    def until(self, pred):
        """An Event set (in a ReadOnly phase) by the loop once ``pred()`` is true."""
        ev = Event()
        self.waiters.append((pred, ev))
        return ev.wait()

    def cycles(self, k):
        end = self.cycle + k
        return self.until(lambda: self.cycle >= end)

    async def run(self):
        dut = self.dut
        steps = [m.step for m in self.mons]
        hosts = self.hosts
        fall, settle = FallingEdge(dut.clk), ReadOnly()
        next_report = time.monotonic() + PROGRESS_SECONDS
        await RisingEdge(dut.clk)                  # cycle 0
        while True:
            await fall
            for st in steps:
                st()
            n = self.cycle = self.mons[0].cycle
            if n == RESET_CYCLES - 1:
                dut.rst.value = 0
            if n >= START_CYCLE:
                if self.traffic is not None:
                    self.traffic.pump(n)
                for h in hosts:
                    h.drive()
            await settle
            for h in hosts:
                h.sample(n)
            if self.waiters:
                still = []
                for pred, ev in self.waiters:
                    if pred():
                        ev.set()
                    else:
                        still.append((pred, ev))
                self.waiters = still
            if self.progress is not None and (n & 1023) == 0 and time.monotonic() >= next_report:
                next_report = time.monotonic() + PROGRESS_SECONDS
                done = self.traffic.board.done if self.traffic else 0
                _write_progress(self.progress, {
                    "done": done, "total": self.total, "cycle": n,
                    "commands": sum(m.device.commands for m in self.mons)})


class AxiWatch:
    """cocotbext driver: AR/R handshakes (read latency) and the cycle of the last R beat."""

    def __init__(self, dut, prefix, clock_ref):
        g = lambda n: getattr(dut, f"{prefix}__{n}")
        self.s = {n: g(n) for n in ("arvalid", "arready", "arid", "rvalid", "rready", "rid", "rlast")}
        self.pending = defaultdict(deque)
        self.latencies = []
        self.last_r = 0
        self.first_request = None
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
                if self.first_request is None:
                    self.first_request = n
            if s["rvalid"].value and s["rready"].value:
                rid = int(s["rid"].value)
                if not in_burst[rid]:
                    self.latencies.append(n - self.pending[rid].popleft())
                    in_burst[rid] = True
                if s["rlast"].value:
                    in_burst[rid] = False
                self.last_r = n


async def _cocotbext_traffic(dut, job, reqs, board, chan_of, now, seed, channels):
    """The cocotbext-axi driver: returns (watches, write fn, read fn) after running ``reqs``."""
    from cocotbext.axi import AxiBus, AxiMaster

    masters, watches = [], []
    bp = float(job.get("backpressure", 0.0))
    for c in range(channels):
        bus = AxiBus.from_prefix(dut, f"ch{c}_s_axi", bus_separator="__")
        m = AxiMaster(bus, dut.clk, dut.rst)
        # cocotbext-axi logs every transfer at INFO: that I/O costs more than the simulation
        for lg in (m.write_if.log, m.read_if.log):
            lg.setLevel(logging.WARNING)
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
    while now() < START_CYCLE:
        await RisingEdge(dut.clk)

    beat = board.beat
    locks = defaultdict(Lock)
    ids = int(job.get("ids", 4))
    queue = deque(range(len(reqs)))

    async def one(k):
        addr, is_w, beats, at = (int(x) for x in reqs[k])
        addr -= addr % beat
        while now() < at:
            await RisingEdge(dut.clk)
        bursts = [addr + i * beat for i in range(beats)]
        m = masters[chan_of(addr)]
        held = []
        for b in sorted(bursts):
            await locks[b].acquire()
            held.append(locks[b])
        try:
            if is_w:
                data = board.data_for(beats)
                resp = await m.write(addr, data, awid=k % ids)
                board.wrote(k, addr, data, int(resp.resp))
            else:
                resp = await m.read(addr, beats * beat, arid=k % ids)
                board.read(k, addr, bytes(resp.data), int(resp.resp))
        finally:
            for lk in held:
                lk.release()

    async def worker():
        while queue:
            await one(queue.popleft())

    tasks = [cocotb.start_soon(worker()) for _ in range(int(job.get("workers", 32)))]
    for t in tasks:
        await t

    async def write(addr, data):
        resp = await masters[chan_of(addr)].write(addr, data, awid=0)
        return int(resp.resp)

    async def read(addr, nbytes):
        resp = await masters[chan_of(addr)].read(addr, nbytes, arid=0)
        return int(resp.resp), bytes(resp.data)

    return watches, write, read


@cocotb.test()
async def run_job(dut):
    jobdir, job = _job()
    seed = int(job.get("seed", 1))
    dut._log.info("tb_hbm seed %d (DIESTACK_SEED overrides)", seed)
    timing = resolve(job["preset"], job.get("overrides") or {})
    amap = _map(job["addrmap"])
    channels = int(job["channels"])
    ecc = bool(job.get("ecc"))
    beat = timing.bytes_per_burst
    reqs = np.load(jobdir / "requests.npy")
    driver = job.get("driver", "fast")
    if driver not in ("fast", "cocotbext"):
        raise ValueError(f"job.json driver must be 'fast' or 'cocotbext', not {driver!r}")
    wall0 = time.monotonic()

    cocotb.start_soon(Clock(dut.clk, 2, unit="ns").start())
    dut.rst.value = 1
    # drive every AXI input from time 0 (Icarus is 4-state); the fast driver's hosts do it
    for c in range(channels if driver == "cocotbext" else 0):
        for n in ("awid", "awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb",
                  "wlast", "wvalid", "bready", "arid", "araddr", "arlen", "arsize", "arburst",
                  "arvalid", "rready"):
            getattr(dut, f"ch{c}_s_axi__{n}").value = 0

    mons = []
    data_bytes = beat * 9 // 8 if ecc else beat
    for c in range(channels):
        dev = HBMDevice(timing, strict=False, data_bytes=data_bytes)
        mons.append(DFIMonitor(dut, dut.clk, timing, prefix=f"ch{c}_dfi", channel=c // 2,
                               pseudo_channel=c % 2, device=dev,
                               on_violation="count" if job.get("on_violation") == "count" else "end",
                               log_commands=bool(job.get("command_log"))))
    now = lambda: mons[0].cycle
    board = Scoreboard(beat, seed)

    def chan_of(addr):
        return amap.decode_int(addr)["channel"]

    if driver == "fast":
        bp = float(job.get("backpressure", 0.0))
        hosts = [AxiHost(dut, f"ch{c}_s_axi", backpressure=bp, rng=random.Random(seed + 17 * c))
                 for c in range(channels)]
        for h in hosts:
            h.idle_bus()                # AxSIZE = bus width, AxBURST = INCR, the rest 0
        for m in mons:
            m.start(loop=False)
        loop = ClockLoop(dut, mons, hosts, progress=jobdir / "progress.json", total=len(reqs))
        loop.traffic = Traffic(reqs, hosts, chan_of, board, ids=int(job.get("ids", 4)),
                               workers=int(job.get("workers", 32)))
        cocotb.start_soon(loop.run())
        await loop.until(lambda: loop.traffic.finished)
        watches = hosts

        async def wait_cycles(k):
            await loop.cycles(k)

        async def do(op):
            flag = []
            op.on_done = flag.append
            hosts[chan_of(op.addr)].submit(op)
            await loop.until(lambda: flag)
            return op

        async def write(addr, data):
            return (await do(Op(addr, len(data) // beat, True, data))).resp

        async def read(addr, nbytes):
            op = await do(Op(addr, nbytes // beat, False))
            return op.resp, op.data
    else:
        for m in mons:
            m.start()
        dut.rst.value = 1

        async def reset():
            while now() < RESET_CYCLES - 1:
                await RisingEdge(dut.clk)
            dut.rst.value = 0
        cocotb.start_soon(reset())
        watches, write, read = await _cocotbext_traffic(dut, job, reqs, board, chan_of, now,
                                                        seed, channels)

        async def wait_cycles(k):
            for _ in range(k):
                await RisingEdge(dut.clk)

    # drain: every column command issued (controller byte counters reach the traffic)
    def stat(c, name):
        return int(getattr(dut, f"ch{c}_stat__{name}").value)

    limit = now() + 20000 + 12 * timing.tRFC
    while sum(stat(c, "bytes") for c in range(channels)) < board.total_bytes and now() < limit:
        await wait_cycles(1)
    end_cycle = max([now()] + [w.last_r for w in watches])

    # ECC injections
    inj_results = []
    for inj in job.get("inject", []):
        addr = int(inj["addr"]) - int(inj["addr"]) % beat
        bits = [int(b) for b in inj["bits"]]
        ch = chan_of(addr)
        data = board.data_for(1)
        await write(addr, data)
        await wait_cycles(4 * (timing.WL + timing.tWR + timing.tRP) + 200)
        f = amap.decode_int(addr)
        mons[ch].device.flip_bits(f["sid"], f["bank_group"], f["bank"], f["row"], f["column"], bits)
        resp, got = await read(addr, beat)
        inj_results.append({"addr": addr, "bits": bits, "resp": resp, "data_ok": got == data})
        board.model[addr] = data
    await wait_cycles(8)

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
    first = min([w.first_request for w in watches if w.first_request is not None] or [START_CYCLE])
    cycles = max(1, end_cycle - first)
    errors, mismatches = board.errors, board.mismatches
    res = {
        "requests": int(len(reqs)), "bytes": board.total_bytes, "cycles": cycles,
        "bytes_per_cycle": board.total_bytes / cycles,
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
        "sim_cycles": now() + 1,
        "wall_seconds": round(time.monotonic() - wall0, 2),
        "driver": driver,
        "mismatches": len(mismatches), "first_mismatches": mismatches[:10],
        "errors": errors[:10], "inject": inj_results, "channels": per_channel, "seed": seed,
    }
    (jobdir / "results.json").write_text(json.dumps(res, indent=2))
    assert not errors, f"AXI error responses (seed {seed}): {errors[:5]}"
    assert not mismatches, f"{len(mismatches)} data mismatches (seed {seed}): {mismatches[:5]}"
    if job.get("on_violation") != "count":
        for mon in mons:
            mon.check()
