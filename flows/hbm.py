"""HBM controller flows: ``gen hbm``, ``hbm bench``, ``synth hbm``, ``bench hbm`` and the
``diestack run`` stage.

The simulation path is one function, :func:`simulate`: generate ``hbm_top`` Verilog for a
configuration (cached by content in the simulator layer), write a job folder (``job.json`` +
``requests.npy``), run the cocotb testbench ``diestack.sim.hbm.tb_hbm`` and read
``results.json`` back. pytest and the CLI both use it.
"""

import json
import math
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..hdl.common.params import ConfigError, check_choice, check_int
from ..hdl.hbm.controller import ControllerConfig
from ..hdl.hbm.timing import PRESETS, resolve
from ..sim.hbm import traffic

__all__ = ["register", "make_config", "gen_verilog", "simulate", "make_requests", "PATTERNS",
           "read_trace", "summarize"]

PATTERNS = traffic.PATTERNS          # stream, random, rw21, interleaved4
PAGES = ("open", "closed", "adaptive")
REQUEST_BYTES = 64

# Peers' numbers, hbm.md "What peers achieve" (HBM2 2 Gb/s, 64 B requests), % of peak.
PEERS = {
    "stream": ("92.8", "88.3"),
    "rw21": ("82.8-87.8", "71.3"),
    "random": ("22-24.5", "29-30"),
    "interleaved4": ("80.9 (depth 32)", "37.3"),
}
PEERS_HBM3 = {"stream": ("-", "94.3 (16 ch)"), "random": ("-", "29.4 (16 ch)")}


def make_config(preset="hbm2", *, channels=1, page="open", ecc=False, refresh="allbank",
                queue_depth=32, overrides=None, xor=False):
    """A validated :class:`ControllerConfig` from CLI-level options."""
    timing = resolve(preset, overrides or {})
    check_int("--queue-depth", queue_depth, lo=16, hi=128)
    # read-reorder / write-data slots: a queue entry holds up to two bursts (a 64 B request), and
    # the reorder buffer must hold the data of the queued reads plus as many again returning in
    # order behind the oldest, or in-order return caps the reordering window (hdl/hbm/scheduler.py)
    slots = 1 << (4 * queue_depth - 1).bit_length()
    return ControllerConfig(timing=timing, queue_depth=queue_depth, page=page, ecc=bool(ecc),
                            refresh=refresh, channels=channels, xor=bool(xor),
                            rob_depth=slots, wbuf_depth=slots)


def gen_verilog(config, out_dir):
    """Write ``hbm_top.v`` and ``hbm_top.json`` (interface) into ``out_dir``; return the .v path."""
    from ..hdl.common.verilog import interface_json, to_verilog
    from ..hdl.hbm.top import HBMTop
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = HBMTop(config)
    text = to_verilog(top, "hbm_top")
    v = out_dir / "hbm_top.v"
    tmp = out_dir / ".hbm_top.v.tmp"
    tmp.write_text(text)
    os.replace(tmp, v)
    (out_dir / "hbm_top.json").write_text(interface_json(top))
    return v, top


# ---- traffic ---------------------------------------------------------------------------------

def make_requests(pattern, n, config, *, seed=1, beats=2, write_fraction=None):
    """``(n, 4)`` int64 requests (addr, is_write, beats, issue_cycle) for a named pattern.

    ``stream``, ``random``, ``rw21``, ``interleaved4`` (``traffic.generate``) and ``mixed``
    (``traffic.mixed``: random reads and writes, default half writes, over a revisited window of
    lines, for data-integrity runs), all from ``sim/hbm/traffic.py``, over the capacity of all
    channels.
    """
    if pattern not in PATTERNS + ("mixed",):
        raise ConfigError("pattern", f"must be one of {', '.join(PATTERNS)}, not {pattern!r}")
    if beats != 2:
        raise ConfigError("beats", "the patterns move 64 B (2-beat) requests")
    capacity = config.timing.capacity_bytes * config.channels
    if pattern == "mixed":
        tr = traffic.mixed(n, seed=seed, capacity=capacity,
                           write_fraction=0.5 if write_fraction is None else write_fraction)
    else:
        tr = traffic.generate(pattern, n, seed=seed, capacity=capacity)
    out = np.zeros((n, 4), dtype=np.int64)
    out[:, 0] = tr.addr.astype(np.int64)
    out[:, 1] = tr.write
    out[:, 2] = beats
    return out


