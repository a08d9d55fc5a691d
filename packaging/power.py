"""Power of a placed system: compute, SRAM, D2D and HBM energy x activity, plus static power.

Per die (W):

* ``compute``  = MAC rate x ``mac_energy_pj`` (NPU dies; ``ComputeSpec``);
* ``sram``     = SRAM bits/s x ``sram_energy_pj_per_bit``. At activity 1 every array reads one
  operand byte per row and writes one result byte per column each cycle:
  ``sram_bits_per_array_cycle = 8 (rows + cols)`` [assumption: weight-stationary array fed from
  and drained to SRAM, npu.md];
* ``other``    = ``power_dynamic_w`` x activity (clock tree, control, NoC; all of an IO die's
  dynamic power);
* ``d2d``      = bits/s crossing the die's links x the PHY's pJ/bit (half of each link's energy
  to each end: both ends have a PHY);
* ``hbm``      = bits/s read/written x the stack's pJ/bit, charged to the stack die;
* ``static``   = ``power_static_w``.

:func:`power_from_rates` takes explicit rates (from a workload, see ``perf.py``);
:func:`activity_power` derives them from activities in [0, 1] (1 = every MAC busy each cycle,
every link and stack at peak bandwidth).
"""

__all__ = ["power_from_rates", "activity_power", "CATEGORIES", "sram_bits_per_array_cycle",
           "sram_bits_per_s"]

CATEGORIES = ("compute", "sram", "other", "d2d", "hbm", "static")


def sram_bits_per_array_cycle(spec):
    """SRAM bits moved per array per cycle at full activity (see the module docstring)."""
    return 8 * (spec.rows + spec.cols)


def sram_bits_per_s(spec, activity=1.0):
    return activity * spec.arrays * sram_bits_per_array_cycle(spec) * spec.clock_ghz * 1e9


def power_from_rates(system, tech, *, mac_per_s=None, sram_bits_per_s_=None, logic_activity=None,
                     link_gbs=None, hbm_gbs=None):
    """Per-die power breakdown from rates.

    ``mac_per_s``, ``sram_bits_per_s_``, ``logic_activity``: ``{die: value}`` (missing = 0).
    ``link_gbs``: ``{link index: GB/s summed over both directions}``. ``hbm_gbs``:
    ``{stack die: GB/s}``. Returns ``{"dies": {die: {category: W, "total": W}}, "total": {...}}``.
    """
    mac_per_s = mac_per_s or {}
    sram_bits_per_s_ = sram_bits_per_s_ or {}
    logic_activity = logic_activity or {}
    link_gbs = link_gbs or {}
    hbm_gbs = hbm_gbs or {}
    dies = {}
    for d in system.dies:
        c = d.chiplet
        row = dict.fromkeys(CATEGORIES, 0.0)
        if c.compute is not None:
            row["compute"] = mac_per_s.get(d.name, 0.0) * c.compute.mac_energy_pj * 1e-12
            row["sram"] = sram_bits_per_s_.get(d.name, 0.0) * c.compute.sram_energy_pj_per_bit * 1e-12
        row["other"] = c.power_dynamic_w * logic_activity.get(d.name, 0.0)
        if c.memory is not None:
            row["hbm"] = hbm_gbs.get(d.name, 0.0) * 8e9 * c.memory.energy_pj_per_bit * 1e-12
        row["static"] = c.power_static_w
        dies[d.name] = row
    for i, link in enumerate(system.links):
        gbs = link_gbs.get(i, 0.0)
        w = gbs * 8e9 * tech.phys[link.phy].pj_per_bit * 1e-12
        dies[link.a_die]["d2d"] += w / 2
        dies[link.b_die]["d2d"] += w / 2
    for row in dies.values():
        row["total"] = sum(row[k] for k in CATEGORIES)
    total = {k: sum(r[k] for r in dies.values()) for k in CATEGORIES + ("total",)}
    return {"dies": dies, "total": total}


def activity_power(system, tech, *, compute=1.0, hbm=1.0, d2d=1.0):
    """Power at the given activities (fractions of peak MAC rate, HBM and D2D bandwidth)."""
    from .topology import build_graph
    mac, sram, act = {}, {}, {}
    for d in system.dies:
        c = d.chiplet
        if c.kind != "memory":
            act[d.name] = compute
        if c.compute is not None:
            mac[d.name] = compute * c.compute.macs_per_cycle * c.compute.clock_ghz * 1e9
            sram[d.name] = sram_bits_per_s(c.compute, compute)
    g = build_graph(system, tech)
    link_gbs = {}
    for u, v, e in g.edges(data=True):
        share = e["bw_gbs"] / len(e["links"])
        for i in e["links"]:
            link_gbs[i] = 2 * share * d2d          # both directions
    hbm_gbs = {s.name: hbm * s.chiplet.memory.bandwidth_gbs for s in system.memory_dies}
    return power_from_rates(system, tech, mac_per_s=mac, sram_bits_per_s_=sram,
                            logic_activity=act, link_gbs=link_gbs, hbm_gbs=hbm_gbs)
