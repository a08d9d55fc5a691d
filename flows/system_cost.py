"""CLI for the cost model and the real-system validation.

* ``diestack system cost --node NM --logic-area MM2 --chiplets N --package P [--d2d-overhead 0.10]
  [--alpha A] [--volume V] [--family-volume F] [--json]``: Chiplet Actuary's model with its
  default parameters (packaging/data); prints a table, or one JSON object with ``die_yield``,
  ``dies_per_wafer``, ``kgd_cost_per_die``, ``package_cost``, ``total_recurring_cost``, the
  five-term ``breakdown`` and the NRE. A package over its size limit is reported
  (``over_limit``, a note on stderr) but is not an error.
* ``diestack system validate [--json]``: model vs published figures for H100, H200, B200, MI300X
  and M1 Ultra. Exit 1 when a *gated* row misses the 2% target: memory bandwidth or dense
  throughput whose published value is not [recall] and whose config declares no
  ``known_deviation`` (see packaging/validate.py). [recall] rows are shown, never gating.
* ``diestack bench cost [--n N] [--repeat R] [--out FILE]``: configurations per second of the
  vectorised cost + NRE + GEMM-performance evaluation on one core; a table and a JSON file.
"""

import math
import os
import time
from pathlib import Path

from ..hdl.common.params import ConfigError

__all__ = ["register"]

DEFAULT_VOLUME = 1_000_000   # units over which NRE is amortised (diestack default, [assumption])


def _positive(lo_inclusive=None):
    """argparse type: a finite number > 0 (or >= ``lo_inclusive``), message naming the bound."""
    import argparse
    import math

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if lo_inclusive is None and v <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
        if lo_inclusive is not None and v < lo_inclusive:
            raise argparse.ArgumentTypeError(f"must be at least {lo_inclusive:g}, not {text}")
        return v
    parse.__name__ = "number"
    return parse


def register(cli):
    from .cli import add_json_arg, float_range, int_range

    def configure_cost(p):
        from ..packaging.tech import load_tech
        tech = load_tech()
        p.add_argument("--node", required=True, metavar="NM",
                       help=f"process node in nm ({', '.join(str(n) for n in tech.node_nms)})")
        p.add_argument("--logic-area", required=True, type=_positive(), metavar="MM2",
                       help="total logic area (mm2), split evenly over the chiplets")
        p.add_argument("--chiplets", required=True, type=int_range(1, 4096), metavar="N",
                       help="number of identical chiplets (1 = monolithic, no D2D area)")
        p.add_argument("--package", required=True, choices=tuple(tech.packages),
                       help="package technology")
        p.add_argument("--d2d-overhead", type=float_range(0, 10), default=0.10, metavar="F",
                       help="D2D PHY area as a fraction of each chiplet's logic (default 0.10)")
        p.add_argument("--alpha", type=_positive(), default=None, metavar="A",
                       help="negative-binomial clustering alpha (default: the node's, 10 as in CA)")
        p.add_argument("--volume", type=_positive(1), default=DEFAULT_VOLUME, metavar="V",
                       help=f"units of this system, for NRE amortisation (default {DEFAULT_VOLUME:.0e})")
        p.add_argument("--family-volume", type=_positive(1), default=None, metavar="F",
                       help="units of all systems reusing this chiplet (default: --volume)")
        add_json_arg(p)

    cli.command("system", "cost", "recurring cost, yield and NRE of a chiplet system (Chiplet Actuary model)",
                configure_cost, cmd_cost)

    def configure_validate(p):
        add_json_arg(p)

    cli.command("system", "validate", "model vs published figures for H100, H200, B200, MI300X, M1 Ultra",
                configure_validate, cmd_validate)

    def configure_bench(p):
        p.add_argument("--n", type=int_range(1000, 50_000_000), default=200_000,
                       help="configurations per evaluation (default 200000)")
        p.add_argument("--repeat", type=int_range(1, 100), default=3, help="timed repeats (best is kept)")
        p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=1, help="random seed")
        p.add_argument("--out", default=None, help="JSON output (default build/bench/cost.json)")
        add_json_arg(p)

    cli.stage("validate", "system model vs published H100/H200/B200/MI300X/M1 Ultra figures",
              stage_validate)

    cli.verb("bench", "cost", "configurations/s of the vectorised cost + performance evaluation (one core)",
             configure_bench, cmd_bench)


