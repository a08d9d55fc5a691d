"""Placement legality of a :class:`~diestack.packaging.system.System`.

Checks, each reported with the field to fix:

* ``dies[j].x`` -- two dies overlap (closer than ``MIN_SPACING_MM`` counts as touching, allowed);
* ``interposer.width_mm`` -- the interposer (or, for an organic package, the substrate area that
  holds the dies) is larger than the package technology allows (``max_area_mm2`` in
  packaging/data/packages.toml, e.g. CoWoS-S 3.3 reticles), or a die is larger than one reticle;
* ``hbm[i].stack`` -- an HBM stack's PHY edge does not face its host's HBM PHY: the two shorelines
  must lie on opposite, parallel edges, at most ``HBM_MAX_GAP_MM`` apart, overlapping along the
  edge by at least half of the shorter one;
* ``links[i]`` -- a D2D link is longer than its PHY's reach. Length is the Manhattan distance
  between the two PHY centres (RapidChiplet's ``link_routing = manhattan``, system.md).
"""

from ..hdl.common.params import ConfigError

__all__ = ["violations", "check_legal", "link_length_mm", "hbm_gap_mm",
           "HBM_MAX_GAP_MM", "MIN_OVERLAP_FRACTION"]

#: Largest die-edge to die-edge gap of an HBM attachment. [assumption] HBM PHY-to-PHY interposer
#: routes are kept to a few mm (the TAP-2.5D ascend910 layout places stacks ~1 mm from the die).
HBM_MAX_GAP_MM = 3.0
#: The HBM shorelines must overlap along the edge by this fraction of the shorter one.
MIN_OVERLAP_FRACTION = 0.5
_EPS = 1e-9
_OPPOSITE = {"N": "S", "S": "N", "E": "W", "W": "E"}


def link_length_mm(system, link):
    """Manhattan distance between the PHY centres of a link, mm."""
    ax, ay = system.die(link.a_die).phy_center(link.a_phy)
    bx, by = system.die(link.b_die).phy_center(link.b_phy)
    return abs(ax - bx) + abs(ay - by)


def hbm_gap_mm(system, attach):
    """(gap, overlap, problem) between a stack's HBM PHY and its host's HBM PHY.

    ``problem`` is None when the two shorelines face each other, else a sentence saying why not.
    """
    stack = system.die(attach.stack)
    host = system.die(attach.host)
    sphy = next(p for p in stack.chiplet.phys if p.kind == "hbm")
    s_edge = stack.edge(sphy.edge)
    h_edge = host.edge(host.chiplet.phy(attach.host_phy).edge)
    if _OPPOSITE[s_edge] != h_edge:
        return None, None, (f"stack {attach.stack!r} has its PHY on its {s_edge} edge but host PHY "
                            f"{attach.host}.{attach.host_phy} is on the host's {h_edge} edge; "
                            f"they must face each other (rotate the stack or the host)")
    (s0, s1), (h0, h1) = stack.phy_segment(sphy.name), host.phy_segment(attach.host_phy)
    if s_edge in "EW":
        # stack's PHY on its east edge: host must be east of it
        gap = (h0[0] - s0[0]) if s_edge == "E" else (s0[0] - h0[0])
        lo_s, hi_s = sorted((s0[1], s1[1]))
        lo_h, hi_h = sorted((h0[1], h1[1]))
    else:
        gap = (h0[1] - s0[1]) if s_edge == "N" else (s0[1] - h0[1])
        lo_s, hi_s = sorted((s0[0], s1[0]))
        lo_h, hi_h = sorted((h0[0], h1[0]))
    overlap = max(0.0, min(hi_s, hi_h) - max(lo_s, lo_h))
    need = MIN_OVERLAP_FRACTION * min(hi_s - lo_s, hi_h - lo_h)
    if gap < -_EPS:
        return gap, overlap, (f"stack {attach.stack!r} is on the wrong side of host "
                              f"{attach.host!r} (its {s_edge} edge points away from the host PHY)")
    if gap > HBM_MAX_GAP_MM + _EPS:
        return gap, overlap, (f"stack {attach.stack!r} is {gap:.2f} mm from host PHY "
                              f"{attach.host}.{attach.host_phy}; at most {HBM_MAX_GAP_MM:g} mm allowed")
    if overlap + _EPS < need:
        return gap, overlap, (f"stack {attach.stack!r} PHY overlaps host PHY "
                              f"{attach.host}.{attach.host_phy} by {overlap:.2f} mm along the edge; "
                              f"needs {need:.2f} mm (align them)")
    return gap, overlap, None


def violations(system, tech):
    """All legality violations as a list of ``(field, message)``, in file order."""
    out = []
    pkg = tech.packages[system.package]
    area = system.interposer_area_mm2
    if area > pkg.max_area_mm2:
        out.append(("interposer.width_mm",
                    f"interposer {system.interposer_w:g} x {system.interposer_h:g} = {area:.0f} mm^2 "
                    f"exceeds the {system.package} limit of {pkg.max_area_mm2:.0f} mm^2 "
                    f"({pkg.max_area_mm2 / tech.reticle_mm2:.2f} reticles)"))
    dies = system.dies
    for j, b in enumerate(dies):
        if b.chiplet.area_mm2 > tech.reticle_mm2 + _EPS or \
                max(b.w, b.h) > max(tech.reticle_w_mm, tech.reticle_h_mm) + _EPS or \
                min(b.w, b.h) > min(tech.reticle_w_mm, tech.reticle_h_mm) + _EPS:
            out.append((f"dies[{j}].chiplet",
                        f"die {b.name!r} ({b.w:g} x {b.h:g} mm) does not fit one "
                        f"{tech.reticle_w_mm:g} x {tech.reticle_h_mm:g} mm reticle field"))
        for a in dies[:j]:
            ax0, ay0, ax1, ay1 = a.rect
            bx0, by0, bx1, by1 = b.rect
            ox = min(ax1, bx1) - max(ax0, bx0)
            oy = min(ay1, by1) - max(ay0, by0)
            if ox > _EPS and oy > _EPS:
                out.append((f"dies[{j}].x", f"die {b.name!r} overlaps die {a.name!r} by "
                            f"{ox:.3g} x {oy:.3g} mm"))
    for i, h in enumerate(system.hbm):
        _, _, problem = hbm_gap_mm(system, h)
        if problem:
            out.append((f"hbm[{i}].stack", problem))
    for i, link in enumerate(system.links):
        reach = tech.phys[link.phy].reach_mm
        length = link_length_mm(system, link)
        if length > reach + _EPS:
            out.append((f"links[{i}]", f"{link.a_die}.{link.a_phy} -> {link.b_die}.{link.b_phy} is "
                        f"{length:.2f} mm long (Manhattan, PHY centre to centre); {link.phy} "
                        f"reaches {reach:g} mm"))
    return out


def check_legal(system, tech):
    """Raise :class:`ConfigError` for the first violation (see :func:`violations`)."""
    v = violations(system, tech)
    if v:
        field, message = v[0]
        more = f" (and {len(v) - 1} more problem{'s' if len(v) > 2 else ''})" if len(v) > 1 else ""
        raise ConfigError(field, message + more)
