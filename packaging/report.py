"""System report: every model on one placed system, as metrics.json, report.html and three plots.

:func:`analyse` runs placement, cost (``cost.py``), topology, power, thermal and performance
on a :class:`~diestack.packaging.system.System` and returns a JSON-able metrics dict;
:func:`write_report` writes ``report.html``, ``metrics.json``, ``floorplan.png``,
``roofline.png`` and ``thermal.png`` into a folder, atomically per file (all files are rendered
in a temporary folder first, so a failure leaves an earlier report untouched).
"""

import html
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import perf, placement, power, thermal, topology
from .cost import system_recurring_cost
from .tech import load_tech

__all__ = ["analyse", "write_report", "DEFAULT_WORKLOADS", "plot_floorplan", "plot_roofline",
           "plot_thermal", "PNGS"]

PNGS = ("floorplan.png", "roofline.png", "thermal.png")

# Reference workloads: a square int8 GEMM and a 7B-class decoder layer stack (d_model 4096,
# 32 heads, FFN 16384, 32 layers, int8 weights and activations) in prefill and decode.
DEFAULT_WORKLOADS = (
    perf.Gemm("gemm_4096", 4096, 4096, 4096),
    perf.Transformer(name="llm7b_prefill", phase="prefill", seq_len=2048, batch=8),
    perf.Transformer(name="llm7b_decode", phase="decode", seq_len=2048, batch=8),
)


def _cost(system, tech):
    groups = {}
    for d in system.dies:
        c = d.chiplet
        if c.kind == "memory":
            gen = tech.hbms[c.memory.generation]
            key = (None, round(c.area_mm2, 6), gen.cost_usd)
        else:
            key = (c.node, round(c.area_mm2, 6), None)
        groups[key] = groups.get(key, 0) + 1
    dies = [(node, area, n) if price is None else (None, area, n, price)
            for (node, area, price), n in groups.items()]
    r = system_recurring_cost(dies, system.package, tech=tech)
    keys = ("raw_chips", "defect_chips", "raw_package", "defect_package", "wasted_kgd",
            "package_cost", "total_recurring_cost", "assembly_yield", "interposer_yield")
    out = {k: r[k] for k in keys if k in r}
    # cost.py sizes the interposer/substrate as Chiplet Actuary does (k x sum of die areas), not
    # from the placed interposer: report both so the difference is visible
    out["ca_interposer_area_mm2"] = r.get("interposer_area_mm2")
    out["ca_package_area_mm2"] = r.get("package_area_mm2")
    out["placed_interposer_area_mm2"] = system.interposer_area_mm2
    return out | {"dies": r["dies"]}