# ---- system cost ------------------------------------------------------------------------------

def _option_error(opt, e):
    from .cli import UsageError
    return UsageError(f"{opt}: {e.message if isinstance(e, ConfigError) else e}")


_FIELD_TO_OPTION = {"node": "--node", "logic_area_mm2": "--logic-area", "n_chiplets": "--chiplets",
                    "package": "--package", "d2d_overhead": "--d2d-overhead", "alpha": "--alpha",
                    "volume": "--volume", "family_volume": "--family-volume",
                    "area_mm2": "--logic-area"}


def cost_report(node, logic_area, chiplets, package, d2d_overhead=0.10, alpha=None,
                volume=DEFAULT_VOLUME, family_volume=None):
    """The ``system cost`` result as a plain dict (floats)."""
    from ..packaging import cost
    from ..packaging.tech import load_tech
    tech = load_tech()
    n = tech.node(node)
    pk = tech.package(package)
    r = cost.total_cost(n.nm, logic_area, chiplets, package, volume=volume,
                        family_volume=family_volume, d2d_overhead=d2d_overhead, alpha=alpha, tech=tech)
    f = {k: float(v) for k, v in r.items()}
    if not all(map(math.isfinite, f.values())):
        raise ConfigError("logic_area_mm2", f"{package} package of {f['limit_area_mm2']:.0f} mm2 "
                          "does not fit on a wafer (fewer than one interposer per wafer)")
    return {
        "inputs": {"node_nm": n.nm, "logic_area_mm2": logic_area, "chiplets": chiplets,
                   "package": package, "assembly": pk.assembly, "d2d_overhead": d2d_overhead,
                   "alpha": float(n.alpha if alpha is None else alpha), "d0_per_cm2": n.d0_per_cm2,
                   "wafer_cost_usd": n.wafer_cost_usd, "volume": volume,
                   "family_volume": volume if family_volume is None else family_volume},
        "die_area_mm2": f["die_area_mm2"],
        "die_yield": f["die_yield"],
        "dies_per_wafer": f["dies_per_wafer"],
        "raw_die_cost": f["raw_die_cost"],
        "kgd_cost_per_die": f["kgd_cost_per_die"],
        "chips_cost": f["chips_cost"],
        "package_cost": f["package_cost"],
        "package_area_mm2": f["package_area_mm2"],
        "interposer_area_mm2": f["interposer_area_mm2"],
        "interposer_yield": f["interposer_yield"],
        "assembly_yield": f["assembly_yield"],
        "over_limit": bool(r["over_limit"]),
        "limit_area_mm2": f["limit_area_mm2"],
        "max_area_mm2": pk.max_area_mm2,
        "breakdown": {k: f[k] for k in cost.BREAKDOWN},
        "total_recurring_cost": f["total_recurring_cost"],
        "nre": {"module": f["module_nre"], "d2d": f["d2d_nre"], "chip": f["chip_nre"],
                "package": f["package_nre"], "total": f["total_nre"], "per_unit": f["nre_per_unit"]},
        "total_cost_per_unit": f["total_cost_per_unit"],
    }


