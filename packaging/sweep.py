"""Design-space sweep: cost and performance of many chiplet-system configurations, vectorised.

A sweep spec (TOML) lists axes; the sweep is their Cartesian product::

    name = "demo"
    [space]
    chiplets = [1, 2, 4, 8]                       # compute chiplets
    node = [5, 7]                                 # nm, from packaging/data/nodes.toml
    package = ["organic", "interposer", "bridge"] # packaging/data/packages.toml
    hbm_stacks = [2, 4, 6, 8]                     # total HBM stacks
    phy = ["ucie-a", "ucie-s"]                    # packaging/data/phys.toml
    hbm = ["hbm3"]                                # optional, packaging/data/hbm.toml
    logic_area_mm2 = {start = 200, stop = 1200, num = 11}   # optional; a list or a linspace
    [fixed]                                       # optional, defaults shown
    volume = 500000
    d2d_overhead = 0.10
    d2d_edge_fraction = 0.25
    [workload]                                    # optional: default llm decode (see perf.py)
    kind = "decode"                               # decode | prefill | gemm
    d_model = 4096
    [run]
    chunk = 65536                                 # configurations per task

Model of one configuration (every step is a numpy expression over a chunk of configurations):

* The compute logic (``logic_area_mm2`` of the reference NPU die's design at 7 nm,
  ``MACS_PER_MM2_7NM`` from ``chiplets/npu.toml``) is split over ``chiplets`` dies of
  ``logic/n x (1 + d2d_overhead)`` mm² (Chiplet Actuary's D2D overhead; no overhead when n = 1).
  Other nodes scale MACs per mm² and energy per MAC by :data:`NODE_SCALING`.
* HBM bandwidth per chiplet = stacks x stack bandwidth / n.
* D2D: chiplets sit in a 1 x 2 or 2 x ceil(n/2) mesh; each link has ``d2d_edge_fraction`` of a
  die side as shoreline at the PHY's GB/s per mm. The collective bandwidth per chiplet and the
  mean hop count come from routing all-to-all traffic on that mesh with ``topology.py``
  (computed once per chiplet count).
* Cost per unit: ``cost.total_cost`` (recurring + NRE / volume) with the HBM stacks as bought
  known-good dies (``cost_usd`` and footprint from hbm.toml).
* Performance: ``perf.py`` on the workload, giving time, throughput (tokens/s, or TOPS for a
  GEMM), energy, average power and the bound. Static power scales with silicon area from the
  reference NPU die (``power_static_w`` per mm²), plus each HBM stack's static power.
* Infeasible configurations are kept with ``feasible = 0`` and a reason bit mask
  (:data:`REASONS`).
"""

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..chiplets.descriptor import builtin, check_keys, read_toml
from ..hdl.common.params import ConfigError, check_int, check_number
from . import perf
from .cost import package_codes, total_cost
from .tech import load_tech

__all__ = ["SweepSpec", "load_spec", "spec_from_dict", "evaluate_chunk", "run_sweep",
           "pareto_front", "NODE_SCALING", "REASONS", "COLUMNS", "write_csv", "plot_pareto"]

#: node nm -> (logic density relative to 7 nm, energy per MAC relative to 7 nm).
#: Density: [recall] TSMC's quoted logic density steps (N5 ~1.8x N7, N3 ~1.6x N5, N10 ~0.6x N7,
#: 16/12 nm ~0.35x, 28 nm ~0.16x); energy: [assumption] ~ density^-0.5. Override per spec with
#: ``[node_scaling.N] density = .., energy = ..``.
NODE_SCALING = {3: (2.9, 0.59), 5: (1.8, 0.75), 7: (1.0, 1.0), 10: (0.62, 1.27),
                14: (0.35, 1.69), 20: (0.25, 2.0), 28: (0.16, 2.5), 40: (0.08, 3.5),
                55: (0.05, 4.5)}

REASONS = {1: "die larger than a reticle", 2: "PHY not available on the package",
           4: "HBM needs an interposer or bridge package", 8: "package/interposer over its limit",
           16: "not enough die edge for the HBM PHYs", 32: "fewer HBM stacks than chiplets"}