def read_trace(path, config):
    """Requests of a DRAMsim3 trace (``sim/hbm/traffic.py`` ``read_trace``: bad lines raise
    :class:`ConfigError` naming ``<file>:<line>``); addresses wrap into the channels' capacity."""
    capacity = config.timing.capacity_bytes * config.channels
    tr = traffic.read_trace(path)
    if len(tr) == 0:
        raise ConfigError("--trace", f"{path}: no requests")
    out = np.zeros((len(tr), 4), dtype=np.int64)
    out[:, 0] = (tr.addr % np.uint64(capacity)).astype(np.int64)
    out[:, 1] = tr.write
    out[:, 2] = 2
    out[:, 3] = tr.cycle.astype(np.int64)
    return out


# ---- simulation ------------------------------------------------------------------------------

def _poll(path, callback, stop, period=0.5):
    """Call ``callback(obj)`` whenever the testbench's ``progress.json`` changes, until ``stop``."""
    last = None
    while not stop.wait(period):
        try:
            obj = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if obj != last:
            last = obj
            callback(obj)


def simulate(config, requests, *, sim=None, seed=1, workers=None, ids=4, backpressure=0.0,
             on_violation="end", command_log=None, inject=(), job_dir=None, waves=None,
             verilog_dir=None, driver="fast", progress=None):
    """Run ``requests`` through ``hbm_top`` in cocotb; return the testbench's results dict.

    ``driver``: ``fast`` (one clock loop, ``sim/hbm/axi_host.py``) or ``cocotbext``
    (cocotbext-axi's ``AxiMaster``, slower; an independent cross-check of the AXI port).
    ``progress``: called from a helper thread with the testbench's progress record
    (``done``, ``total`` requests, ``cycle``, ``commands``) about once a second (fast driver).

    Raises :class:`~diestack.sim.runner.SimulationFailed` if the testbench failed (data mismatch,
    error response, timing violation unless ``on_violation="count"``).
    """
    from ..sim import runner
    check_choice("driver", driver, ("fast", "cocotbext"))
    sim = runner.resolve(sim)
    if workers is None:             # enough outstanding AXI requests to fill the queue
        workers = max(32, 2 * config.queue_depth)
    job = Path(job_dir) if job_dir else Path(tempfile.mkdtemp(prefix="diestack-hbm-"))
    job.mkdir(parents=True, exist_ok=True)
    vdir = Path(verilog_dir) if verilog_dir else job / "rtl"
    vpath, top = gen_verilog(config, vdir)
    b = runner.build([vpath], "hbm_top", sim=sim, waves=waves)
    t = config.timing
    spec = {
        "preset": t.preset, "overrides": {k: v for k, v in t.as_dict().items()},
        "org": {k: getattr(t, k) for k in ("sids", "bank_groups", "banks_per_group", "rows")},
        "channels": config.channels, "ecc": config.ecc, "addrmap": config.addrmap.as_dict(),
        "workers": workers, "ids": ids, "backpressure": backpressure,
        "on_violation": on_violation, "command_log": str(command_log) if command_log else None,
        "inject": list(inject), "seed": seed, "driver": driver,
    }
    spec["overrides"].update(spec["org"])
    (job / "job.json").write_text(json.dumps(spec, indent=2))
    np.save(job / "requests.npy", np.asarray(requests, dtype=np.int64))
    res_path = job / "results.json"
    for stale in (res_path, job / "progress.json"):
        if stale.exists():
            stale.unlink()
    stop = threading.Event()
    poller = None
    if progress is not None:
        poller = threading.Thread(target=_poll, args=(job / "progress.json", progress, stop),
                                  daemon=True)
        poller.start()
    try:
        result = runner.run(b, "diestack.sim.hbm.tb_hbm", extra_env={"DIESTACK_JOB": str(job)},
                            seed=seed, test_dir=job / "run")
    finally:
        stop.set()
        if poller is not None:
            poller.join()
    res = json.loads(res_path.read_text()) if res_path.exists() else None
    result.check()
    if res is None:
        raise runner.SimulationFailed(f"testbench wrote no results (log: {result.log})", result.log)
    res["sim_seconds"] = round(result.seconds, 2)
    res["build_seconds"] = round(b.seconds, 2)
    res["job_dir"] = str(job)
    return res