def cmd_cost(args):
    from .cli import emit_json, say
    try:
        rep = cost_report(args.node, args.logic_area, args.chiplets, args.package, args.d2d_overhead,
                          args.alpha, args.volume, args.family_volume)
    except ConfigError as e:
        raise _option_error(_FIELD_TO_OPTION.get(e.field, e.field), e) from None
    if rep["over_limit"]:
        say(f"note: {args.package} area {rep['limit_area_mm2']:.0f} mm2 exceeds its limit "
            f"{rep['max_area_mm2']:.0f} mm2 (packages.toml max_area_mm2)")
    if args.json:
        emit_json(rep)
        return 0
    i = rep["inputs"]
    lines = [f"{i['chiplets']} x {rep['die_area_mm2']:.1f} mm2 at {i['node_nm']} nm "
             f"(D0 {i['d0_per_cm2']:g}/cm2, alpha {i['alpha']:g}), {i['package']} ({i['assembly']})",
             ""]
    rows = [("die yield", f"{rep['die_yield']:.4f}"),
            ("dies per wafer", f"{rep['dies_per_wafer']:.2f}"),
            ("raw die cost", f"${rep['raw_die_cost']:,.2f}"),
            ("KGD cost per die", f"${rep['kgd_cost_per_die']:,.2f}"),
            ("package area", f"{rep['package_area_mm2']:,.0f} mm2"
             + (f" (interposer/bridges {rep['interposer_area_mm2']:,.0f} mm2, yield {rep['interposer_yield']:.4f})"
                if rep["interposer_area_mm2"] else "")),
            ("", ""),
            ("raw chips", f"${rep['breakdown']['raw_chips']:,.2f}"),
            ("defect chips", f"${rep['breakdown']['defect_chips']:,.2f}"),
            ("raw package", f"${rep['breakdown']['raw_package']:,.2f}"),
            ("defect package", f"${rep['breakdown']['defect_package']:,.2f}"),
            ("wasted KGD", f"${rep['breakdown']['wasted_kgd']:,.2f}"),
            ("total recurring", f"${rep['total_recurring_cost']:,.2f}"),
            ("  of which package", f"${rep['package_cost']:,.2f} (raw + defect package + wasted KGD)"),
            ("", ""),
            ("NRE total", f"${rep['nre']['total']:,.0f} (module {rep['nre']['module']:,.0f}, "
                          f"D2D {rep['nre']['d2d']:,.0f}, chip {rep['nre']['chip']:,.0f}, "
                          f"package {rep['nre']['package']:,.0f})"),
            ("NRE per unit", f"${rep['nre']['per_unit']:,.2f} (volume {i['volume']:,.0f}, "
                             f"family {i['family_volume']:,.0f})"),
            ("total per unit", f"${rep['total_cost_per_unit']:,.2f}")]
    w = max(len(k) for k, _ in rows)
    lines += [f"{k:<{w}}  {v}" if k else "" for k, v in rows]
    print("\n".join(lines), flush=True)
    return 0


# ---- system validate ------------------------------------------------------------------------

def cmd_validate(args):
    from ..packaging.validate import summary, validate
    from .cli import CheckFailed, emit_json
    rows = validate()
    summ = summary(rows)
    if args.json:
        emit_json({"rows": [r.as_dict() for r in rows], "summary": summ})
    else:
        print(format_table(rows, summ), flush=True)
    if not summ["passed"]:
        raise CheckFailed("validation rows missed the 2% target: " + "; ".join(summ["misses"]))
    return 0


def stage_validate(ctx):
    """``diestack run`` section: the validation table, written to ``<out>/system_validate.json``."""
    from ..packaging.validate import summary, validate
    from .step import write_json
    rows = validate()
    summ = summary(rows)
    write_json(ctx.out / "system_validate.json", {"rows": [r.as_dict() for r in rows], "summary": summ})
    golden = cost_report(5, 800.0, 4, "organic")
    md = ["```", format_table(rows, summ), "```", "",
          f"Cost model check (system.md golden, 5 nm, 800 mm2 in 4 chiplets, organic): "
          f"total recurring ${golden['total_recurring_cost']:.2f} (golden $401.42)."]
    return {"title": "System model validation and cost", "passed": summ["passed"]
            and abs(golden["total_recurring_cost"] / 401.42 - 1) < 1e-3,
            "metrics": {"within_target": summ["within_target"], "target_rows": summ["target_rows"],
                        "gated_misses": len(summ["misses"]),
                        "known_deviations": len(summ["known_deviations"]),
                        "golden_total_recurring_usd": golden["total_recurring_cost"]},
            "markdown": "\n".join(md)}


def format_table(rows, summ):
    head = ("system", "metric", "model", "published", "unit", "error", "source", "status")
    out = []
    for r in rows:
        pub = "-" if r.published is None else f"{r.published:,.4g}"
        err = "-" if r.error_pct is None else f"{r.error_pct:+.2f}%"
        src = f"[{r.tag}]" + (f" in:{r.inputs_tag}" if r.inputs_tag != r.tag else "")
        out.append((r.system, r.metric, f"{r.model:,.4g}", pub, r.unit, err, src, r.status))
    widths = [max(len(h), *(len(x[i]) for x in out)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*x) for x in out]
    lines.append("")
    lines.append(f"target |error| <= {summ['target_pct']:g}% on memory bandwidth and dense throughput: "
                 f"{summ['within_target']}/{summ['target_rows']} rows within; "
                 f"{summ['gated']} gated (published value not [recall])")
    for k in summ["known_deviations"]:
        lines.append(f"MISS* known deviation: {k}")
    for m in summ["misses"]:
        lines.append(f"MISS: {m}")
    lines.append("[recall] = value from memory in the reference (shown, never gating); "
                 "in: = tag of the model's inputs")
    lines.append("model inputs:")
    lines += [f"  {r.system} {r.metric}: {r.note}" for r in rows
              if r.metric in ("memory_bw", "dense_throughput", "d2d_bw", "interposer_area")]
    return "\n".join(lines)