#: HBM PHY shoreline per stack on the host, mm (chiplets/npu.toml's hbm PHY).
HBM_PHY_MM = builtin("npu").hbm_shoreline_mm
_NPU = builtin("npu")
#: MACs per cycle per mm² of the reference NPU die at 7 nm (chiplets/npu.toml).
MACS_PER_MM2_7NM = _NPU.compute.macs_per_cycle / _NPU.area_mm2
STATIC_W_PER_MM2 = _NPU.power_static_w / _NPU.area_mm2
OTHER_W_PER_MM2 = _NPU.power_dynamic_w / _NPU.area_mm2
HBM_STATIC_W = builtin("hbm3").power_static_w

#: Largest sweep accepted (17 bytes per configuration stay in the driver's memory).
MAX_CONFIGS = 100_000_000
MAX_TASKS = 20_000
AXES = ("chiplets", "node", "package", "hbm_stacks", "phy", "hbm", "logic_area_mm2")
COLUMNS = ("config", "chiplets", "node", "package", "hbm_stacks", "phy", "hbm", "logic_area_mm2",
           "die_area_mm2", "feasible", "reason", "cost_usd", "recurring_usd", "throughput",
           "time_s", "energy_j", "avg_power_w", "bound", "peak_tops", "hbm_gbs_per_chiplet",
           "d2d_gbs_per_chiplet")
_DEFAULT_FIXED = {"volume": 500000.0, "d2d_overhead": 0.10, "d2d_edge_fraction": 0.25,
                  "alpha": None}


@dataclass(frozen=True)
class SweepSpec:
    name: str
    axes: dict                     # axis -> tuple of values
    fixed: dict
    workload: object               # perf.Gemm or perf.Transformer
    chunk: int = 65536
    node_scaling: dict = field(default_factory=lambda: dict(NODE_SCALING))

    @property
    def shape(self):
        return tuple(len(self.axes[a]) for a in AXES)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def throughput_unit(self):
        return "TOPS" if isinstance(self.workload, perf.Gemm) else "tokens/s"


def _axis(field_, v, check):
    if isinstance(v, dict):
        check_keys(field_, v, ("start", "stop", "num"))
        a = check_number(f"{field_}.start", v["start"], lo=0, lo_open=True)
        b = check_number(f"{field_}.stop", v["stop"], lo=0, lo_open=True)
        n = check_int(f"{field_}.num", v["num"], lo=1, hi=10_000_000)
        return tuple(float(x) for x in np.linspace(a, b, n))
    if not isinstance(v, list) or not v:
        raise ConfigError(field_, "must be a non-empty array (or {start, stop, num})")
    out = tuple(check(f"{field_}[{i}]", x) for i, x in enumerate(v))
    if len(set(out)) != len(out):
        raise ConfigError(field_, "has duplicate values")
    return out


