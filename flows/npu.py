"""NPU commands: ``gen npu``, ``npu gemm``, ``synth npu``, ``bench npu`` and the ``run`` stage.

- ``diestack gen npu --rows R --cols C [--dataflow ws|os|both] -o DIR``: ``npu_top.v`` and
  ``npu_top.json`` (the interface, ``component.metadata.as_json()``).
- ``diestack npu gemm --a A.npy --b B.npy [--d D.npy] --out C.npy --rows R --cols C
  --dataflow ws|os [--requant SCALE,SHIFT] [--relu] [--sim verilator|icarus] [--json]``: runs
  the hardware-tiled GEMM command on the RTL in simulation, checks the result against numpy
  (exit 1 on a mismatch) and writes C (int32, or int8 with --requant) atomically.
- ``diestack synth npu --rows R --cols C [--target generic|ecp5] [--json]``: one flow step per
  target under ``build/npu_RxC/``.
- ``diestack bench npu``: RTL cycles against the ideal and the SCALE-Sim model (npu.md), and the
  simulators' speed; a table on stdout (or ``--json``), progress on stderr.
"""

import json
import math
import os
import time
from pathlib import Path

import numpy as np

from ..hdl.common.params import ConfigError
from .cli import (CheckFailed, UsageError, add_json_arg, add_sim_args, emit_json, progress, say,
                  int_range)
from .step import Step, build_root, write_json

__all__ = ["register", "scalesim_cycles", "ideal_cycles"]

BENCH_SIZES = ((64, 64, 64), (128, 256, 512), (256, 256, 256))
BENCH_ARRAYS = ((8, 8), (16, 16))


def _cfg(args, dataflow=None, **kw):
    from ..hdl.npu.config import NPUConfig
    return NPUConfig(rows=args.rows, cols=args.cols,
                     dataflow=dataflow or getattr(args, "dataflow", None) or "both", **kw)


def _array_args(p, dataflow=True):
    p.add_argument("--rows", type=int, required=True, help="array rows R (2..64)")
    p.add_argument("--cols", type=int, required=True, help="array columns C (2..64)")
    if dataflow:
        p.add_argument("--dataflow", default="both",
                       help="synthesized dataflows: ws, os or both (default both)")


# ---------------------------------------------------------------- gen ----------------------------

def _gen_configure(p):
    _array_args(p)
    p.add_argument("-o", "--out", required=True, help="output folder")