def summarize(config, res):
    """The ``hbm bench --json`` object: exactly the issue's fields (plus a few extras)."""
    t = config.timing
    bw = res["bytes"] / (res["cycles"] * t.clock_ns)          # bytes per ns = GB/s
    peak = t.peak_gbps * config.channels
    return {
        "bytes": res["bytes"], "cycles": res["cycles"],
        "bandwidth_gbps": round(bw, 4), "peak_gbps": round(peak, 4),
        "efficiency": round(bw / peak, 4),
        "read_latency_avg": res["read_latency_avg"], "read_latency_p99": res["read_latency_p99"],
        "row_hits": res["row_hits"], "row_misses": res["row_misses"],
        "row_conflicts": res["row_conflicts"], "timing_violations": res["timing_violations"],
        "timings": t.as_dict(), "clock_ns": t.clock_ns,
    }


# ---- CLI -------------------------------------------------------------------------------------

@contextmanager
def _request_progress(description, total, *, every=30.0):
    """Progress of simulated requests on stderr: a rich bar (``flows.cli.progress``) and, when
    stderr is not a terminal (a log file, where the bar does not draw), a line every ``every``
    seconds. Yields ``report(run_done)`` for the current run's progress record and ``finish_run(n)``
    closing a run of ``n`` requests."""
    from .cli import progress, say
    state = {"base": 0, "shown": 0, "next_line": time.monotonic() + every, "t0": time.monotonic()}
    tty = sys.stderr.isatty()
    with progress(description, total=total) as advance:
        def show(done):
            if done > state["shown"]:
                advance(done - state["shown"])
                state["shown"] = done
            now = time.monotonic()
            if not tty and now >= state["next_line"]:
                state["next_line"] = now + every
                say(f"{description}: {state['shown']}/{total} requests, "
                    f"{now - state['t0']:.0f} s")

        def report(obj):
            show(state["base"] + int(obj.get("done", 0)))

        def finish_run(n):
            state["base"] += n
            show(state["base"])

        yield report, finish_run


