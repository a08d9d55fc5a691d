"""``diestack system report|sweep``, ``diestack bench sweep`` and the ``system`` stage of ``diestack run``.

* ``diestack system report [FILE.toml] [--json] [--out DIR]`` -- every model (placement, cost,
  topology, power, thermal, performance) on a system TOML (default: the embedded reference
  system, packaging/designs/default.toml); writes ``build/system/<name>/`` report.html,
  metrics.json, floorplan.png, roofline.png and thermal.png.
* ``diestack system sweep SPEC.toml [--executor local|dask] [--scheduler ADDRESS] [--workers N]
  [--out FILE] [--json]`` -- a design-space sweep (packaging/sweep.py) on Dask distributed (a
  LocalCluster by default, the scheduler at ADDRESS if given; ``local`` runs in-process), with a
  progress bar; writes the results CSV (``.parquet`` if asked for and pyarrow is installed) and
  a Pareto plot of cost against throughput next to it.
* ``diestack bench sweep [--configs N] [--workers 1,2,4] [--json]`` -- evaluation throughput in
  process and on LocalClusters of 1, 2 and 4 workers, then one sweep of N (default 1M)
  configurations through a LocalCluster; prints a table and writes build/system/bench_sweep.json.
  Before each cluster size a CPU probe (n busy processes) measures how many cores the host
  actually grants n processes at that moment, so a flat scaling curve on a loaded host can be
  told apart from overhead in the sweep.
"""

import json
import os
import sys
import time
from pathlib import Path

from ..hdl.common.params import ConfigError
from .step import build_root, write_json

__all__ = ["register"]


# ---- report -------------------------------------------------------------------------------------

def _configure_report(p):
    from .cli import add_json_arg
    p.add_argument("file", nargs="?", default=None, metavar="FILE.toml",
                   help="system description (default: the embedded 4-NPU + 4-HBM3 + IO reference)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default: build/system/<name>)")
    add_json_arg(p)


def _report(args):
    from ..packaging.report import key_metrics, write_report
    from ..packaging.system import load_system
    from .cli import emit_json, say
    if args.file is not None and not Path(args.file).is_file():
        raise ConfigError("FILE", f"no such file: {args.file}")
    system = load_system(args.file)
    out = Path(args.out) if args.out else build_root() / "system" / system.name
    say(f"system {system.name}: {len(system.dies)} dies, package {system.package}; "
        f"writing {out}")
    m = write_report(system, out)
    if args.json:
        emit_json(m)
    else:
        for k, v in key_metrics(m).items():
            say(f"  {k:32s} {v:.4g}" if isinstance(v, float) else f"  {k:32s} {v}")
        say(f"report: {out / 'report.html'}")
    return 0


# ---- sweep --------------------------------------------------------------------------------------