def analyse(system, tech=None, *, workloads=DEFAULT_WORKLOADS, thermal_resolution_mm=0.5):
    """Run every model on ``system``; returns (metrics dict, extras for plotting)."""
    tech = tech or load_tech()
    placement.check_legal(system, tech)
    m = {"name": system.name, "description": system.description, "package": system.package,
         "interposer_mm": [system.interposer_w, system.interposer_h],
         "interposer_area_mm2": system.interposer_area_mm2,
         "interposer_reticles": system.interposer_area_mm2 / tech.reticle_mm2,
         "package_limit_mm2": tech.packages[system.package].max_area_mm2,
         "dies": [{"name": d.name, "chiplet": d.chiplet.name, "kind": d.chiplet.kind,
                   "node": d.chiplet.node, "x": d.x, "y": d.y, "rotation": d.rotation,
                   "w": d.w, "h": d.h, "area_mm2": d.chiplet.area_mm2} for d in system.dies],
         "total_die_area_mm2": system.die_area_mm2}
    m["placement"] = {
        "legal": True,
        "links": [{"a": f"{l.a_die}.{l.a_phy}", "b": f"{l.b_die}.{l.b_phy}", "phy": l.phy,
                   "length_mm": placement.link_length_mm(system, l),
                   "reach_mm": tech.phys[l.phy].reach_mm} for l in system.links],
        "hbm": [{"stack": h.stack, "host": f"{h.host}.{h.host_phy}",
                 "gap_mm": placement.hbm_gap_mm(system, h)[0]} for h in system.hbm]}
    m["cost"] = _cost(system, tech)
    m["topology"] = topology.summary(system, tech)
    m["memory"] = {"stacks": len(system.memory_dies),
                   "capacity_gb": sum(s.chiplet.memory.capacity_gb for s in system.memory_dies),
                   "bandwidth_gbs": sum(s.chiplet.memory.bandwidth_gbs for s in system.memory_dies)}
    pk = power.activity_power(system, tech)
    m["power_peak"] = {"total_w": pk["total"]["total"], "by_category_w": pk["total"],
                       "by_die_w": {k: v["total"] for k, v in pk["dies"].items()}}
    th = thermal.solve_system(system, m["power_peak"]["by_die_w"],
                              resolution_mm=thermal_resolution_mm)
    m["thermal"] = {"condition": "all activities 1 (peak power)", "ambient_c": th.ambient_c,
                    "peak_c": th.peak_c, "resolution_mm": th.resolution_mm,
                    "per_die": th.per_die, "layers": [l.name for l in thermal.TAP25D_LAYERS],
                    "r_convec_k_per_w": thermal.R_CONVEC_K_PER_W}
    extras = {"thermal": th}
    if system.compute_dies:
        mc = perf.machine_from_system(system, tech)
        rf = perf.roofline(mc)
        m["roofline"] = {k: {kk: float(vv) for kk, vv in v.items()} for k, v in rf.items()}
        m["compute"] = {"chiplets": int(mc.p), "peak_tops": float(mc.peak_ops) / 1e12,
                        "peak_tops_per_chiplet": float(mc.peak_ops_chiplet) / 1e12,
                        "d2d_collective_gbs_per_chiplet": float(mc.d2d_bw) / 1e9}
        m["workloads"] = perf.workload_report(mc, workloads)
        extras["machine"] = mc
    return m, extras


# ---- plots --------------------------------------------------------------------------------------