# ---- bench cost -------------------------------------------------------------------------------

def bench_cost(n=200_000, repeat=3, seed=1):
    """Time the vectorised cost + NRE (+ GEMM performance when packaging.perf is available)."""
    import numpy as np
    from ..packaging import cost
    from ..packaging.tech import load_tech
    tech = load_tech()
    rng = np.random.default_rng(seed)
    node = rng.choice(tech.node_nms, n)
    area = rng.uniform(50.0, 1600.0, n)
    chips = rng.integers(1, 9, n)
    pkg, names = cost.package_codes(rng.integers(0, len(tech.packages), n))
    stacks = rng.integers(0, 9, n)
    hbm = tech.hbm("hbm3")
    try:
        from ..packaging import perf
        gemm_w = perf.Gemm("ffn", m=2048, n=16384, k=4096)
    except ImportError:                  # pragma: no cover - SYS-ARCH's module absent
        perf = None

    def once():
        r = cost.recurring_cost(node, area, chips, pkg, tech=tech, extra_dies=stacks,
                                extra_die_area_mm2=hbm.area_mm2, extra_die_cost=hbm.cost_usd)
        nre = cost.nre_cost(node, area, chips, pkg, tech=tech)
        out = r["total_recurring_cost"] + nre["total_nre"] / DEFAULT_VOLUME
        if perf is not None:
            # [assumption, bench only] one 128 x 128 array per 25 mm2 of a chiplet's logic
            arrays = np.maximum(np.floor(area / chips / 25.0), 1.0)
            mc = perf.Machine(p=chips, arrays=arrays, rows=128, cols=128, clock_hz=1e9,
                              hbm_bw=np.maximum(stacks, 1) * hbm.gbyte_s_per_stack * 1e9 / chips,
                              d2d_bw=np.full(n, 500e9), mac_pj=0.2, sram_pj_bit=0.1,
                              hbm_pj_bit=hbm.pj_per_bit, d2d_pj_bit=0.3)
            g = perf.gemm(mc, gemm_w)
            out = out + 0.0 * np.asarray(g["time_s"])
        return out

    once()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t)
    return {"configurations": n, "seconds": best, "configs_per_s": n / best,
            "includes_perf": perf is not None, "repeat": repeat, "seed": seed,
            "target_configs_per_s": 10_000, "cpu_count_used": 1,
            "evaluation": "recurring cost (5 terms, with HBM stacks as bought KGD) + NRE"
                          + (" + GEMM time/bound (packaging.perf)" if perf is not None else "")}


def cmd_bench(args):
    from .cli import CheckFailed, emit_json, say
    from .step import build_root, write_json
    # one core: numpy's elementwise kernels are single-threaded; pin the process to one CPU
    # while timing (restored afterwards, so an in-process caller keeps its affinity)
    try:
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(saved)})
    except (AttributeError, OSError):
        saved = None
    say(f"bench cost: {args.n:,} configurations x {args.repeat} repeats (seed {args.seed})")
    try:
        res = bench_cost(args.n, args.repeat, args.seed)
    finally:
        if saved is not None:
            os.sched_setaffinity(0, saved)
    out = Path(args.out) if args.out else build_root() / "bench" / "cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, res)
    if args.json:
        emit_json({**res, "json": str(out)})
    else:
        rows = [("configurations", f"{res['configurations']:,}"),
                ("best time", f"{res['seconds'] * 1e3:.1f} ms"),
                ("configurations/s (1 core)", f"{res['configs_per_s']:,.0f}"),
                ("target", f">= {res['target_configs_per_s']:,}"),
                ("evaluation", res["evaluation"]),
                ("json", str(out))]
        w = max(len(k) for k, _ in rows)
        print("\n".join(f"{k:<{w}}  {v}" for k, v in rows), flush=True)
    if res["configs_per_s"] < res["target_configs_per_s"]:
        raise CheckFailed(f"{res['configs_per_s']:.0f} configurations/s < 10,000")
    return 0