def _configure_sweep(p):
    from .cli import add_json_arg, int_range
    p.add_argument("spec", metavar="SPEC.toml", help="sweep specification (see packaging/sweep.py)")
    p.add_argument("--executor", choices=("local", "dask"), default="dask",
                   help="dask (default: a LocalCluster, or --scheduler) or local (in-process)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="an existing Dask scheduler, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--workers", type=int_range(1, 256), default=None,
                   help="LocalCluster workers (default: CPU count)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="results file, .csv or .parquet (default: build/system/sweep_<name>.csv)")
    add_json_arg(p)


def _sweep(args):
    from ..packaging import sweep as sw
    from .cli import UsageError, emit_json, progress, say
    if not Path(args.spec).is_file():
        raise ConfigError("SPEC", f"no such file: {args.spec}")
    if args.scheduler and args.executor != "dask":
        raise UsageError("--scheduler needs --executor dask")
    spec = sw.load_spec(args.spec)
    out = Path(args.out) if args.out else build_root() / "system" / f"sweep_{spec.name}.csv"
    parquet = out.suffix == ".parquet"
    if parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("--out: Parquet output needs pyarrow, which is not installed; "
                             "use a .csv file") from None
    elif out.suffix != ".csv":
        raise UsageError(f"--out: must end in .csv or .parquet, not {out.name!r}")
    csv_path = out.with_suffix(".csv") if parquet else out
    if parquet:
        csv_path = out.with_name(f".{out.stem}.tmp.csv")
    plot = out.with_name(out.stem + "_pareto.png")
    workers = args.workers or os.cpu_count() or 1
    say(f"sweep {spec.name}: {spec.size:,} configurations in chunks of {spec.chunk:,} "
        f"({args.executor}{', ' + args.scheduler if args.scheduler else f', {workers} workers' if args.executor == 'dask' else ''})")
    with progress(f"sweep {spec.name}", total=spec.size) as advance:
        try:
            res = sw.run_sweep(spec, executor=args.executor, scheduler=args.scheduler,
                               workers=workers, out=csv_path, plot=plot, progress=advance)
        except OSError as e:
            if args.scheduler:
                raise UsageError(f"--scheduler: cannot reach {args.scheduler}: {e}") from None
            raise
    if parquet:
        _csv_to_parquet(csv_path, out)
    summary = {"name": spec.name, "configs": res.n_configs, "feasible": res.n_feasible,
               "seconds": res.seconds, "configs_per_s": res.configs_per_s,
               "eval_cpu_seconds": res.eval_seconds,
               "configs_per_s_per_core": res.n_configs / res.eval_seconds if res.eval_seconds else None,
               "executor": res.executor, "workers": res.workers, "out": str(out), "plot": res.plot,
               "throughput_unit": spec.throughput_unit, "pareto": res.front}
    if args.json:
        emit_json(summary)
    else:
        say(f"{res.n_configs:,} configurations ({res.n_feasible:,} feasible) in {res.seconds:.2f} s: "
            f"{res.configs_per_s:,.0f} configurations/s")
        say(f"Pareto front ({len(res.front)} points): cost USD -> {spec.throughput_unit}")
        for r in res.front[:15]:
            say(f"  ${r['cost_usd']:>10,.0f}  {r['throughput']:>12,.1f}  n={r['chiplets']} "
                f"{r['node']}nm {r['package']} {r['hbm_stacks']}x{r['hbm']} {r['phy']} "
                f"logic={r['logic_area_mm2']:.0f}mm2 ({r['bound']}-bound)")
        say(f"results: {out}  plot: {plot}")
    return 0


def _csv_to_parquet(csv_path, out):   # pragma: no cover - pyarrow not installed here
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq
    tmp = out.with_name(f".{out.name}.tmp")
    pq.write_table(pcsv.read_csv(csv_path), tmp)
    os.replace(tmp, out)
    csv_path.unlink()


# ---- bench --------------------------------------------------------------------------------------

BENCH_SPEC = {
    "name": "bench",
    "space": {"chiplets": [1, 2, 4, 8], "node": [3, 5, 7, 10],
              "package": ["organic", "fanout-chip-last", "interposer", "bridge"],
              "hbm_stacks": [2, 4, 6, 8, 12], "phy": ["ucie-a", "ucie-s", "bow-interposer", "aib-gen2"],
              "logic_area_mm2": {"start": 100.0, "stop": 1600.0, "num": 200}},
    "run": {"chunk": 62500},
}


def _configure_bench(p):
    from .cli import add_json_arg, int_range
    p.add_argument("--configs", type=int_range(1000, 100_000_000), default=1_000_000,
                   help="configurations of the large sweep (default 1,000,000)")
    p.add_argument("--workers", default="1,2,4", help="LocalCluster sizes to measure (default 1,2,4)")
    p.add_argument("--scaling-configs", type=int_range(1000, 100_000_000), default=1_000_000,
                   help="configurations per worker-scaling run (default 1,000,000)")
    add_json_arg(p)


def _bench_spec(n):
    """The bench space with its logic-area axis sized so the product is at least ``n``."""
    from ..packaging import sweep as sw
    d = json.loads(json.dumps(BENCH_SPEC))
    other = 4 * 4 * 4 * 5 * 4
    d["space"]["logic_area_mm2"]["num"] = max(1, -(-n // other))
    return sw.spec_from_dict(d)


def _spin(_):
    """A fixed pure-Python CPU load; returns (CPU seconds, wall seconds)."""
    c, w = time.process_time(), time.perf_counter()
    x = 0
    for i in range(4_000_000):
        x += i
    return time.process_time() - c, time.perf_counter() - w


def cpu_share(n):
    """Cores' worth of CPU that ``n`` busy processes actually get on this host right now."""
    from multiprocessing import get_context
    w = time.perf_counter()
    with get_context("fork").Pool(n) as pool:
        res = pool.map(_spin, range(n))
    return sum(c for c, _ in res) / (time.perf_counter() - w)


def _bench(args):
    from ..packaging import sweep as sw
    from .cli import UsageError, emit_json, progress, say
    try:
        sizes = [int(x) for x in args.workers.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--workers: expected a comma-separated list of integers, not {args.workers!r}") from None
    if not sizes or any(s < 1 or s > 64 for s in sizes):
        raise UsageError("--workers: each size must be in 1..64")
    out_dir = build_root() / "system"
    load0 = list(os.getloadavg())
    rows = []
    # in-process: single core, vectorised
    spec = _bench_spec(args.scaling_configs)
    say(f"bench sweep: {spec.size:,} configurations per run; machine has {os.cpu_count()} cores, "
        f"load average {load0[0]:.1f}")
    res = sw.run_sweep(spec, executor="local", keep=False)
    rows.append({"executor": "local", "workers": 1, "configs": res.n_configs,
                 "seconds": res.seconds, "configs_per_s": res.configs_per_s,
                 "eval_cpu_seconds": res.eval_seconds,
                 "configs_per_cpu_s": res.n_configs / res.eval_seconds})
    say(f"  local          {res.n_configs:>10,} in {res.seconds:7.2f} s  {res.configs_per_s:>12,.0f}/s "
        f"({res.n_configs / res.eval_seconds:,.0f} per CPU-second of evaluation)")
    for w in sizes:
        share = cpu_share(w)
        res = sw.run_sweep(spec, executor="dask", workers=w, keep=False)
        rows.append({"executor": "dask-localcluster", "workers": w, "configs": res.n_configs,
                     "seconds": res.seconds, "configs_per_s": res.configs_per_s,
                     "eval_cpu_seconds": res.eval_seconds,
                     "configs_per_cpu_s": res.n_configs / res.eval_seconds,
                     "host_cores_available_to_n_processes": share})
        say(f"  dask {w} worker{'s' if w > 1 else ' '} {res.n_configs:>10,} in {res.seconds:7.2f} s  "
            f"{res.configs_per_s:>12,.0f}/s   (a {w}-process CPU probe got {share:.2f} cores)")
    big = _bench_spec(args.configs)
    big_out = out_dir / "bench_sweep_1m.csv"
    with progress(f"sweep {big.size:,}", total=big.size) as advance:
        res = sw.run_sweep(big, executor="dask", workers=max(sizes), out=big_out,
                           plot=out_dir / "bench_sweep_1m_pareto.png", progress=advance)
    big_row = {"configs": res.n_configs, "feasible": res.n_feasible, "workers": res.workers,
               "seconds_including_csv": res.seconds, "configs_per_s": res.configs_per_s,
               "csv": str(big_out), "pareto_points": len(res.front)}
    say(f"  large sweep: {res.n_configs:,} configurations ({res.n_feasible:,} feasible) through a "
        f"{res.workers}-worker LocalCluster in {res.seconds:.1f} s (with CSV output)")
    report = {"cores": os.cpu_count(), "load_average_1_5_15": list(os.getloadavg()),
              "load_average_at_start": load0, "scaling": rows, "large_sweep": big_row,
              "target_configs_per_s_per_core": 10000}
    write_json(out_dir / "bench_sweep.json", report)
    table = ["| executor | workers | configs | wall s | configs/s (wall) | configs per CPU-s "
             "| cores a same-size CPU probe got |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        probe = r.get("host_cores_available_to_n_processes")
        table.append(f"| {r['executor']} | {r['workers']} | {r['configs']:,} | {r['seconds']:.2f} | "
                     f"{r['configs_per_s']:,.0f} | {r['configs_per_cpu_s']:,.0f} | "
                     f"{'' if probe is None else f'{probe:.2f}'} |")
    table.append(f"| dask-localcluster, large sweep + CSV | {big_row['workers']} | "
                 f"{big_row['configs']:,} | {big_row['seconds_including_csv']:.2f} | "
                 f"{big_row['configs_per_s']:,.0f} | | |")
    print("\n".join(table), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        emit_json(report)
    return 0


# ---- diestack run stage ---------------------------------------------------------------------------

#: The run stage's check: peak chip temperature at peak power. [assumption] 105 C is a common
#: junction limit for logic dies (not from the reference files).
T_JUNCTION_MAX_C = 105.0

def _stage(ctx):
    from ..packaging.report import key_metrics, write_report
    from ..packaging.system import load_system
    system = load_system(None)
    out = Path(ctx.out) / "system"
    m = write_report(system, out)
    km = key_metrics(m)
    rel = os.path.relpath(out, ctx.out)
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in km.items())
    md = (f"Reference system `{system.name}`: {m['description']}.\n\n"
          f"| metric | value |\n|---|---|\n{rows}\n\n"
          f"Full report: [{rel}/report.html]({rel}/report.html)\n\n"
          f"![floorplan]({rel}/floorplan.png)\n\n![roofline]({rel}/roofline.png)\n\n"
          f"![thermal]({rel}/thermal.png)\n")
    ok = km["peak_temp_c"] <= T_JUNCTION_MAX_C
    md += (f"\nThermal check: peak {km['peak_temp_c']:.1f} C at peak power "
           f"{'<=' if ok else '>'} {T_JUNCTION_MAX_C:g} C junction limit.\n")
    return {"title": "System model (default package)", "passed": bool(ok),
            "metrics": km | {"pngs": [f"{rel}/{p}" for p in ("floorplan.png", "roofline.png",
                                                              "thermal.png")]},
            "markdown": md}


def register(cli):
    cli.command("system", "report", "system model report of a multi-die package "
                "(placement, cost, topology, power, thermal, performance)", _configure_report, _report)
    cli.command("system", "sweep", "design-space sweep (cost vs throughput) on Dask",
                _configure_sweep, _sweep)
    cli.verb("bench", "sweep", "sweep throughput: configurations/s for 1, 2, 4 Dask workers and a "
             "1M-configuration sweep", _configure_bench, _bench)
    cli.stage("system", "system model report (default package)", _stage)