def _atomic_write(path, text):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _gen(args):
    from ..hdl.common.verilog import interface_json, to_verilog
    from ..hdl.npu.top import NPUTop
    cfg = _cfg(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o/--out: {out} exists and is not a folder")
    top = NPUTop(cfg)
    text = to_verilog(top, "npu_top")
    iface = interface_json(top)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_write(out / "npu_top.v", text)
    _atomic_write(out / "npu_top.json", iface)
    say(f"wrote {out / 'npu_top.v'} ({len(text.splitlines())} lines) and {out / 'npu_top.json'}")
    return 0


# ---------------------------------------------------------------- gemm ---------------------------

def _gemm_configure(p):
    p.add_argument("--a", required=True, help="A: int8 M x K (.npy)")
    p.add_argument("--b", required=True, help="B: int8 K x N (.npy)")
    p.add_argument("--d", default=None, help="D: int32 M x N (.npy), added to A.B")
    p.add_argument("--out", required=True, help="C output (.npy): int32, or int8 with --requant")
    _array_args(p, dataflow=False)
    p.add_argument("--dataflow", required=True, help="ws or os")
    p.add_argument("--requant", default=None, metavar="SCALE,SHIFT",
                   help="requantize to int8: round(x*SCALE / 2**SHIFT), saturate (rule in "
                        "hdl/npu/requant.py)")
    p.add_argument("--relu", action="store_true", help="ReLU on the int8 output (needs --requant)")
    p.add_argument("--backpressure", type=float, default=0.0,
                   help="random AXI pause probability in the memory model (0..0.9)")
    add_sim_args(p)
    add_json_arg(p)


def _load(path, option, dtype, ndim=2):
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{option}: no such file: {path}")
    try:
        arr = np.load(p, allow_pickle=False)
    except Exception as e:   # not a .npy, pickled objects, truncated
        raise UsageError(f"{option}: cannot read {path} as .npy: {e}") from None
    if not isinstance(arr, np.ndarray):      # np.load returns an NpzFile for a zip archive
        arr.close()
        raise UsageError(f"{option}: {path} is an .npz archive, not a .npy array")
    if arr.dtype != np.dtype(dtype):
        raise UsageError(f"{option}: dtype must be {np.dtype(dtype).name}, not {arr.dtype}")
    if arr.ndim != ndim:
        raise UsageError(f"{option}: must be a {ndim}-D matrix, not shape {arr.shape}")
    if 0 in arr.shape or max(arr.shape) > 65535:
        raise UsageError(f"{option}: every dimension must be 1..65535, not {arr.shape}")
    return arr


def _parse_requant(text):
    try:
        scale, shift = (int(x, 0) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--requant: expected SCALE,SHIFT (two integers), not {text!r}") from None
    if not -(1 << 31) <= scale < (1 << 31):
        raise UsageError(f"--requant: SCALE must be a signed 32-bit integer, not {scale}")
    if not 0 <= shift <= 63:
        raise UsageError(f"--requant: SHIFT must be 0..63, not {shift}")
    return scale, shift


def _gemm(args):
    from ..sim.npu.harness import Gemm, check, run_gemms
    from ..sim import runner
    if args.dataflow not in ("ws", "os"):
        raise UsageError(f"--dataflow: must be ws or os, not {args.dataflow!r}")
    cfg = _cfg(args, dataflow="both")
    a = _load(args.a, "--a", np.int8)
    b = _load(args.b, "--b", np.int8)
    if a.shape[1] != b.shape[0]:
        raise UsageError(f"--b: B has {b.shape[0]} rows but A has {a.shape[1]} columns "
                         f"(A {a.shape}, B {b.shape})")
    d = None
    if args.d is not None:
        d = _load(args.d, "--d", np.int32)
        if d.shape != (a.shape[0], b.shape[1]):
            raise UsageError(f"--d: shape must be {(a.shape[0], b.shape[1])}, not {d.shape}")
    requant = _parse_requant(args.requant) if args.requant is not None else None
    if args.relu and requant is None:
        raise UsageError("--relu: needs --requant (ReLU is applied to the int8 output)")
    if not 0 <= args.backpressure <= 0.9:
        raise UsageError(f"--backpressure: must be in 0..0.9, not {args.backpressure}")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out: {out} is a folder")
    if not out.parent.exists():
        raise UsageError(f"--out: folder {out.parent} does not exist")
    sim = runner.resolve(args.sim)
    seed = args.seed if args.seed is not None else 1
    say(f"npu gemm: {a.shape[0]}x{b.shape[1]}x{a.shape[1]} on {cfg.rows}x{cfg.cols} "
        f"{args.dataflow.upper()}, {sim} (the first build of a design takes a minute)")
    g = Gemm(a, b, d, dataflow=args.dataflow, requant=requant, relu=args.relu)
    res = run_gemms(cfg, [g], sim=sim, seed=seed, backpressure=args.backpressure,
                    waves=args.waves or None)[0]
    problems = check(res)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        np.save(f, res.c)
    os.replace(tmp, out)
    m = dict(res.metrics)
    m["match"] = not problems
    m["out"] = str(out)
    if args.json:
        emit_json(m)
    else:
        say(f"cycles {m['cycles']}, compute span {m['compute_cycles']}, MACs {m['macs']}, "
            f"utilization {m['utilization']:.3f}; wrote {out}")
    if problems:
        raise CheckFailed("RTL result differs from numpy: " + "; ".join(problems))
    return 0


# ---------------------------------------------------------------- synth --------------------------

SYNTH_UNITS = ("array", "core", "dma", "control", "top")


def _synth_configure(p):
    _array_args(p)
    p.add_argument("--target", choices=("generic", "ecp5"), default="generic",
                   help="generic gates (yosys) or ECP5-85k (yosys + nextpnr)")
    p.add_argument("--unit", choices=SYNTH_UNITS, default="top",
                   help="what to synthesize: the systolic array unit (PE grid + skew + deskew, "
                        "registered at its boundary), the core (array + scratchpad + accumulator "
                        "+ sequencer), the AXI DMA, the control unit (AXI-Lite registers, queue, "
                        "tiler) or the whole npu_top (default)")
    p.add_argument("--multiplier", choices=("lut", "dsp"), default="lut",
                   help="PE multiplier: pipelined LUT shift-and-add or DSP (MULT18X18D on ECP5)")
    p.add_argument("--freq", type=float, default=150.0, help="nextpnr target MHz (ecp5)")
    add_json_arg(p)


def synth_unit(cfg, unit):
    """(component, Verilog top module name) of one synthesizable NPU unit."""
    if unit == "array":
        from ..hdl.npu.array import SystolicArray
        return SystolicArray(cfg.rows, cfg.cols, cfg.dataflow, cfg.pe_multiplier,
                             io_regs=True), "npu_array"
    if unit == "core":
        from ..hdl.npu.core import Core
        return Core(cfg), "npu_core"
    if unit == "dma":
        from ..hdl.npu.dma import Dma
        return Dma(cfg), "npu_dma"
    if unit == "control":                     # AXI-Lite registers + queue + dispatcher + tiler
        from ..hdl.npu.control import Control
        return Control(cfg), "npu_control"
    if unit == "top":
        from ..hdl.npu.top import NPUTop
        return NPUTop(cfg), "npu_top"
    raise UsageError(f"--unit: must be one of {', '.join(SYNTH_UNITS)}, not {unit!r}")


def _synth_key(verilog, target, freq):
    """Content key of a synthesis run: the Verilog, the target and clock, and the flow script."""
    import hashlib
    from . import synth as synth_flow
    h = hashlib.sha256()
    for part in (verilog, target, repr(float(freq)), Path(synth_flow.__file__).read_text()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def synth_step_name(cfg, target, unit, place=True):
    """(design, step) of a synthesis run: its folder is ``build/<design>/<step>/``."""
    design = (f"npu_{cfg.rows}x{cfg.cols}" + ("" if cfg.dataflow == "both" else f"_{cfg.dataflow}")
              + ("" if cfg.pe_multiplier == "lut" else f"_{cfg.pe_multiplier}"))
    return design, (f"synth_{target}" + ("" if place else "_map")
                    + ("" if unit == "top" else f"_{unit}"))


def _tool_phase(step_dir):
    """What a running ECP5 synthesis step is doing, from the tail of its tool logs."""
    def tail(path, size=1 << 18):
        try:
            with open(path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - size))
                return f.read().decode(errors="replace")
        except OSError:
            return None
    def mtime(path):
        try:
            return path.stat().st_mtime
        except OSError:
            return None
    # the folder may hold an earlier run's nextpnr.log: it counts only when newer than yosys.log
    pnr, ys = mtime(step_dir / "nextpnr.log"), mtime(step_dir / "yosys.log")
    text = tail(step_dir / "nextpnr.log") if pnr is not None and pnr >= (ys or 0) else None
    if text is not None:
        phases = (("Program finished", "nextpnr done"), ("Routing", "nextpnr routing"),
                  ("simulated annealing", "nextpnr placement refinement"),
                  ("analytical placer", "nextpnr placement"), ("Info:", "nextpnr packing"))
        for marker, phase in phases:
            if marker in text:
                return phase
    text = tail(step_dir / "yosys.log") or ""
    passes = [ln.split("Executing", 1)[1].strip().rstrip(".") for ln in text.splitlines()
              if " Executing " in ln and ln[:1].isdigit()]
    return f"yosys {passes[-1]}" if passes else "yosys"


def wait_with_heartbeat(future, step_dir, label, every=60):
    """``future.result()``, saying every ``every`` seconds what the tools in ``step_dir`` do."""
    from concurrent.futures import TimeoutError as FuturesTimeout
    t0 = time.monotonic()
    while True:
        try:
            return future.result(timeout=every)
        except FuturesTimeout:
            say(f"      {label}: still running after {(time.monotonic() - t0) / 60:.0f} min "
                f"({_tool_phase(step_dir)})")


def synth_npu(cfg, target, freq=150.0, unit="top", reuse=False, place=True):
    """Synthesize one NPU unit of ``cfg`` for ``target``; returns (metrics, step folder).

    ``place=False``: ECP5 mapping by yosys only (cell counts, no nextpnr, no Fmax).

    ``reuse``: when the step folder already holds a successful run of the same key (Verilog,
    target, clock, flow script), return its metrics (with ``reused: True``) instead of
    running the tools again.
    """
    from ..hdl.common.verilog import to_verilog
    from .synth import synthesize
    comp, top = synth_unit(cfg, unit)
    design, step_name = synth_step_name(cfg, target, unit, place)
    text = to_verilog(comp, top)
    key = _synth_key(text, target + ("" if place else "-map"), freq)
    prev = build_root() / design / step_name / "metrics.json"
    if reuse and prev.is_file():
        try:
            old = json.loads(prev.read_text())
        except ValueError:
            old = {}
        if old.get("status") == "ok" and old.get("key") == key:
            return dict(old, reused=True), prev.parent
    with Step(design, step_name) as step:
        v = step.path("top.v")
        v.write_text(text)
        m = synthesize(v, top, target, step, freq_mhz=freq, place=place)
        m.update(rows=cfg.rows, cols=cfg.cols, dataflow=cfg.dataflow, unit=unit,
                 pe_multiplier=cfg.pe_multiplier, key=key)
    return dict(m), step.dir


def _synth(args):
    cfg = _cfg(args, pe_multiplier=args.multiplier)
    if not 1 <= args.freq <= 1000:
        raise UsageError(f"--freq: must be 1..1000 MHz, not {args.freq}")
    say(f"synth npu {args.unit} {cfg.rows}x{cfg.cols} ({cfg.dataflow}, {cfg.pe_multiplier} "
        f"multipliers) for {args.target}: this takes minutes")
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=1) as pool:
        job = pool.submit(synth_npu, cfg, args.target, args.freq, unit=args.unit)
        m, d = wait_with_heartbeat(job, build_root().joinpath(
            *synth_step_name(cfg, args.target, args.unit)), f"synth npu {args.unit}")
    m["step_dir"] = str(d)
    if args.json:
        emit_json(m)
    else:
        keys = (("unit", "cells", "ffs", "memory_bits", "transistors_est")
                if args.target == "generic"
                else ("unit", "luts", "ffs", "dsps", "brams", "fmax_mhz"))
        print("  ".join(f"{k}={m.get(k)}" for k in keys))
    return 0


# ---------------------------------------------------------------- bench --------------------------

def ideal_cycles(m, n, k, r, c):
    return math.ceil(m * n * k / (r * c))


def scalesim_cycles(m, n, k, r, c, dataflow):
    """SCALE-Sim's analytic cycles (reference/npu.md): folds x per-fold, minus one."""
    if dataflow == "ws":
        folds, per = math.ceil(k / r) * math.ceil(n / c), 2 * r + c + m - 2
    else:
        folds, per = math.ceil(m / r) * math.ceil(n / c), r + c + k - 2
    return folds * per - 1


def _bench_configure(p):
    p.add_argument("--sizes", default=",".join("x".join(map(str, s)) for s in BENCH_SIZES),
                   help="GEMMs MxNxK, comma separated (default: %(default)s)")
    p.add_argument("--arrays", default=",".join(f"{r}x{c}" for r, c in BENCH_ARRAYS),
                   help="arrays RxC, comma separated (default: %(default)s)")
    p.add_argument("--dataflows", default="ws,os", help="ws, os or both (default: %(default)s)")
    p.add_argument("--sims", default=None,
                   help="simulators for the speed column (default: all installed; the cycle "
                        "runs use the first)")
    p.add_argument("--sp-kib", type=int_range(1, 4096), default=64, help="scratchpad KiB")
    p.add_argument("--seed", type=int, default=1)
    add_json_arg(p)


def _parse_list(text, option, n):
    out = []
    for item in text.split(","):
        try:
            vals = tuple(int(x) for x in item.lower().split("x"))
        except ValueError:
            raise UsageError(f"{option}: bad item {item!r}") from None
        if len(vals) != n or min(vals) < 1:
            raise UsageError(f"{option}: bad item {item!r}")
        out.append(vals)
    return out


def bench(sizes, arrays, dataflows, sims, sp_kib=64, seed=1, log=say):
    from ..hdl.npu.config import NPUConfig
    from ..sim.npu.harness import Gemm, check, run_gemms
    rng = np.random.default_rng(seed)
    rows = []
    jobs = len(arrays) * len(sims)
    with progress("bench npu", total=jobs) as advance:
        for (r, c) in arrays:
            cfg = NPUConfig(rows=r, cols=c, dataflow="both", sp_kib=sp_kib)
            for si, sim in enumerate(sims):
                # cycle figures from the first simulator; the others only run the smallest GEMM
                todo = [(s, df) for s in sizes for df in dataflows] if si == 0 else \
                    [(min(sizes, key=lambda s: s[0] * s[1] * s[2]), dataflows[0])]
                gemms = []
                for (m, n, k), df in todo:
                    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
                    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
                    gemms.append(Gemm(a, b, dataflow=df))
                log(f"bench npu: {r}x{c} on {sim}: {len(gemms)} GEMMs")
                res = run_gemms(cfg, gemms, sim=sim, seed=seed)
                for ((m, n, k), df), g in zip(todo, res):
                    met = g.metrics
                    row = {"m": m, "n": n, "k": k, "rows": r, "cols": c, "dataflow": df,
                           "sim": sim, "cycles": met["cycles"],
                           "compute_cycles": met["compute_cycles"],
                           "ideal_cycles": ideal_cycles(m, n, k, r, c),
                           "scalesim_cycles": scalesim_cycles(m, n, k, r, c, df),
                           "utilization": met["utilization"],
                           "compute_utilization": met["compute_utilization"],
                           "sim_cycles_per_s": met["sim_cycles_per_s"],
                           "correct": not check(g), "counters": met["counters"]}
                    row["scalesim_utilization"] = m * n * k / (r * c * row["scalesim_cycles"])
                    rows.append(row)
                advance()
    return rows


def _bench(args):
    from ..sim import runner
    sizes = _parse_list(args.sizes, "--sizes", 3)
    arrays = _parse_list(args.arrays, "--arrays", 2)
    dfs = [d.strip() for d in args.dataflows.split(",")]
    for d in dfs:
        if d not in ("ws", "os"):
            raise UsageError(f"--dataflows: unknown dataflow {d!r} (ws, os)")
    sims = [s.strip() for s in args.sims.split(",")] if args.sims else runner.available()
    for s in sims:
        runner.resolve(s)
    if not sims:
        raise UsageError("--sims: no simulator installed")
    t0 = time.monotonic()
    rows = bench(sizes, arrays, dfs, sims, sp_kib=args.sp_kib, seed=args.seed)
    out = {"rows": rows, "seconds": round(time.monotonic() - t0, 1), "sp_kib": args.sp_kib}
    write_json(build_root() / "npu_bench" / "bench.json", out)
    if args.json:
        emit_json(out)
    else:
        hdr = (f"{'GEMM MxNxK':>15} {'array':>6} {'df':>3} {'sim':>9} {'RTL cyc':>9} "
               f"{'ideal':>8} {'SCALE-Sim':>9} {'util':>6} {'comp.util':>9} {'cyc/s':>8} ok")
        print(hdr)
        for r in rows:
            print(f"{r['m']}x{r['n']}x{r['k']:>5} {r['rows']}x{r['cols']:<4} {r['dataflow']:>3} "
                  f"{r['sim']:>9} {r['cycles']:>9} {r['ideal_cycles']:>8} "
                  f"{r['scalesim_cycles']:>9} {r['utilization']:>6.3f} "
                  f"{r['compute_utilization']:>9.3f} {r['sim_cycles_per_s']:>8.0f} "
                  f"{'yes' if r['correct'] else 'NO'}")
        say(f"wrote {build_root() / 'npu_bench' / 'bench.json'}")
    if not all(r["correct"] for r in rows):
        raise CheckFailed("a benchmark GEMM differs from numpy")
    return 0


# ---------------------------------------------------------------- run stage ----------------------

# (target, unit, place and route) of the run stage: generic gates and the ECP5 mapping of the
# whole npu_top (a few minutes each, one after the other), and ECP5 place and route of the 8x8
# array unit for the Fmax (in the background from the start: it takes longest).
STAGE_SYNTH = (("generic", "top", False), ("ecp5", "top", False), ("ecp5", "array", True))


def _stage(ctx):
    """``diestack run`` NPU stage: 8x8 Verilog, a GEMM on Verilator vs numpy, generic synthesis
    and ECP5 mapping of npu_top, and ECP5 place and route of the 8x8 array unit (the Fmax
    target of issue 2; placing and routing the whole top took 51 minutes here). The
    place and route starts first, in a thread (the tools are subprocesses), and overlaps the
    rest; a run whose Verilog, target, clock and flow script are unchanged is reused from
    build/ (reported as reused)."""
    from concurrent.futures import ThreadPoolExecutor
    from ..hdl.common.verilog import to_verilog
    from ..hdl.npu.config import NPUConfig
    from ..hdl.npu.top import NPUTop
    from ..sim.npu.harness import Gemm, check, run_gemms
    cfg = NPUConfig(rows=8, cols=8, dataflow="both")
    seed = ctx.seed if ctx.seed is not None else 1
    rng = np.random.default_rng(seed)
    m, n, k = 64, 48, 80
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    synth, times = {}, {}
    t_stage = time.monotonic()

    def run_synth(target, unit, pnr):
        label = f"{target}_{unit}" + ("_pnr" if pnr else "")
        t0 = time.monotonic()
        try:
            sm, d = synth_npu(cfg, target, unit=unit, reuse=True, place=pnr or target != "ecp5")
            out = {k2: sm.get(k2) for k2 in ("cells", "ffs", "memory_bits", "transistors_est",
                                             "luts", "lut4", "carries", "dsps", "brams",
                                             "fmax_mhz") if k2 in sm}
            out.update(unit=unit, reused=bool(sm.get("reused")), step_dir=str(d))
        except Exception as e:   # a tool failure is a failed check of this stage
            out = {"unit": unit, "error": str(e).splitlines()[0] if str(e) else repr(e)}
        times[f"synth_{label}_s"] = round(time.monotonic() - t0, 1)
        return label, out

    with progress("npu: gen, GEMM, synth generic + ECP5", total=2 + len(STAGE_SYNTH)) as advance, \
            ThreadPoolExecutor(max_workers=2) as pool:
        placed = [pool.submit(run_synth, t, u, pnr) for t, u, pnr in STAGE_SYNTH if pnr]
        say("      npu: ECP5 place and route of the 8x8 array unit started (background)")
        t0 = time.monotonic()
        verilog = to_verilog(NPUTop(cfg), "npu_top")
        (ctx.out / "npu").mkdir(parents=True, exist_ok=True)
        _atomic_write(ctx.out / "npu" / "npu_top.v", verilog)
        times["gen_s"] = round(time.monotonic() - t0, 1)
        advance()
        say(f"      npu: GEMM {m}x{n}x{k} (requant 3,10 + ReLU, WS) on the 8x8 design, seed {seed}")
        t0 = time.monotonic()
        res = run_gemms(cfg, [Gemm(a, b, dataflow="ws", requant=(3, 10), relu=True)],
                        sim=ctx.sim or "verilator", seed=seed)[0]
        times["gemm_s"] = round(time.monotonic() - t0, 1)
        problems = check(res)
        advance()
        for t, u, pnr in STAGE_SYNTH:
            if not pnr:
                say(f"      npu: {'ECP5 mapping (yosys)' if t == 'ecp5' else 'generic synthesis'}"
                    f" of npu_{u}")
                job = pool.submit(run_synth, t, u, pnr)
                synth.update([wait_with_heartbeat(job, build_root().joinpath(
                    *synth_step_name(cfg, t, u, place=t != "ecp5")), f"npu: {t} of npu_{u}")])
                advance()
        ecp5_dir = build_root().joinpath(*synth_step_name(cfg, "ecp5", "array"))
        for f in placed:   # a heartbeat with the tool's phase: P&R takes minutes
            synth.update([wait_with_heartbeat(f, ecp5_dir, "npu: ECP5 P&R of the 8x8 array unit")])
            advance()
    times["stage_s"] = round(time.monotonic() - t_stage, 1)
    metrics = {"gemm": f"{m}x{n}x{k}", "match": not problems, "cycles": res.metrics["cycles"],
               "compute_cycles": res.metrics["compute_cycles"], "macs": res.metrics["macs"],
               "utilization": round(res.metrics["utilization"], 4), "synth": synth,
               "times": times}
    md = [f"8x8 NPU (WS+OS), GEMM {m}x{n}x{k} with requant on {res.metrics['sim']}: "
          f"**{'matches numpy' if not problems else 'MISMATCH: ' + '; '.join(problems)}**.", "",
          "| metric | value |", "|---|---|"]
    for key in ("cycles", "compute_cycles", "macs", "utilization"):
        md.append(f"| {key} | {metrics[key]} |")
    what = {"generic_top": "generic gates, npu_top",
            "ecp5_top": "ECP5 mapping (yosys, not placed), npu_top",
            "ecp5_array_pnr": "ECP5 place and route (nextpnr, 85k), 8x8 array unit"}
    for label, sv in synth.items():
        shown = ", ".join(f"{k2}={v}" for k2, v in sv.items() if k2 not in ("unit", "step_dir"))
        md.append(f"| {what.get(label, label)} | {shown} |")
    md.append(f"| stage time | {times['stage_s']} s |")
    ok = not problems and all("error" not in sv for sv in synth.values())
    return {"title": "NPU", "passed": ok, "metrics": metrics, "markdown": "\n".join(md)}


def register(cli):
    cli.verb("gen", "npu", "NPU Verilog (npu_top.v) and interface JSON", _gen_configure, _gen)
    cli.command("npu", "gemm", "run a GEMM on the NPU RTL in simulation and check it",
                _gemm_configure, _gemm)
    cli.verb("synth", "npu", "synthesize the NPU (generic gates or ECP5)", _synth_configure,
             _synth)
    cli.verb("bench", "npu", "NPU cycles vs ideal and SCALE-Sim, simulator speed",
             _bench_configure, _bench)
    cli.stage("npu", "NPU: generate 8x8, GEMM on Verilator vs numpy, synthesize npu_top (generic "
              "gates, ECP5 mapping) + ECP5 place and route of the 8x8 array unit", _stage)
