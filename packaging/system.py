"""Multi-die system description: a TOML file of placed dies, D2D links and HBM attachments.

Example (``packaging/designs/default.toml`` is the full reference system)::

    name = "two_npu"
    package = "interposer"            # a package in packaging/data/packages.toml
    [interposer]
    width_mm = 30.0
    height_mm = 14.0
    [[dies]]
    name = "npu0"
    chiplet = "npu"                   # a built-in descriptor or a key of [chiplets]
    x = 1.0                           # lower-left corner of the rotated die, mm
    y = 1.0
    rotation = 0                      # counter-clockwise degrees: 0, 90, 180, 270
    [[links]]
    a = "npu0.d2d_e"                  # die.phy
    b = "npu1.d2d_e"
    [[hbm]]
    stack = "hbm0"                    # a die whose chiplet is a memory stack
    host = "npu0.hbm"                 # the host die's HBM PHY
    [chiplets.big_npu]                # optional: inline descriptor (chiplets/descriptor.py) ...
    file = "big_npu.toml"             # ... or a file, relative to this TOML

:func:`load_system` validates everything strictly: unknown keys, missing fields, bad numbers,
unknown chiplets, nodes, PHYs and packages, dangling references, dies off the interposer,
overlapping dies, an interposer over the package's limit, HBM stacks not facing their PHY and
D2D links longer than the PHY's reach. Each error is a :class:`ConfigError` naming the field,
e.g. ``dies[2].x`` or ``links[1]``.
"""

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..chiplets.descriptor import (EDGES, Chiplet, builtin, check_keys, check_name,
                                   chiplet_from_dict, read_toml)
from ..hdl.common.params import ConfigError, check_choice, check_int, check_number
from .tech import load_tech

__all__ = ["Die", "Link", "HbmAttach", "System", "load_system", "system_from_dict",
           "default_system", "DEFAULT_PATH", "ROTATIONS"]

ROTATIONS = (0, 90, 180, 270)
DEFAULT_PATH = Path(__file__).resolve().parent / "designs" / "default.toml"