_COLOURS = {"compute": "#4e79a7", "memory": "#f28e2b", "io": "#59a14f"}


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_floorplan(system, path):
    plt = _plt()
    from matplotlib.patches import Rectangle
    fig, ax = plt.subplots(figsize=(7, 7 * system.interposer_h / system.interposer_w + 0.6))
    ax.add_patch(Rectangle((0, 0), system.interposer_w, system.interposer_h, fc="#eeeeee",
                           ec="k", lw=1.5))
    for d in system.dies:
        x0, y0, x1, y1 = d.rect
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fc=_COLOURS[d.chiplet.kind], ec="k",
                               alpha=0.85))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{d.name}\n{d.chiplet.name}"
                f"{'' if d.chiplet.node is None else f' {d.chiplet.node}nm'}",
                ha="center", va="center", fontsize=8, color="white")
        for p in d.chiplet.phys:
            (ax0, ay0), (ax1, ay1) = d.phy_segment(p.name)
            ax.plot([ax0, ax1], [ay0, ay1], color="red" if p.kind == "d2d" else "gold", lw=3)
    for l in system.links:
        a = system.die(l.a_die).phy_center(l.a_phy)
        b = system.die(l.b_die).phy_center(l.b_phy)
        ax.plot([a[0], b[0]], [a[1], b[1]], color="red", lw=1.5, ls=":")
    ax.set_xlim(-1, system.interposer_w + 1)
    ax.set_ylim(-1, system.interposer_h + 1)
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_title(f"{system.name}: {system.package}, {system.interposer_w:g} x "
                 f"{system.interposer_h:g} mm (red: D2D PHYs/links, gold: HBM PHYs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roofline(metrics, path):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    rf = metrics.get("roofline")
    oi = np.logspace(-1, 4, 200)
    if rf:
        for label, r, ls in (("system", rf["system"], "-"), ("per chiplet", rf["chiplet"], "--")):
            ax.loglog(oi, np.minimum(r["peak_ops"], oi * r["hbm_bw"]) / 1e12, ls, color="k",
                      label=f"{label}: {r['peak_ops'] / 1e12:.0f} TOPS, {r['hbm_bw'] / 1e9:.0f} GB/s")
        for (wname, w), mk in zip(metrics.get("workloads", {}).items(), "osD^v<>"):
            pts = [(o["intensity"], o["achieved_tops"]) for o in w["ops"]
                   if np.isfinite(o["intensity"]) and o["achieved_tops"] > 0]
            if pts:
                xs, ys = zip(*pts)
                ax.loglog(xs, ys, mk, ms=6, alpha=0.8, label=f"{wname} (one mark per op)")
    ax.set_xlabel("operational intensity (ops / HBM byte)")
    ax.set_ylabel("throughput (TOPS)")
    ax.set_title(f"{metrics['name']}: roofline (int8 ops, HBM)")
    ax.grid(True, which="both", alpha=0.3)
    if rf:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no compute dies", transform=ax.transAxes, ha="center")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_thermal(system, th, path):
    plt = _plt()
    from matplotlib.patches import Rectangle
    fig, ax = plt.subplots(figsize=(7.5, 7 * system.interposer_h / system.interposer_w + 0.6))
    im = ax.imshow(th.temps_c, origin="lower", extent=th.extent_mm, cmap="inferno")
    for d in system.dies:
        x0, y0, x1, y1 = d.rect
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="white", lw=0.8))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{d.name}\n{th.per_die[d.name]['peak_c']:.1f} C",
                ha="center", va="center", fontsize=7, color="cyan")
    fig.colorbar(im, ax=ax, label="chip-layer temperature (C)")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_title(f"{system.name}: steady state at peak power {th.total_power_w:.0f} W, "
                 f"peak {th.peak_c:.1f} C", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- HTML -------------------------------------------------------------------------------------

def _table(rows, header):
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in r) + "</tr>")
    return "\n".join(out) + "</table>"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def key_metrics(m):
    """The headline numbers (also used by the ``diestack run`` section)."""
    out = {"interposer_area_mm2": m["interposer_area_mm2"],
           "interposer_reticles": round(m["interposer_reticles"], 3),
           "cost_recurring_usd": m["cost"]["total_recurring_cost"],
           "hbm_bandwidth_gbs": m["memory"]["bandwidth_gbs"],
           "bisection_gbs": m["topology"]["bisection_gbs"],
           "uniform_latency_ns": m["topology"]["uniform"]["mean_latency_ns"],
           "uniform_throughput_gbs": m["topology"]["uniform"]["throughput_gbs"],
           "peak_power_w": m["power_peak"]["total_w"],
           "peak_temp_c": m["thermal"]["peak_c"]}
    if "compute" in m:
        out["peak_tops"] = m["compute"]["peak_tops"]
        for name, w in m["workloads"].items():
            if "tokens_per_s" in w:
                out[f"{name}_tokens_per_s"] = w["tokens_per_s"]
                out[f"{name}_mj_per_token"] = 1e3 * w["energy_j"] / w["tokens"]
            else:
                out[f"{name}_tops"] = w["achieved_tops"]
    return out


