"""D2D link flows: ``gen d2d``, ``d2d transfer``, ``synth d2d``, ``bench d2d`` and the ``diestack run`` stage.

The simulation path is one function, :func:`transfer`: generate the ``d2d_pair`` Verilog for a
configuration (generation is cached by configuration and source hash; the simulator build is
cached by the simulator layer), write a job folder (``job.json`` + ``input.bin``), run the cocotb
testbench ``diestack.sim.d2d.tb_transfer`` (die A -> channel model -> die B) and read
``output.bin`` and ``metrics.json`` back. pytest, the CLI and the benchmark all use it.
"""

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from ..hdl.common.params import ConfigError, check_choice, check_int, check_number

__all__ = ["register", "make_config", "gen_verilog", "pair_verilog", "transfer", "bench",
           "DEFAULT_FLIGHT", "BER_SWEEP"]

DEFAULT_FLIGHT = 4          # channel latency in cycles used by the simulations and the sizing rule
BER_SWEEP = (0.0, 1e-6, 1e-5, 3e-5, 1e-4)
FLITS = ("68", "256", "256lo", "raw")
# the modules the generated d2d_top / d2d_pair Verilog depends on (the generation cache key)
GEN_SOURCES = ("adapter", "credit", "crc", "flit", "lanes", "retry", "sideband", "top", "training")


def make_config(lanes=16, flit="256", *, flight=DEFAULT_FLIGHT, **kw):
    from ..hdl.d2d.adapter import D2DConfig
    return D2DConfig(lanes=lanes, flit=str(flit), flight=flight, **kw)