def spec_from_dict(d, tech=None):
    tech = tech or load_tech()
    check_keys("", d, ("name", "space"), ("fixed", "workload", "run", "node_scaling", "description"))
    name = d["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError("name", "must be a non-empty string")
    sp = d["space"]
    check_keys("space", sp, ("chiplets", "node", "package", "hbm_stacks", "phy"),
          ("hbm", "logic_area_mm2"))

    def choice(table, what):
        def check(f, x):
            if not isinstance(x, str) or x not in table:
                raise ConfigError(f, f"unknown {what} {x!r}; known: {', '.join(table)}")
            return x
        return check

    def node(f, x):
        x = check_int(f, x, lo=1)
        if x not in tech.nodes:
            raise ConfigError(f, f"unknown node {x}; known: {', '.join(map(str, sorted(tech.nodes)))}")
        return x

    axes = {
        "chiplets": _axis("space.chiplets", sp["chiplets"], lambda f, x: check_int(f, x, lo=1, hi=64)),
        "node": _axis("space.node", sp["node"], node),
        "package": _axis("space.package", sp["package"], choice(tech.packages, "package")),
        "hbm_stacks": _axis("space.hbm_stacks", sp["hbm_stacks"], lambda f, x: check_int(f, x, lo=0, hi=64)),
        "phy": _axis("space.phy", sp["phy"], choice(tech.phys, "PHY")),
        "hbm": _axis("space.hbm", sp.get("hbm", ["hbm3"]), choice(tech.hbms, "HBM generation")),
        "logic_area_mm2": _axis("space.logic_area_mm2", sp.get("logic_area_mm2", [600.0]),
                                lambda f, x: check_number(f, x, lo=0, hi=1e5, lo_open=True)),
    }
    fx = d.get("fixed", {})
    check_keys("fixed", fx, (), tuple(_DEFAULT_FIXED))
    fixed = dict(_DEFAULT_FIXED)
    if "volume" in fx:
        fixed["volume"] = check_number("fixed.volume", fx["volume"], lo=1)
    if "d2d_overhead" in fx:
        fixed["d2d_overhead"] = check_number("fixed.d2d_overhead", fx["d2d_overhead"], lo=0, hi=10)
    if "d2d_edge_fraction" in fx:
        fixed["d2d_edge_fraction"] = check_number("fixed.d2d_edge_fraction", fx["d2d_edge_fraction"],
                                                  lo=0, hi=1, lo_open=True)
    if "alpha" in fx:
        fixed["alpha"] = check_number("fixed.alpha", fx["alpha"], lo=0, hi=1e3, lo_open=True)

    wl = d.get("workload", {"kind": "decode"})
    check_keys("workload", wl, (), ("kind", "name", "d_model", "n_heads", "d_ff", "n_layers", "seq_len",
                               "batch", "bytes_per_el", "m", "n", "k"))
    kind = wl.get("kind", "decode")
    if kind not in ("decode", "prefill", "gemm"):
        raise ConfigError("workload.kind", f"must be decode, prefill or gemm, not {kind!r}")
    ints = {k: check_int(f"workload.{k}", wl[k], lo=1, hi=1 << 40)
            for k in ("d_model", "n_heads", "d_ff", "n_layers", "seq_len", "batch", "m", "n", "k")
            if k in wl}
    bpe = check_number("workload.bytes_per_el", wl.get("bytes_per_el", 1.0), lo=0, hi=16, lo_open=True)
    if kind == "gemm":
        for k in ("d_model", "n_heads", "d_ff", "n_layers", "seq_len", "batch"):
            if k in ints:
                raise ConfigError(f"workload.{k}", "not a GEMM parameter (use m, n, k)")
        workload = perf.Gemm(wl.get("name", "gemm"), ints.get("m", 4096), ints.get("n", 4096),
                             ints.get("k", 4096), 1, bpe, bpe, bpe)
    else:
        for k in ("m", "n", "k"):
            if k in ints:
                raise ConfigError(f"workload.{k}", "not a transformer parameter")
        t = perf.Transformer(name=wl.get("name", f"llm_{kind}"), phase=kind, bytes_per_el=bpe,
                             **ints)
        if t.d_model % t.n_heads:
            raise ConfigError("workload.n_heads", f"must divide d_model {t.d_model}")
        workload = t
    run = d.get("run", {})
    check_keys("run", run, (), ("chunk",))
    chunk = check_int("run.chunk", run.get("chunk", 65536), lo=1, hi=10_000_000)
    scaling = dict(NODE_SCALING)
    ns = d.get("node_scaling", {})
    if not isinstance(ns, dict):
        raise ConfigError("node_scaling", "must be a table")
    for k, v in ns.items():
        try:
            nm = int(k)
        except ValueError:
            raise ConfigError(f"node_scaling.{k}", "node names are integers (nm)") from None
        check_keys(f"node_scaling.{k}", v, ("density", "energy"))
        scaling[nm] = (check_number(f"node_scaling.{k}.density", v["density"], lo=0, lo_open=True),
                       check_number(f"node_scaling.{k}.energy", v["energy"], lo=0, lo_open=True))
    for i, nm in enumerate(axes["node"]):
        if nm not in scaling:
            raise ConfigError(f"space.node[{i}]", f"no density/energy scaling for {nm} nm; add "
                              f"[node_scaling.{nm}]")
    spec = SweepSpec(name=name, axes=axes, fixed=fixed, workload=workload, chunk=chunk,
                     node_scaling=scaling)
    if spec.size > MAX_CONFIGS:
        raise ConfigError("space", f"{spec.size:,} configurations; at most {MAX_CONFIGS:,} "
                          "(the driver keeps cost and throughput of each for the Pareto front)")
    return spec


def load_spec(path, tech=None):
    return spec_from_dict(read_toml(path, "SPEC"), tech)


# ---- vectorised evaluation -------------------------------------------------------------------

_MESH_CACHE = {}


def mesh_factors(n):
    """(collective bandwidth per chiplet in units of one link's bandwidth, mean hops) for
    all-to-all traffic among ``n`` chiplets on a 1 x 2 / 2 x ceil(n/2) mesh (topology.py)."""
    if n in _MESH_CACHE:
        return _MESH_CACHE[n]
    import networkx as nx
    from .topology import evaluate_traffic, traffic_pattern
    if n <= 1:
        out = (math.inf, 0.0)
    else:
        rows = 1 if n <= 2 else 2
        cols = math.ceil(n / rows)
        g = nx.Graph()
        cells = [(r, c) for r in range(rows) for c in range(cols)][:n]
        for r, c in cells:
            g.add_node(f"c{r}_{c}", kind="compute", latency_ns=0.0, relay=True)
        for r, c in cells:
            for dr, dc in ((0, 1), (1, 0)):
                if (r + dr, c + dc) in cells:
                    g.add_edge(f"c{r}_{c}", f"c{r + dr}_{c + dc}", bw_gbs=1.0, latency_ns=1.0)
        res = evaluate_traffic(g, traffic_pattern(g, "all_to_all_compute"))
        out = (res["throughput_gbs"] / n, res["mean_hops"])
    _MESH_CACHE[n] = out
    return out


def _tables(spec, tech):
    """Per-axis lookup arrays (cheap; rebuilt per chunk on a worker)."""
    pk_codes, _ = package_codes(list(spec.axes["package"]), tech)
    pk = [tech.packages[p] for p in spec.axes["package"]]
    phys = [tech.phys[p] for p in spec.axes["phy"]]
    hb = [tech.hbms[h] for h in spec.axes["hbm"]]
    nodes = spec.axes["node"]
    n_vals = spec.axes["chiplets"]
    mesh = [mesh_factors(n) for n in n_vals]
    kinds = ("organic", "interposer", "bridge", "stack")
    return {
        "chiplets": np.array(n_vals, np.int64),
        "mesh_bw": np.array([m[0] for m in mesh]), "mesh_hops": np.array([m[1] for m in mesh]),
        "node": np.array(nodes, np.int64),
        "density": np.array([spec.node_scaling[n][0] for n in nodes]),
        "energy": np.array([spec.node_scaling[n][1] for n in nodes]),
        "pkg_code": np.asarray(pk_codes, np.int64),
        "pkg_kind": np.array([kinds.index(p.kind) for p in pk]),
        "phy_ok": np.array([[p.kind in ph.packages for p in pk] for ph in phys]),  # [phy, pkg]
        "phy_shore": np.array([ph.shoreline_gbyte_s_per_mm for ph in phys]),
        "phy_areal": np.array([ph.areal_gbyte_s_per_mm2 for ph in phys]),
        "phy_pj": np.array([ph.pj_per_bit for ph in phys]),
        "hbm_bw": np.array([h.gbyte_s_per_stack for h in hb]),
        "hbm_pj": np.array([h.pj_per_bit for h in hb]),
        "hbm_cost": np.array([h.cost_usd for h in hb]),
        "hbm_area": np.array([h.area_mm2 for h in hb]),
        "stacks": np.array(spec.axes["hbm_stacks"], np.int64),
        "logic": np.array(spec.axes["logic_area_mm2"], float),
    }


def evaluate_chunk(spec, start, stop, tech=None):
    """Evaluate configurations ``start .. stop-1`` (flat indices into the Cartesian product).

    Returns a dict of numpy arrays, one per :data:`COLUMNS` entry (axis columns as indices into
    the spec's axis values for the string axes).
    """
    tech = tech or load_tech()
    T = _tables(spec, tech)
    idx = np.arange(start, stop, dtype=np.int64)
    ic, ino, ipk, ist, iph, ihb, ila = np.unravel_index(idx, spec.shape)
    n = T["chiplets"][ic]
    nf = n.astype(float)
    logic = T["logic"][ila]
    stacks = T["stacks"][ist]
    ov = spec.fixed["d2d_overhead"]
    die_area = logic / nf * np.where(n > 1, 1.0 + ov, 1.0)
    side = np.sqrt(die_area)

    # compute
    macs = logic * MACS_PER_MM2_7NM * T["density"][ino]
    cs = _NPU.compute
    arrays = np.maximum(1.0, np.floor(macs / nf / (cs.rows * cs.cols)))
    # memory and D2D
    hbm_bw = np.maximum(stacks * T["hbm_bw"][ihb] / nf, 1e-9) * 1e9
    shore = spec.fixed["d2d_edge_fraction"] * side
    link_bw = np.where(T["phy_shore"][iph] > 0, T["phy_shore"][iph] * shore,
                       T["phy_areal"][iph] * shore * shore) * 1e9
    d2d_bw = T["mesh_bw"][ic] * link_bw

    # feasibility
    reason = np.zeros(idx.shape, np.int64)
    reason |= np.where(die_area > tech.reticle_mm2, 1, 0)
    reason |= np.where((n > 1) & ~T["phy_ok"][iph, ipk], 2, 0)
    kind = T["pkg_kind"][ipk]
    reason |= np.where((stacks > 0) & ((kind == 0) | (kind == 3)), 4, 0)
    reason |= np.where(stacks / nf * HBM_PHY_MM > 2 * side, 16, 0)
    reason |= np.where(stacks < n, 32, 0)

    # cost (SYS-COST's vectorised Chiplet Actuary model)
    c = total_cost(T["node"][ino], logic, n, T["pkg_code"][ipk], spec.fixed["volume"],
                   d2d_overhead=ov, alpha=spec.fixed["alpha"], tech=tech,
                   extra_dies=stacks, extra_die_area_mm2=T["hbm_area"][ihb],
                   extra_die_cost=T["hbm_cost"][ihb])
    reason |= np.where(np.asarray(c["over_limit"], bool), 8, 0)

    mc = perf.Machine(p=nf, arrays=arrays, rows=cs.rows, cols=cs.cols,
                      clock_hz=cs.clock_ghz * 1e9, hbm_bw=hbm_bw, d2d_bw=d2d_bw,
                      mac_pj=cs.mac_energy_pj * T["energy"][ino],
                      sram_pj_bit=cs.sram_energy_pj_per_bit * T["energy"][ino],
                      hbm_pj_bit=T["hbm_pj"][ihb], d2d_pj_bit=T["phy_pj"][iph],
                      d2d_hops=T["mesh_hops"][ic],
                      static_w=die_area * nf * STATIC_W_PER_MM2 + stacks * HBM_STATIC_W,
                      other_w=die_area * nf * OTHER_W_PER_MM2)
    w = spec.workload
    if isinstance(w, perf.Gemm):
        r = perf.run_ops(mc, [w])
        thr = r["achieved_ops"] / 1e12
    else:
        r = perf.run_ops(mc, perf.transformer_ops(w), repeat=w.n_layers)
        thr = w.tokens() / r["time_s"]
    feasible = reason == 0
    shape = idx.shape
    return {
        "config": idx, "chiplets": n, "node": T["node"][ino], "package": ipk.astype(np.int16),
        "hbm_stacks": stacks, "phy": iph.astype(np.int16), "hbm": ihb.astype(np.int16),
        "logic_area_mm2": logic, "die_area_mm2": die_area, "feasible": feasible.astype(np.int8),
        "reason": reason.astype(np.int16),
        "cost_usd": np.broadcast_to(c["total_cost_per_unit"], shape).astype(float),
        "recurring_usd": np.broadcast_to(c["total_recurring_cost"], shape).astype(float),
        "throughput": np.broadcast_to(thr, shape).astype(float),
        "time_s": np.broadcast_to(r["time_s"], shape).astype(float),
        "energy_j": np.broadcast_to(r["energy_j"], shape).astype(float),
        "avg_power_w": np.broadcast_to(r["energy_j"] / r["time_s"], shape).astype(float),
        "bound": np.broadcast_to(r["bound"], shape).astype(np.int8),
        "peak_tops": np.broadcast_to(mc.peak_ops, shape) / 1e12,
        "hbm_gbs_per_chiplet": hbm_bw / 1e9,
        "d2d_gbs_per_chiplet": np.where(n > 1, d2d_bw, 0.0) / 1e9,   # 0: one die, no D2D
    }


def _eval_task(spec, start, stop, csv=False):
    """One task (in-process or on a Dask worker): evaluate a chunk and return what the driver
    keeps: cost, throughput and feasibility per configuration, the feasible count, the CSV text
    of the chunk when ``csv`` (formatted on the worker, so it scales with workers) and timings."""
    t0 = time.perf_counter()
    c0 = time.thread_time()
    res = evaluate_chunk(spec, start, stop)
    c1 = time.thread_time()
    out = {"start": start, "stop": stop, "cost_usd": res["cost_usd"],
           "throughput": res["throughput"], "feasible": res["feasible"],
           "eval_cpu_s": c1 - c0}
    if csv:
        out["csv"] = format_rows(spec, res)
    out["task_s"] = time.perf_counter() - t0
    return out


def pareto_front(cost, throughput, feasible=None):
    """Indices of the Pareto-optimal points: no other point is cheaper *and* at least as fast.

    Sorted by cost ascending (ties: higher throughput first), a point is on the front when its
    throughput beats every cheaper point's.
    """
    cost = np.asarray(cost, float)
    thr = np.asarray(throughput, float)
    cand = np.arange(cost.size)
    if feasible is not None:
        cand = cand[np.asarray(feasible, bool)]
    cand = cand[np.isfinite(cost[cand]) & np.isfinite(thr[cand])]
    if cand.size == 0:
        return cand
    order = cand[np.lexsort((-thr[cand], cost[cand]))]
    best = np.maximum.accumulate(thr[order])
    prev = np.concatenate(([-np.inf], best[:-1]))
    return order[thr[order] > prev]


# ---- output -----------------------------------------------------------------------------------

def _decode_columns(spec, res):
    """String columns for output."""
    return {"package": np.array(spec.axes["package"], dtype=object)[res["package"]],
            "phy": np.array(spec.axes["phy"], dtype=object)[res["phy"]],
            "hbm": np.array(spec.axes["hbm"], dtype=object)[res["hbm"]],
            "bound": np.array(perf.BOUNDS, dtype=object)[res["bound"]]}


def format_rows(spec, res):
    """CSV text (no header) for a result chunk (floats with 6 significant digits)."""
    dec = _decode_columns(spec, res)
    cols, fmts = [], []
    for c in COLUMNS:
        v = dec.get(c, res[c])
        cols.append(v.tolist())
        fmts.append("%s" if v.dtype == object else "%d" if v.dtype.kind in "iub" else "%.6g")
    fmt = ",".join(fmts)
    return "".join([fmt % row + "\n" for row in zip(*cols)])


def write_csv(fh, spec, res, header=False):
    if header:
        fh.write(",".join(COLUMNS) + "\n")
    fh.write(format_rows(spec, res))


def plot_pareto(spec, cost, thr, feasible, front, path, max_points=20000, seed=0):
    from .report import _plt
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    feas = np.flatnonzero(feasible)
    rng = np.random.default_rng(seed)
    shown = feas if feas.size <= max_points else rng.choice(feas, max_points, replace=False)
    ax.scatter(cost[shown], thr[shown], s=4, alpha=0.3, color="#4e79a7",
               label=f"feasible ({feas.size:,} of {cost.size:,}{', sample shown' if feas.size > max_points else ''})")
    if front.size:
        ax.plot(cost[front], thr[front], "-o", color="#e15759", ms=3, label=f"Pareto front ({front.size})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("cost per unit, USD (recurring + NRE / volume)")
    ax.set_ylabel(f"throughput ({spec.throughput_unit}, {spec.workload.name})")
    ax.set_title(f"sweep {spec.name}: cost vs throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class SweepResult:
    n_configs: int
    n_feasible: int
    seconds: float
    eval_seconds: float            # CPU seconds (thread time) spent evaluating, all tasks
    configs_per_s: float
    executor: str
    workers: int
    front: list                    # Pareto rows (dicts)
    out: str | None
    plot: str | None


def _chunks(spec, chunk=None):
    # at most MAX_TASKS tasks: scheduling overhead stays small next to the vectorised work
    chunk = max(chunk or spec.chunk, -(-spec.size // MAX_TASKS))
    return [(s, min(s + chunk, spec.size)) for s in range(0, spec.size, chunk)]


def run_sweep(spec, *, executor="local", scheduler=None, workers=None, out=None, plot=None,
              progress=None, keep=True, processes=True, chunk=None):
    """Run a sweep. ``executor``: ``local`` (in-process) or ``dask`` (a LocalCluster with
    ``workers`` single-threaded workers, or the scheduler at ``scheduler``).

    ``out``: CSV path (written to a temporary file, renamed on success). ``plot``: Pareto PNG
    path. ``progress``: a callable ``advance(n)``. ``keep``: keep cost/throughput of every
    configuration for the Pareto front (8 bytes x 3 per configuration).
    """
    import os
    tasks = _chunks(spec, chunk)
    cost = np.empty(spec.size) if keep else None
    thr = np.empty(spec.size) if keep else None
    feas = np.empty(spec.size, bool) if keep else None
    n_feasible = 0
    eval_s = 0.0
    tmp = None
    fh = None
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
        fh = open(tmp, "w")
        fh.write(",".join(COLUMNS) + "\n")

    def consume(res):
        nonlocal n_feasible, eval_s
        eval_s += res["eval_cpu_s"]
        sl = slice(res["start"], res["stop"])
        if keep:
            cost[sl] = res["cost_usd"]
            thr[sl] = res["throughput"]
            feas[sl] = res["feasible"].astype(bool)
        n_feasible += int(res["feasible"].sum())
        if fh is not None:
            fh.write(res["csv"])
        if progress:
            progress(sl.stop - sl.start)

    want_csv = fh is not None
    t0 = time.perf_counter()
    n_workers = 1
    try:
        if executor == "local":
            _warm(spec)
            t0 = time.perf_counter()
            for s, e in tasks:
                consume(_eval_task(spec, s, e, want_csv))
        elif executor == "dask":
            from dask.distributed import Client, LocalCluster, as_completed
            cluster = None
            if scheduler:
                client = Client(scheduler, timeout="20s")
            else:
                import dask
                # Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in its workers, which turns off
                # glibc's dynamic mmap threshold: every chunk-sized numpy temporary is then a
                # fresh mmap with page faults (measured 2.5x slower here). Keep the other vars.
                env = {k: v for k, v in
                       dask.config.get("distributed.nanny.pre-spawn-environ", {}).items()
                       if k != "MALLOC_TRIM_THRESHOLD_"}
                with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
                    cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1,
                                           processes=processes, dashboard_address=None,
                                           silence_logs=40)
                client = Client(cluster)
            try:
                n_workers = len(client.scheduler_info().get("workers", {})) or (workers or 1)
                # warm every worker (imports, technology data, mesh factors) outside the
                # timed region: the measured rate is the steady-state sweep rate
                client.run(_warm, spec)
                t0 = time.perf_counter()
                spec_f = client.scatter(spec, broadcast=True)
                futs = [client.submit(_eval_task, spec_f, s, e, want_csv, pure=False)
                        for s, e in tasks]
                for fut in as_completed(futs):
                    consume(fut.result())
                    fut.release()
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
        else:
            raise ConfigError("--executor", f"must be local or dask, not {executor!r}")
        seconds = time.perf_counter() - t0
        if fh is not None:
            fh.close()
            fh = None
            os.replace(tmp, out)
    finally:
        if fh is not None:
            fh.close()
        if tmp is not None and tmp.exists():
            tmp.unlink()
    front_rows = []
    if keep:
        front = pareto_front(cost, thr, feas)
        if front.size:
            fr = evaluate_chunk_rows(spec, front)
            front_rows = fr
        if plot is not None:
            plot_pareto(spec, cost, thr, feas, front, plot)
    return SweepResult(spec.size, n_feasible, seconds, eval_s, spec.size / seconds,
                       executor, n_workers, front_rows, str(out) if out else None,
                       str(plot) if plot else None)


def _warm(spec):
    """Import and cache what a task needs (run once per worker before timing)."""
    evaluate_chunk(spec, 0, min(spec.size, 64))
    return True


def evaluate_chunk_rows(spec, indices, tech=None):
    """Re-evaluate selected configurations and return them as dicts (for the Pareto table)."""
    rows = []
    for i in np.asarray(indices, np.int64)[:200]:
        r = evaluate_chunk(spec, int(i), int(i) + 1, tech)
        dec = _decode_columns(spec, r)
        rows.append({c: (dec[c][0] if c in dec else r[c][0].item()) for c in COLUMNS})
    return rows