@dataclass(frozen=True)
class Die:
    """A chiplet placed at (x, y) (lower-left of its rotated bounding box) with a rotation."""
    name: str
    chiplet: Chiplet
    x: float
    y: float
    rotation: int = 0

    @property
    def w(self):
        return self.chiplet.height_mm if self.rotation in (90, 270) else self.chiplet.width_mm

    @property
    def h(self):
        return self.chiplet.width_mm if self.rotation in (90, 270) else self.chiplet.height_mm

    @property
    def rect(self):
        """(x0, y0, x1, y1) in package coordinates, mm."""
        return (self.x, self.y, self.x + self.w, self.y + self.h)

    @property
    def center(self):
        return (self.x + self.w / 2, self.y + self.h / 2)

    def to_global(self, px, py):
        """Map a point of the chiplet's own frame to package coordinates (rotate CCW, translate)."""
        cw, ch = self.chiplet.width_mm, self.chiplet.height_mm
        r = self.rotation
        if r == 0:
            gx, gy = px, py
        elif r == 90:
            gx, gy = ch - py, px
        elif r == 180:
            gx, gy = cw - px, ch - py
        else:
            gx, gy = py, cw - px
        return (self.x + gx, self.y + gy)

    def edge(self, local_edge):
        """The package-frame edge (N/E/S/W) a local edge faces after rotation."""
        return EDGES[(EDGES.index(local_edge) - self.rotation // 90) % 4]

    def phy_center(self, phy_name):
        p = self.chiplet.phy(phy_name)
        return self.to_global(*p.center(self.chiplet.width_mm, self.chiplet.height_mm))

    def phy_segment(self, phy_name):
        """The PHY's shoreline as a segment ((x0, y0), (x1, y1)) in package coordinates."""
        p = self.chiplet.phy(phy_name)
        cw, ch = self.chiplet.width_mm, self.chiplet.height_mm
        if p.edge in "NS":
            yy = ch if p.edge == "N" else 0.0
            a, b = (p.offset_mm, yy), (p.offset_mm + p.width_mm, yy)
        else:
            xx = cw if p.edge == "E" else 0.0
            a, b = (xx, p.offset_mm), (xx, p.offset_mm + p.width_mm)
        return self.to_global(*a), self.to_global(*b)


@dataclass(frozen=True)
class Link:
    """A D2D link between two PHYs (``a_die.a_phy`` and ``b_die.b_phy``) of one PHY type."""
    a_die: str
    a_phy: str
    b_die: str
    b_phy: str
    phy: str


@dataclass(frozen=True)
class HbmAttach:
    """An HBM stack die attached to a host die's HBM PHY."""
    stack: str
    host: str
    host_phy: str


@dataclass(frozen=True)
class System:
    name: str
    package: str
    interposer_w: float
    interposer_h: float
    dies: tuple
    links: tuple = ()
    hbm: tuple = ()
    description: str = ""

    @cached_property
    def die_map(self):
        return {d.name: d for d in self.dies}

    def die(self, name):
        return self.die_map[name]

    @property
    def interposer_area_mm2(self):
        return self.interposer_w * self.interposer_h

    @property
    def compute_dies(self):
        return tuple(d for d in self.dies if d.chiplet.kind == "compute")

    @property
    def memory_dies(self):
        return tuple(d for d in self.dies if d.chiplet.kind == "memory")

    def stacks_of(self, host):
        """HBM stack dies attached to ``host``."""
        return tuple(self.die(h.stack) for h in self.hbm if h.host == host)

    def hbm_bandwidth_gbs(self, host):
        return sum(s.chiplet.memory.bandwidth_gbs for s in self.stacks_of(host))

    @property
    def die_area_mm2(self):
        return sum(d.chiplet.area_mm2 for d in self.dies)


def _ref(field, text, dies):
    if not isinstance(text, str) or text.count(".") != 1:
        raise ConfigError(field, f"must be 'die.phy', not {text!r}")
    die, phy = text.split(".")
    if die not in dies:
        raise ConfigError(field, f"unknown die {die!r}; dies are {', '.join(dies)}")
    try:
        p = dies[die].chiplet.phy(phy)
    except KeyError:
        names = ", ".join(q.name for q in dies[die].chiplet.phys) or "none"
        raise ConfigError(field, f"die {die!r} ({dies[die].chiplet.name}) has no PHY {phy!r}; "
                          f"its PHYs are {names}") from None
    return die, phy, p


def system_from_dict(d, *, base_dir=None, tech=None, check_placement=True):
    """Build and validate a :class:`System` from a parsed TOML table."""
    tech = tech or load_tech()
    base_dir = Path(base_dir) if base_dir else Path.cwd()
    check_keys("", d, ("name", "package", "interposer", "dies"),
          ("description", "links", "hbm", "chiplets"))
    name = check_name("name", d["name"])
    package = check_choice("package", d["package"], tuple(tech.packages))
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError("description", "must be a string")
    ip = d["interposer"]
    check_keys("interposer", ip, ("width_mm", "height_mm"))
    iw = check_number("interposer.width_mm", ip["width_mm"], lo=0, hi=1000, lo_open=True)
    ih = check_number("interposer.height_mm", ip["height_mm"], lo=0, hi=1000, lo_open=True)
    limit = tech.packages[package].max_area_mm2
    if iw * ih > limit:
        reticle = tech.reticle_mm2
        raise ConfigError("interposer.width_mm",
                          f"interposer {iw:g} x {ih:g} = {iw * ih:.0f} mm^2 "
                          f"({iw * ih / reticle:.2f} reticles) exceeds the {package} package limit "
                          f"of {limit:.0f} mm^2 ({limit / reticle:.2f} reticles)")

    # chiplet descriptors: inline or file, else built-in
    custom = d.get("chiplets", {})
    if not isinstance(custom, dict):
        raise ConfigError("chiplets", "must be a table of descriptors")
    kw = dict(phy_types=set(tech.phys), nodes=set(tech.nodes))
    descriptors = {}
    for key, spec in custom.items():
        where = f"chiplets.{key}"
        if isinstance(spec, dict) and set(spec) == {"file"}:
            if not isinstance(spec["file"], str):
                raise ConfigError(f"{where}.file", "must be a path string")
            path = base_dir / spec["file"]
            descriptors[key] = chiplet_from_dict(read_toml(path, f"{where}.file"), where, **kw)
        else:
            descriptors[key] = chiplet_from_dict(spec, where, **kw)

    raw_dies = d["dies"]
    if not isinstance(raw_dies, list) or not raw_dies:
        raise ConfigError("dies", "must be a non-empty array of tables")
    dies = {}
    for i, r in enumerate(raw_dies):
        w = f"dies[{i}]"
        check_keys(w, r, ("name", "chiplet", "x", "y"), ("rotation",))
        dn = check_name(f"{w}.name", r["name"])
        if dn in dies:
            raise ConfigError(f"{w}.name", f"duplicate die name {dn!r}")
        cref = r["chiplet"]
        if not isinstance(cref, str):
            raise ConfigError(f"{w}.chiplet", f"must be a chiplet name, not {cref!r}")
        if cref in descriptors:
            chip = descriptors[cref]
        else:
            try:
                chip = builtin(cref)
            except ConfigError as e:
                raise ConfigError(f"{w}.chiplet", f"{e.message} (or a key of [chiplets])") from None
            # built-ins are checked against the technology data too
            if chip.node is not None and chip.node not in tech.nodes:
                raise ConfigError(f"{w}.chiplet", f"built-in {cref!r} uses unknown node {chip.node}")
        x = check_number(f"{w}.x", r["x"], lo=0, hi=1000)
        y = check_number(f"{w}.y", r["y"], lo=0, hi=1000)
        rot = check_int(f"{w}.rotation", r.get("rotation", 0), choices=ROTATIONS)
        die = Die(dn, chip, x, y, rot)
        if die.x + die.w > iw + 1e-9:
            raise ConfigError(f"{w}.x", f"die {dn!r} spans x {die.x:g}..{die.x + die.w:g} mm, "
                              f"past the interposer width {iw:g} mm")
        if die.y + die.h > ih + 1e-9:
            raise ConfigError(f"{w}.y", f"die {dn!r} spans y {die.y:g}..{die.y + die.h:g} mm, "
                              f"past the interposer height {ih:g} mm")
        dies[dn] = die

    links, used = [], {}
    raw_links = d.get("links", [])
    if not isinstance(raw_links, list):
        raise ConfigError("links", "must be an array of tables")
    for i, r in enumerate(raw_links):
        w = f"links[{i}]"
        check_keys(w, r, ("a", "b"), ("phy",))
        ends = []
        for side in ("a", "b"):
            die, phy, p = _ref(f"{w}.{side}", r[side], dies)
            if p.kind != "d2d":
                raise ConfigError(f"{w}.{side}", f"PHY {r[side]!r} is an {p.kind} PHY, not d2d")
            if (die, phy) in used:
                raise ConfigError(f"{w}.{side}", f"PHY {r[side]!r} is already used by {used[(die, phy)]}")
            used[(die, phy)] = w
            ends.append((die, phy, p))
        if ends[0][0] == ends[1][0]:
            raise ConfigError(f"{w}.b", "a link must join two different dies")
        ptype = r.get("phy", ends[0][2].type)
        if not isinstance(ptype, str) or ptype not in tech.phys:
            raise ConfigError(f"{w}.phy" if "phy" in r else f"{w}.a",
                              f"unknown PHY {ptype!r}; known PHYs are {', '.join(sorted(tech.phys))}")
        for side, (_, _, p) in zip("ab", ends):
            if p.type != ptype:
                raise ConfigError(f"{w}.{side}", f"PHY type {p.type!r} does not match the link's {ptype!r}")
        kind = tech.packages[package].kind
        if kind not in tech.phys[ptype].packages:
            raise ConfigError(f"{w}.phy" if "phy" in r else f"{w}.a",
                              f"PHY {ptype!r} cannot be used on a {package} ({kind}) package; it "
                              f"needs one of {', '.join(tech.phys[ptype].packages)}")
        links.append(Link(ends[0][0], ends[0][1], ends[1][0], ends[1][1], ptype))

    attaches, stacks_seen, host_used = [], set(), {}
    raw_hbm = d.get("hbm", [])
    if not isinstance(raw_hbm, list):
        raise ConfigError("hbm", "must be an array of tables")
    for i, r in enumerate(raw_hbm):
        w = f"hbm[{i}]"
        check_keys(w, r, ("stack", "host"))
        sname = r["stack"]
        if not isinstance(sname, str) or sname not in dies:
            raise ConfigError(f"{w}.stack", f"unknown die {sname!r}")
        if dies[sname].chiplet.kind != "memory":
            raise ConfigError(f"{w}.stack", f"die {sname!r} is a {dies[sname].chiplet.kind} die, "
                              "not a memory stack")
        if sname in stacks_seen:
            raise ConfigError(f"{w}.stack", f"stack {sname!r} is attached twice")
        stacks_seen.add(sname)
        gen = dies[sname].chiplet.memory.generation
        if gen not in tech.hbms:
            raise ConfigError(f"{w}.stack", f"unknown HBM generation {gen!r}; known are "
                              f"{', '.join(sorted(tech.hbms))}")
        host, hphy, p = _ref(f"{w}.host", r["host"], dies)
        if p.kind != "hbm":
            raise ConfigError(f"{w}.host", f"PHY {r['host']!r} is a {p.kind} PHY, not hbm")
        if dies[host].chiplet.kind == "memory":
            raise ConfigError(f"{w}.host", "a memory stack cannot host another stack")
        if (host, hphy) in host_used:
            raise ConfigError(f"{w}.host", f"PHY {r['host']!r} already hosts {host_used[(host, hphy)]}")
        host_used[(host, hphy)] = sname
        attaches.append(HbmAttach(sname, host, hphy))
    for dn, die in dies.items():
        if die.chiplet.kind == "memory" and dn not in stacks_seen:
            i = list(dies).index(dn)
            raise ConfigError(f"dies[{i}].name", f"memory stack {dn!r} is not attached ([[hbm]])")

    system = System(name, package, iw, ih, tuple(dies.values()), tuple(links), tuple(attaches), desc)
    if check_placement:
        from .placement import check_legal
        check_legal(system, tech)
    return system


def load_system(path=None, *, tech=None, check_placement=True):
    """Load a system TOML file (``None``: the embedded default reference system)."""
    path = Path(path) if path is not None else DEFAULT_PATH
    data = read_toml(path, "FILE")
    return system_from_dict(data, base_dir=path.parent, tech=tech, check_placement=check_placement)


def default_system():
    return load_system(None)