def _sources_hash():
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    files = [root / "hdl" / "d2d" / f"{n}.py" for n in GEN_SOURCES]
    files += [root / "sim" / "d2d" / "golden.py", root / "hdl" / "common" / "verilog.py"]
    for p in files:
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _write_atomic(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def gen_verilog(config, out_dir, *, top="die"):
    """Write ``d2d_top.v`` (or ``d2d_pair.v``) and its interface JSON into ``out_dir``."""
    from ..hdl.common.verilog import interface_json, to_verilog
    from ..hdl.d2d.top import D2DPair, D2DTop
    name = "d2d_top" if top == "die" else "d2d_pair"
    comp = D2DTop(config) if top == "die" else D2DPair(config)
    out_dir = Path(out_dir)
    _write_atomic(out_dir / f"{name}.v", to_verilog(comp, name))
    _write_atomic(out_dir / f"{name}.json", interface_json(comp))
    _write_atomic(out_dir / f"{name}.config.json", json.dumps(config.describe(), indent=2) + "\n")
    return out_dir / f"{name}.v"


def pair_verilog(config):
    """Cached ``d2d_pair.v`` for ``config`` (generation takes tens of seconds)."""
    from ..sim.runner import cache_root
    key = hashlib.sha256(f"{config!r}|{_sources_hash()}".encode()).hexdigest()[:20]
    d = cache_root() / "d2d-gen" / key
    v = d / "d2d_pair.v"
    if not v.exists():
        gen_verilog(config, d, top="pair")
    return v


def _check_transfer_args(lanes, flit, ber, burst_every, burst_len, stuck_lane, backpressure):
    check_int("lanes", lanes, choices=(16, 32, 64))
    check_choice("flit", str(flit), FLITS)
    check_number("ber", ber, lo=0.0, hi=0.5)
    check_int("burst_every", burst_every, lo=0)
    check_int("burst_len", burst_len, lo=0)
    if bool(burst_every) != bool(burst_len):
        raise ConfigError("burst_len" if burst_every else "burst_every",
                          "--burst-every and --burst-len go together")
    if burst_len > burst_every:
        raise ConfigError("burst_len", f"must not exceed burst_every ({burst_every})")
    from ..hdl.d2d.top import SPARES_PER_GROUP
    slots = lanes + (lanes // min(lanes, 32)) * SPARES_PER_GROUP
    check_int("stuck_lane", stuck_lane, lo=-1, hi=slots - 1)
    check_number("backpressure", backpressure, lo=0.0, hi=0.9)


def transfer(data, *, lanes=16, flit="256", ber=0.0, burst_every=0, burst_len=0, stuck_lane=-1,
             stuck_value=0, stuck_after=0, reverse=False, seed=1, sim=None, backpressure=0.0,
             flight=DEFAULT_FLIGHT, max_cycles=None, job_dir=None, waves=None, log=None):
    """Send ``data`` (bytes) from die A to die B in simulation; return ``(received, metrics)``.

    ``stuck_lane`` K sticks physical lane K of the A -> B direction at ``stuck_value``: from the
    start (the bring-up lane test finds and repairs it) or, with ``stuck_after`` N, from data
    cycle N on (CRC errors, replays, retry escalation, retrain, lane test, repair).
    Raises ConfigError for bad parameters, SimulatorUnavailable, SimulationFailed if the
    testbench itself failed.
    """
    from ..sim.runner import build, run
    from ..hdl.d2d.top import lane_config
    _check_transfer_args(lanes, flit, ber, burst_every, burst_len, stuck_lane, backpressure)
    cfg = make_config(lanes, flit, flight=flight)
    t0 = time.monotonic()
    v = pair_verilog(cfg)
    t_gen = time.monotonic() - t0
    b = build([v], "d2d_pair", sim=sim, waves=waves)
    t_build = time.monotonic() - t0 - t_gen
    own = job_dir is None
    job = Path(job_dir) if job_dir else Path(tempfile.mkdtemp(prefix="diestack-d2d-"))
    job.mkdir(parents=True, exist_ok=True)
    lc = lane_config(cfg)
    n_payloads = (len(data) + 8 + cfg.payload_bytes - 1) // cfg.payload_bytes
    if max_cycles is None:
        max_cycles = 200_000 + n_payloads * cfg.flit_cycles * 20
    jobcfg = {"lanes": lanes, "flit": str(flit), "ui_per_cycle": lc.ui, "slots": lc.slots,
              "spares_per_group": lc.spares_per_group, "group_lanes": lc.group_lanes,
              "payload_bytes": cfg.payload_bytes, "flit_cycles": cfg.flit_cycles,
              "flight": flight, "ber": ber, "burst_every": burst_every, "burst_len": burst_len,
              "stuck_lane": stuck_lane, "stuck_value": stuck_value, "stuck_after": stuck_after,
              "reverse": bool(reverse),
              "seed": seed, "backpressure": backpressure, "max_cycles": max_cycles}
    (job / "job.json").write_text(json.dumps(jobcfg, indent=2) + "\n")
    (job / "input.bin").write_bytes(bytes(data))
    for stale in ("output.bin", "metrics.json"):
        (job / stale).unlink(missing_ok=True)
    res = run(b, "diestack.sim.d2d.tb_transfer", extra_env={"DIESTACK_JOB": str(job)},
              seed=seed, test_dir=job / "sim", log=log)
    res.check()
    out = (job / "output.bin").read_bytes()
    metrics = json.loads((job / "metrics.json").read_text())
    metrics.update(sim=b.sim, sim_seconds=round(res.seconds, 2), gen_seconds=round(t_gen, 2),
                   build_seconds=round(t_build, 2), config=cfg.describe())
    metrics["byte_exact"] = out == bytes(data) and metrics.get("scoreboard") == "ok"
    if own:
        shutil.rmtree(job, ignore_errors=True)
    return out, metrics


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def _flit_arg(p):
    p.add_argument("--flit", choices=FLITS, default="256", help="flit format (default 256)")


def _lanes_arg(p):
    from .cli import int_range
    p.add_argument("--lanes", type=int_range(choices=(16, 32, 64)), default=16,
                   help="data lanes per direction: 16, 32 or 64 (default 16)")


def _configure_gen(p):
    _lanes_arg(p)
    _flit_arg(p)
    p.add_argument("--top", choices=("die", "pair"), default="die",
                   help="die: one die's adapter d2d_top (default); pair: the d2d_pair test top")
    p.add_argument("-o", "--out", required=True, help="output folder")


def _gen(args):
    from .cli import say
    cfg = make_config(args.lanes, args.flit)
    v = gen_verilog(cfg, args.out, top=args.top)
    say(f"wrote {v} and {v.with_suffix('.json')} ({cfg.describe()})")
    return 0


def _configure_transfer(p):
    from .cli import add_json_arg, add_sim_args, float_range, int_range
    p.add_argument("--in", dest="inp", required=True, help="input file (bytes to send)")
    p.add_argument("--out", required=True, help="output file (bytes die B received)")
    p.add_argument("--ber", type=float_range(0.0, 0.5), default=0.0, help="random bit error rate")
    p.add_argument("--burst-every", type=int_range(lo=1), default=0, metavar="N",
                   help="a burst error every N bits")
    p.add_argument("--burst-len", type=int_range(lo=1), default=0, metavar="L",
                   help="burst length in UIs of one lane")
    p.add_argument("--stuck-lane", type=int_range(lo=0), default=-1, metavar="K",
                   help="physical lane K (A -> B) stuck at 0; link training repairs it")
    p.add_argument("--stuck-after", type=int_range(lo=0), default=0, metavar="N",
                   help="with --stuck-lane: the lane breaks at data cycle N (mid-transfer)")
    p.add_argument("--reverse", action="store_true", help="reversed lane wiring")
    p.add_argument("--backpressure", type=float_range(0.0, 0.9), default=0.0,
                   help="probability that die B's consumer stalls for a 128-cycle window")
    _lanes_arg(p)
    _flit_arg(p)
    add_sim_args(p)
    add_json_arg(p)


def _transfer(args):
    from .cli import CheckFailed, UsageError, emit_json, say
    inp = Path(args.inp)
    if not inp.is_file():
        raise UsageError(f"--in: no such file: {inp}")
    out = Path(args.out)
    if out.exists() and out.is_dir():
        raise UsageError(f"--out: is a folder: {out}")
    if not out.parent.exists():
        raise UsageError(f"--out: folder does not exist: {out.parent}")
    data = inp.read_bytes()
    seed = 1 if args.seed is None else args.seed
    say(f"d2d transfer: {len(data)} bytes, x{args.lanes} {args.flit}, ber={args.ber:g}, seed={seed}")
    received, m = transfer(data, lanes=args.lanes, flit=args.flit, ber=args.ber,
                           burst_every=args.burst_every, burst_len=args.burst_len,
                           stuck_lane=args.stuck_lane, stuck_after=args.stuck_after,
                           reverse=args.reverse, seed=seed,
                           sim=args.sim, waves=args.waves, backpressure=args.backpressure)
    # Only a successful transfer replaces --out; a mismatch leaves what B received beside it.
    target = out if m["byte_exact"] else out.with_name(out.name + ".received")
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(received)
    os.replace(tmp, target)
    fields = ("bytes_in", "bytes_out", "flits", "cycles", "goodput", "crc_errors", "replays",
              "retrains", "latency_min", "latency_avg", "latency_max")
    summary = {k: m.get(k) for k in fields}
    summary.update({k: m.get(k) for k in ("byte_exact", "tx_flits", "pipeline_latency_min",
                                          "pipeline_latency_avg", "pipeline_latency_max",
                                          "latency_first_avg", "bit_flips", "overflow", "seed",
                                          "sim", "lanes_final", "phy_retrains", "train_cycles",
                                          "completed", "scoreboard")})
    if args.json:
        emit_json(summary)
    else:
        for k, v in summary.items():
            say(f"  {k:22s} {v}")
    if not m["byte_exact"]:
        raise CheckFailed(f"bytes out differ from bytes in ({m['bytes_out']} vs {m['bytes_in']} "
                          f"bytes, scoreboard: {m.get('scoreboard')}, seed {seed}); die B's bytes "
                          f"are in {target}, {out} left unchanged")
    return 0


def _configure_synth(p):
    from .cli import add_json_arg
    _lanes_arg(p)
    _flit_arg(p)
    p.add_argument("--target", choices=("generic", "ecp5"), default="generic")
    add_json_arg(p)


def _synth(args):
    from .cli import emit_json, say
    from .step import Step
    from .synth import synthesize
    cfg = make_config(args.lanes, args.flit)
    design = f"d2d_x{args.lanes}_{args.flit}"
    with Step(design, f"synth_{args.target}") as step:
        v = gen_verilog(cfg, step.dir, top="die")
        metrics = synthesize(v, "d2d_top", args.target, step)
        metrics["config"] = cfg.describe()
    if args.json:
        emit_json(metrics)
    else:
        say(f"{design} {args.target}: " + ", ".join(f"{k}={v}" for k, v in metrics.items()
                                                    if k != "config"))
    return 0


def bench(*, size=65536, lanes=16, sim=None, seed=1, bers=BER_SWEEP, fault_mb=0.0,
          progress=None):
    """The D2D benchmark: goodput and latency per flit format, goodput vs BER (256B); rows."""
    from ..sim.d2d import golden
    from ..hdl.d2d.flit import flit_lane_bytes
    import random
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(size))
    rows = []

    def one(kind, flit, ber=0.0, data=data, **kw):
        _, m = transfer(data, lanes=lanes, flit=flit, ber=ber, seed=seed, sim=sim, **kw)
        cfg = make_config(lanes, flit)
        frac = golden.payload_fraction(flit)
        lane_frac = cfg.payload_bytes / flit_lane_bytes(flit, cfg.bytes_per_cycle)
        row = {"case": kind, "flit": flit, "lanes": lanes, "ber": ber,
               "bytes": len(data), "byte_exact": m["byte_exact"], "goodput": m["goodput"],
               "payload_fraction": round(frac, 4), "lane_payload_fraction": round(lane_frac, 4),
               "latency_min": m["latency_min"], "latency_avg": m["latency_avg"],
               "latency_max": m["latency_max"], "latency_first_avg": m["latency_first_avg"],
               "pipeline_latency_max": m["pipeline_latency_max"],
               "pipeline_latency_avg": m["pipeline_latency_avg"],
               "crc_errors": m["crc_errors"], "replays": m["replays"], "retrains": m["retrains"],
               "cycles": m["cycles"], "sim_seconds": m["sim_seconds"], **kw}
        rows.append(row)
        if progress:
            progress()
        return row

    for flit in FLITS:
        one("format", flit)
    for ber in bers:
        if ber:
            one("ber", "256", ber)
    if fault_mb:
        big = bytes(rng.randrange(256) for _ in range(int(fault_mb * (1 << 20))))
        one("fault", "256", 1e-5, data=big)
        one("fault", "256", 0.0, data=big, burst_every=100_000, burst_len=16)
        one("fault", "256", 1e-6, data=big, stuck_lane=3, stuck_after=5000)
        one("fault", "256", 1e-5, data=big, backpressure=0.3)
        one("fault", "256", 1e-5, data=big, reverse=True)
    return rows


def _configure_bench(p):
    from .cli import add_json_arg, float_range, int_range
    p.add_argument("--bytes", type=int_range(lo=1024, hi=64 << 20), default=65536,
                   help="bytes per format / BER case (default 64 KiB)")
    p.add_argument("--fault-mb", type=float_range(0.0, 64.0), default=0.0,
                   help="also run the fault cases (BER 1e-5, bursts, a lane sticking "
                        "mid-transfer, back-pressure, reversed wiring) with this many MiB each "
                        "(the >= 1 MB target uses 1)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None)
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=1)
    _lanes_arg(p)
    add_json_arg(p)


BENCH_NOTE = ("goodput = payload bits released / raw data-lane bits over the data phase; payload = "
              "the format's payload fraction (golden byte map); lane = payload / lane bytes incl. "
              "the pad of a flit's last beat; latency in cycles TX accept -> RX release of the "
              "payload's last segment (1st: first segment, the early half of 256lo); pipe max = "
              "latency - channel flight - flit serialization.")


def _bench(args):
    from .cli import emit_json, progress, say
    from .step import Step, write_json
    n = len(FLITS) + sum(1 for b in BER_SWEEP if b) + (5 if args.fault_mb else 0)
    with Step(f"d2d_x{args.lanes}", "bench") as step, progress("d2d bench", total=n) as advance:
        rows = bench(size=args.bytes, lanes=args.lanes, sim=args.sim, seed=args.seed,
                     fault_mb=args.fault_mb, progress=advance)
        step.metrics["rows"] = rows
        write_json(step.path("bench.json"), rows)
    hdr = (f"{'case':6s} {'flit':6s} {'ber':>7s} {'bytes':>8s} {'exact':>5s} {'goodput':>8s} "
           f"{'payload':>8s} {'lane':>6s} {'lat min/avg/max':>18s} {'1st avg':>7s} {'pipe max':>8s} "
           f"{'crc':>5s} {'replay':>6s} {'retrain':>7s}")
    lines = [hdr]
    for r in rows:
        lat = f"{r['latency_min']}/{r['latency_avg']}/{r['latency_max']}"
        lines.append(f"{r['case']:6s} {r['flit']:6s} {r['ber']:7.0e} {r['bytes']:8d} "
                     f"{'yes' if r['byte_exact'] else 'NO':>5s} {r['goodput']:8.4f} "
                     f"{r['payload_fraction']:8.4f} {r['lane_payload_fraction']:6.3f} {lat:>18s} "
                     f"{str(r['latency_first_avg']):>7s} "
                     f"{str(r['pipeline_latency_max']):>8s} {r['crc_errors']:5d} "
                     f"{r['replays']:6d} {r['retrains']:7d}")
    if args.json:
        emit_json({"rows": rows, "json": str(step.path("bench.json"))})
    else:
        print("\n".join(lines))
        say(BENCH_NOTE)
        say(f"json: {step.path('bench.json')}")
    return 0 if all(r["byte_exact"] for r in rows) else 1


def _stage(ctx):
    import random
    seed = 1 if ctx.seed is None else ctx.seed
    rng = random.Random(seed)
    data = bytes(rng.randrange(256) for _ in range(16384))
    _, m = transfer(data, lanes=16, flit="256", ber=1e-5, seed=seed, sim=ctx.sim)
    ok = m["byte_exact"]
    md = (f"16 KiB from die A to die B over x16 lanes, 256B flits, BER 1e-5 (seed {seed}), "
          f"{m['sim']}: **{'byte-exact' if ok else 'MISMATCH'}**.\n\n"
          "| metric | value |\n|---|---|\n"
          + "".join(f"| {k} | {m[k]} |\n" for k in
                    ("bytes_in", "bytes_out", "flits", "cycles", "goodput", "crc_errors",
                     "replays", "retrains", "latency_min", "latency_avg", "latency_max",
                     "pipeline_latency_max")))
    keep = ("bytes_in", "bytes_out", "flits", "cycles", "goodput", "crc_errors", "replays",
            "retrains", "latency_min", "latency_avg", "latency_max", "byte_exact")
    return {"title": "D2D link transfer (BER 1e-5)", "passed": ok,
            "metrics": {k: m[k] for k in keep}, "markdown": md}


def register(cli):
    cli.verb("gen", "d2d", "generate the D2D adapter Verilog (d2d_top or the d2d_pair test top)",
             _configure_gen, _gen)
    cli.command("d2d", "transfer", "send a file from die A to die B through the RTL adapters "
                "over the error-injecting channel model (simulation)", _configure_transfer, _transfer)
    cli.verb("synth", "d2d", "synthesize one die's D2D adapter (d2d_top)", _configure_synth, _synth)
    cli.verb("bench", "d2d", "D2D goodput and latency per flit format and versus BER",
             _configure_bench, _bench)
    cli.stage("d2d", "D2D link: 16 KiB transfer at BER 1e-5 with 256B flits", _stage)