def _common(p, *, channels=True):
    p.add_argument("--preset", default="hbm3", help="hbm2, hbm2e or hbm3 (default hbm3)")
    if channels:
        from .cli import int_range
        p.add_argument("--channels", type=int_range(1, 16, choices=(1, 2, 4, 8, 16)), default=1,
                       help="pseudo-channel controllers (default 1)")
    p.add_argument("--page", default="open", help="page policy: open, closed, adaptive")
    p.add_argument("--refresh", default="allbank", help="allbank (REFab) or perbank (REFpb)")
    p.add_argument("--ecc", action="store_true", help="SECDED ECC on the DFI data")
    p.add_argument("--queue-depth", type=int, default=32, help="request queue entries, 16-32 (default 32; up to 128 for deep-reordering studies)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="timing override, e.g. tREFI=1500 or tFAW=16ns (repeatable)")


def _config(args):
    preset = str(args.preset).lower()
    check_choice("--preset", preset, tuple(PRESETS))
    check_choice("--page", args.page, PAGES)
    check_choice("--refresh", args.refresh, ("allbank", "perbank"))
    overrides = {}
    for item in getattr(args, "set", []):
        if "=" not in item:
            raise ConfigError("--set", f"expected NAME=VALUE, not {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip()] = int(v) if v.strip().isdigit() else v.strip()
    return make_config(preset, channels=getattr(args, "channels", 1), page=args.page,
                       ecc=args.ecc, refresh=args.refresh, overrides=overrides,
                       queue_depth=args.queue_depth)


def _gen_configure(p):
    _common(p)
    p.add_argument("-o", "--out", required=True, help="output folder")
    from .cli import add_json_arg
    add_json_arg(p)


def _gen(args):
    from .cli import emit_json, say
    cfg = _config(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError("-o", f"{out} exists and is not a folder")
    v, top = gen_verilog(cfg, out)
    t = cfg.timing
    meta = {"verilog": str(v), "interface": str(out / "hbm_top.json"), "top": "hbm_top",
            "channels": cfg.channels, "organisation": t.organisation(), "timings": t.as_dict(),
            "addrmap": cfg.addrmap.as_dict()}
    (out / "hbm_config.json").write_text(json.dumps(meta, indent=2) + "\n")
    if args.json:
        emit_json(meta)
    else:
        say(f"wrote {v} ({cfg.channels} channel(s), {t.preset})")
    return 0


def _bench_configure(p):
    from .cli import add_json_arg, add_sim_args, int_range
    _common(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--pattern", help="traffic pattern: " + ", ".join(PATTERNS))
    g.add_argument("--trace", help="DRAMsim3 trace: '<hex address> <READ|WRITE> <cycle>' per line")
    p.add_argument("--requests", type=int_range(1, 10_000_000), default=2000,
                   help="requests of 64 B for --pattern (default 2000)")
    p.add_argument("--command-log", default=None, help="write the DFI command log as CSV")
    add_sim_args(p)
    add_json_arg(p)


def _run_bench(args):
    cfg = _config(args)
    if args.trace:
        reqs = read_trace(args.trace, cfg)
    else:
        check_choice("--pattern", args.pattern, PATTERNS)
        reqs = make_requests(args.pattern, args.requests, cfg, seed=args.seed or 1)
    if args.command_log:
        folder = Path(args.command_log).resolve().parent
        if not folder.is_dir():
            raise ConfigError("--command-log", f"folder {folder} does not exist")
    log_tmp = None
    if args.command_log:
        log_tmp = Path(args.command_log).resolve().with_name(f".{Path(args.command_log).name}.part")
    with _request_progress("hbm bench", len(reqs)) as (report, finish_run):
        res = simulate(cfg, reqs, sim=args.sim, seed=args.seed or 1, on_violation="count",
                       command_log=log_tmp, waves=args.waves or None, progress=report)
        finish_run(len(reqs))
    if log_tmp is not None:
        os.replace(log_tmp, args.command_log)
    return cfg, res


def _bench(args):
    from .cli import CheckFailed, emit_json, say
    cfg, res = _run_bench(args)
    out = summarize(cfg, res)
    if args.json:
        emit_json(out)
    else:
        for k in ("bytes", "cycles", "bandwidth_gbps", "peak_gbps", "efficiency",
                  "read_latency_avg", "read_latency_p99", "row_hits", "row_misses",
                  "row_conflicts", "timing_violations", "clock_ns"):
            print(f"{k:20s} {out[k]}")
    if res["timing_violations"]:
        raise CheckFailed(f"{res['timing_violations']} timing violations "
                          f"(first: {res['channels'][0]['monitor']['first_violations'][:1]})")
    return 0


def _synth_configure(p):
    from .cli import add_json_arg
    _common(p, channels=False)
    p.add_argument("--target", default="generic", help="generic or ecp5")
    from .cli import int_range
    p.add_argument("--timeout", type=int_range(1, 86_400), default=3600,
                   help="seconds allowed to each tool run (default 3600)")
    add_json_arg(p)


def _synth(args):
    import subprocess

    from .cli import CheckFailed, emit_json
    from .step import Step
    from .synth import TARGETS, synthesize
    check_choice("--target", args.target, TARGETS)
    cfg = _config(args)
    design = f"hbm_{cfg.timing.preset}"
    # A tool run past --timeout is a failed check with one line naming the tool and the log, not
    # a traceback (the ECP5 LUT mapping of hbm_top needs tens of CPU minutes).
    step = Step(design, f"synth_{args.target}")
    try:
        with step:
            v, _ = gen_verilog(cfg, step.dir / "rtl")
            metrics = synthesize(v, "hbm_top", args.target, step, timeout=args.timeout)
    except subprocess.TimeoutExpired as e:
        tool = Path(str(e.cmd[0])).name if e.cmd else "tool"
        raise CheckFailed(f"synth hbm --target {args.target}: {tool} did not finish in "
                          f"{args.timeout} s (--timeout); partial log in {step.dir}") from None
    if args.json:
        emit_json(metrics)
    else:
        for k, v in sorted(metrics.items()):
            if k != "cells_by_type":
                print(f"{k:20s} {v}")
    return 0


# Requests of the 1M-command run: random mixed 64 B requests on hbm3 cost about 4.3 DFI commands
# each (ACT, two RD/WR, PRE; plus refresh), measured: 13025 commands for 3000 requests.
MILLION_REQUESTS = 260_000
MILLION_COMMANDS = 1_000_000


def _suite_configure(p):
    from .cli import add_json_arg, add_sim_args, int_range
    p.add_argument("--requests", type=int_range(8, 10_000_000), default=2000,
                   help="requests per pattern (default 2000)")
    p.add_argument("--presets", default="hbm2,hbm3", help="comma-separated presets")
    p.add_argument("--patterns", default=",".join(PATTERNS), help="comma-separated patterns")
    p.add_argument("--queue-depth", type=int_range(16, 128), default=32,
                   help="request queue entries (default 32; 128 shows deep reordering on interleaved4)")
    p.add_argument("--refresh", default="perbank",
                   help="perbank (default: refresh hidden behind traffic) or allbank")
    p.add_argument("--million", action="store_true",
                   help=f"also run >= 1M DFI commands of random mixed traffic on hbm3 "
                        f"({MILLION_REQUESTS} requests, data checked) and require zero violations")
    p.add_argument("--million-only", action="store_true",
                   help="run only the 1M-command check (no pattern table)")
    p.add_argument("--million-requests", type=int_range(100, 10_000_000), default=MILLION_REQUESTS,
                   help=f"requests of the 1M-command run (default {MILLION_REQUESTS}; fewer for a "
                        f"quick check, then the 1M-command target is not claimed)")
    p.add_argument("-o", "--out", default=None, help="JSON output (default build/hbm/bench.json)")
    add_sim_args(p)
    add_json_arg(p)


def _million(args, report):
    """The 1M-command run: hbm3, random mixed reads/writes with data checks, 8 AXI IDs, 5 %
    back-pressure; violations counted, not fatal, so the numbers are always reported."""
    from ..sim.runner import SimulationFailed
    cfg = make_config("hbm3", refresh=args.refresh, queue_depth=args.queue_depth)
    n = args.million_requests
    seed = args.seed or 1
    reqs = make_requests("mixed", n, cfg, seed=seed)
    job = Path(tempfile.mkdtemp(prefix="diestack-hbm-million-"))
    t0 = time.monotonic()
    error = None
    try:
        res = simulate(cfg, reqs, sim=args.sim, seed=seed, on_violation="count", workers=64,
                       ids=8, backpressure=0.05, job_dir=job, progress=report)
    except SimulationFailed as e:            # mismatches or AXI errors: report what ran
        error = str(e).splitlines()[0][:300]
        path = job / "results.json"
        if not path.exists():
            raise
        res = json.loads(path.read_text())
    wall = time.monotonic() - t0
    out = {"preset": "hbm3", "requests": n, "commands": res["commands"],
           "commands_target": MILLION_COMMANDS,
           "timing_violations": res["timing_violations"], "mismatches": res["mismatches"],
           "errors": len(res.get("errors", [])), "cycles": res["cycles"],
           "sim_cycles": res.get("sim_cycles"), "wall_seconds": round(wall, 1),
           "cycles_per_second": round(res.get("sim_cycles", res["cycles"]) / max(wall, 1e-9), 1),
           "commands_by_type": res["channels"][0]["monitor"]["commands"],
           "sim": args.sim or "default", "seed": seed, "job_dir": str(job)}
    if error:
        out["error"] = error
    return out


def _suite(args):
    from .cli import CheckFailed, emit_json, say
    from .step import build_root, write_json
    presets = [x.strip() for x in args.presets.split(",") if x.strip()]
    patterns = [x.strip() for x in args.patterns.split(",") if x.strip()]
    for p_ in presets:
        check_choice("--presets", p_, tuple(PRESETS))
    for p_ in patterns:
        check_choice("--patterns", p_, PATTERNS)
    check_choice("--refresh", args.refresh, ("allbank", "perbank"))
    million = args.million or args.million_only
    if args.million_only:
        presets = []
    probe_n = 10
    total = len(presets) * (len(patterns) * args.requests + probe_n)
    total += args.million_requests if million else 0
    rows, results = [], {}
    with _request_progress("bench hbm", total) as (report, finish_run):
        for preset in presets:
            cfg = make_config(preset, refresh=args.refresh, queue_depth=args.queue_depth)
            for pat in patterns:
                reqs = make_requests(pat, args.requests, cfg, seed=args.seed or 1)
                res = simulate(cfg, reqs, sim=args.sim, seed=args.seed or 1, on_violation="count",
                               progress=report)
                finish_run(len(reqs))
                s = summarize(cfg, res)
                s["sim_seconds"] = res["sim_seconds"]
                results[f"{preset}/{pat}"] = s
                peers = PEERS.get(pat, ("-", "-")) if preset == "hbm2" else PEERS_HBM3.get(pat, ("-", "-"))
                rows.append((preset, pat, f"{100 * s['efficiency']:.1f}", peers[0], peers[1],
                             f"{s['read_latency_avg']:.1f}" if s["read_latency_avg"] else "-",
                             s["timing_violations"]))
            # unloaded row-hit latency: one read to the same burst every 300 cycles (the first
            # opens the row; the rest hit it)
            probe = np.array([(0, 0, 2, 300 * k) for k in range(probe_n)], dtype=np.int64)
            res = simulate(cfg, probe, sim=args.sim, seed=args.seed or 1, on_violation="count")
            finish_run(probe_n)
            t = cfg.timing
            lat = res["read_latency_p50"]
            results[f"{preset}/latency"] = {
                "row_hit_latency": lat, "first_read_latency": res["read_latency_max"],
                "target": t.RL + t.BL + 4, "RL": t.RL, "BL": t.BL,
                "timing_violations": res["timing_violations"]}
            rows.append((preset, "unloaded row-hit latency (cycles)", lat, "-", "-",
                         f"target <= CL+BL+4 = {t.RL + t.BL + 4}", res["timing_violations"]))
        if million:
            results["million"] = _million(args, report)
            finish_run(args.million_requests)
    out = Path(args.out) if args.out else build_root() / "hbm" / "bench.json"
    write_json(out, results)
    lines = ["| preset | pattern | ours % of peak | DRAMsim3 % | Ramulator 2.1 % | read latency avg (cyc) | violations |",
             "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    if args.json:
        emit_json(results)
    else:
        if rows:
            print("\n".join(lines))
        if "million" in results:
            m = results["million"]
            print(f"1M-command run (hbm3 random mixed, data checked): {m['commands']} commands, "
                  f"{m['timing_violations']} timing violations, {m['mismatches']} data mismatches, "
                  f"{m['cycles']} cycles, {m['wall_seconds']} s wall ({m['cycles_per_second']} cycles/s)")
        say(f"wrote {out}")
    bad = sum(v.get("timing_violations", 0) for v in results.values())
    m = results.get("million", {})
    if bad or m.get("mismatches") or m.get("errors"):
        raise CheckFailed(f"{bad} timing violations, {m.get('mismatches', 0)} data mismatches in "
                          f"the benchmark")
    if m and args.million_requests == MILLION_REQUESTS and m["commands"] < MILLION_COMMANDS:
        raise CheckFailed(f"the 1M-command run issued only {m['commands']} commands")
    return 0


def _stage(ctx):
    """``diestack run`` stage: hbm3, short random mixed + stream traffic, data integrity, zero
    violations, bandwidth reported."""
    from ..sim import runner
    cfg = make_config("hbm3", queue_depth=16)
    seed = ctx.seed or 1
    # Icarus compiles this design in seconds where a cold Verilator build takes minutes; the
    # simulation speed is set by the Python testbench either way.
    sim = ctx.sim or ("icarus" if "icarus" in runner.available() else None)
    out = {}
    passed = True
    md = []
    for name, pat, n in (("random mixed", "mixed", 120), ("stream", "stream", 300)):
        reqs = make_requests(pat, n, cfg, seed=seed)
        try:
            res = simulate(cfg, reqs, sim=sim, seed=seed, on_violation="end",
                           job_dir=ctx.out / "hbm" / pat)
            s = summarize(cfg, res)
            ok = res["mismatches"] == 0 and res["timing_violations"] == 0
        except Exception as e:      # a failed check is reported, not raised
            s, ok = {"error": str(e)[-500:]}, False
        passed &= ok
        out[pat] = s
        if ok:
            md.append(f"- {name}: {n} x 64 B, {s['bandwidth_gbps']:.2f} GB/s of {s['peak_gbps']:.1f} "
                      f"({100 * s['efficiency']:.1f}%), read latency avg {s['read_latency_avg']:.1f} "
                      f"cycles, {s['timing_violations']} timing violations, data checked")
        else:
            md.append(f"- {name}: **FAILED** {s.get('error', '')[:200]}")
    return {"title": "HBM3 controller (1 pseudo-channel, AXI, JEDEC-checked device model)",
            "passed": passed,
            "metrics": {k: {kk: v.get(kk) for kk in ("bandwidth_gbps", "efficiency",
                                                     "timing_violations", "read_latency_avg")}
                        for k, v in out.items()},
            "markdown": "\n".join(md)}


def register(cli):
    cli.verb("gen", "hbm", "generate hbm_top Verilog (N pseudo-channel controllers with AXI ports)",
             _gen_configure, _gen)
    cli.command("hbm", "bench", "run traffic through one controller against the JEDEC device model",
                _bench_configure, _bench)
    cli.verb("synth", "hbm", "synthesize one HBM pseudo-channel controller", _synth_configure, _synth)
    cli.verb("bench", "hbm", "HBM patterns on HBM2 and HBM3 beside DRAMsim3 / Ramulator numbers",
             _suite_configure, _suite)
    cli.stage("hbm", "HBM3 controller: random + stream traffic, data integrity, zero violations", _stage)