def render_html(m):
    km = key_metrics(m)
    parts = [f"<h1>diestack system report: {html.escape(m['name'])}</h1>",
             f"<p>{html.escape(m['description'])}</p>",
             "<h2>Key metrics</h2>", _table(sorted(km.items()), ("metric", "value")),
             "<h2>Floorplan</h2><img src='floorplan.png'>",
             "<h2>Dies</h2>",
             _table([(d["name"], d["chiplet"], d["kind"], d["node"], d["x"], d["y"], d["rotation"],
                      d["area_mm2"]) for d in m["dies"]],
                    ("die", "chiplet", "kind", "node nm", "x mm", "y mm", "rot", "area mm^2")),
             "<h2>Placement</h2>",
             _table([(l["a"], l["b"], l["phy"], l["length_mm"], l["reach_mm"]) for l in m["placement"]["links"]],
                    ("link a", "link b", "PHY", "length mm", "reach mm")),
             _table([(h["stack"], h["host"], h["gap_mm"]) for h in m["placement"]["hbm"]],
                    ("HBM stack", "host PHY", "gap mm")),
             "<h2>Cost (recurring, Chiplet Actuary model)</h2>",
             "<p>The cost model (packaging/cost.py) sizes the interposer as Chiplet Actuary does, "
             "k x the sum of die areas (ca_interposer_area_mm2), not from the placement.</p>",
             _table([(k, v) for k, v in m["cost"].items() if k != "dies"], ("term", "value")),
             "<h2>Topology</h2>",
             _table([(p, m["topology"][p]["mean_latency_ns"], m["topology"][p]["max_latency_ns"],
                      m["topology"][p]["throughput_gbs"], m["topology"][p]["mean_hops"])
                     for p in ("uniform", "to_io", "neighbor")],
                    ("traffic", "mean latency ns", "max latency ns", "throughput GB/s", "mean hops")),
             f"<p>Bisection bandwidth {m['topology']['bisection_gbs']:.0f} GB/s per direction; "
             f"diameter {m['topology']['diameter_hops']} hops.</p>",
             "<h2>Power at activity 1</h2>",
             _table(sorted(m["power_peak"]["by_category_w"].items()), ("category", "W")),
             "<h2>Thermal (TAP-2.5D stack)</h2><img src='thermal.png'>",
             _table([(k, v["power_w"], v["peak_c"], v["mean_c"]) for k, v in m["thermal"]["per_die"].items()],
                    ("die", "W", "peak C", "mean C"))]
    if "workloads" in m:
        parts += ["<h2>Workloads</h2><img src='roofline.png'>",
                  _table([(n, w["time_s"], w["achieved_tops"], w["utilization"], w["bound"],
                           w.get("tokens_per_s", ""), w["energy_j"], w["avg_power_w"])
                          for n, w in m["workloads"].items()],
                         ("workload", "time s", "TOPS", "utilization", "bound", "tokens/s",
                          "energy J", "avg W"))]
        for n, w in m["workloads"].items():
            parts += [f"<h3>{html.escape(n)}</h3>",
                      _table([(o["name"], o["mapping"], o["bound"], o["time_s"], o["achieved_tops"],
                               o["intensity"], o["hbm_bytes"], o["d2d_bytes"]) for o in w["ops"]],
                             ("op", "mapping", "bound", "time s", "TOPS", "ops/B", "HBM B", "D2D B"))]
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #999;"
             "padding:2px 8px}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(m['name'])}"
            f"</title><style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def _json_default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(type(o).__name__)


def write_report(system, out_dir, tech=None, **kw):
    """Analyse ``system`` and write the report files into ``out_dir``. Returns the metrics."""
    m, extras = analyse(system, tech, **kw)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out_dir))
    try:
        plot_floorplan(system, tmp / "floorplan.png")
        plot_roofline(m, tmp / "roofline.png")
        plot_thermal(system, extras["thermal"], tmp / "thermal.png")
        (tmp / "report.html").write_text(render_html(m))
        (tmp / "metrics.json").write_text(json.dumps(m, indent=2, sort_keys=True,
                                                     default=_json_default) + "\n")
        for name in PNGS + ("report.html", "metrics.json"):
            os.replace(tmp / name, out_dir / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    m["files"] = {n: str(out_dir / n) for n in PNGS + ("report.html", "metrics.json")}
    return m
