"""Model vs published figures for configs modelled on real systems (H100, H200, B200, MI300X, M1 Ultra).

The configs are data (``packaging/data/validation.toml``, values and tags from system.md §4).
For each system the model computes, from the config alone:

* **memory bandwidth** = channels x bus width x pin rate / 8 (bus width from ``hbm.toml`` for
  HBM; the pin rates are the per-stack rates system.md §4 back-solves, not JEDEC maxima);
* **dense BF16/FP16 throughput** = units x FLOP/clock/unit x clock;
* **die area vs the reticle** (858 mm²) and **interposer area** = the interposer package's area
  scale (CA: 1.1) x (dies on the interposer + HBM footprints), vs the package limit and, where
  known, the published area;
* **D2D feasibility**: shoreline needed to carry the published die-to-die bandwidth at a PHY's
  density (phys.toml) against the die edge available.

Each row carries the tag of its published value (``page``, ``recall``, ``derived``) and of the
model's inputs. Gating policy (``summary()``, exit code of ``diestack system validate``): a row
*gates* when it is a memory-bandwidth or dense-throughput row (target |error| <= 2%) whose
published value is not [recall]. A gated miss fails the validation unless the config declares a
``known_deviation`` (shown in the table as ``MISS*`` with the reason). [recall] rows are
reported with their error and never gate; area and D2D rows are sanity checks (``ok``/``over``)
and never gate.
"""

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..hdl.common.params import ConfigError, check_int, check_number
from .tech import DATA_DIR, load_tech

__all__ = ["load_systems", "validate", "summary", "TARGET_PCT", "TAGS"]

TARGET_PCT = 2.0           # issue 5 target: memory bandwidth and dense throughput within 2%
TAGS = ("page", "recall", "derived", "assumption", "code")
GATED_METRICS = ("memory_bw", "dense_throughput")


@dataclass(frozen=True)
class Row:
    system: str
    metric: str
    model: float
    published: float | None
    unit: str
    tag: str                 # tag of the published value
    inputs_tag: str          # tag of the model inputs
    status: str              # ok | MISS | MISS* | recall | over | info
    error_pct: float | None = None
    note: str = ""

    @property
    def gated(self):
        return self.metric in GATED_METRICS and self.published is not None and self.tag != "recall"

    def as_dict(self):
        return {"system": self.system, "metric": self.metric, "model": self.model,
                "published": self.published, "unit": self.unit, "error_pct": self.error_pct,
                "tag": self.tag, "inputs_tag": self.inputs_tag, "status": self.status,
                "gated": self.gated, "note": self.note}


def _tag(value, field):
    if value not in TAGS:
        raise ConfigError(field, f"must be one of {', '.join(TAGS)}, not {value!r}")
    return value


def _get(table, key, field, kind="number", **kw):
    if key not in table:
        raise ConfigError(f"{field}.{key}", "missing")
    v = table[key]
    if kind == "int":
        return check_int(f"{field}.{key}", v, **kw)
    if kind == "str":
        if not isinstance(v, str):
            raise ConfigError(f"{field}.{key}", f"must be a string, not {v!r}")
        return v
    return check_number(f"{field}.{key}", v, **kw)


_KEYS = {
    "": {"name", "package", "dies", "memory", "compute", "interposer", "d2d"},
    "memory": {"kind", "channels", "sites", "bus_bits", "pin_gbps", "pin_tag", "published_gbyte_s",
               "published_tag", "known_deviation"},
    "compute": {"units", "unit", "flop_per_clk_per_unit", "clock_ghz", "inputs_tag",
                "published_tflops", "published_tag", "metric", "known_deviation"},
    "interposer": {"published_mm2", "published_tag", "hybrid_bonded"},
    "d2d": {"published_gbyte_s", "published_tag", "phy", "edge_mm", "both_directions"},
}


def _check_keys(table, allowed, field):
    if not isinstance(table, dict):
        raise ConfigError(field, "must be a table")
    for k in table:
        if k not in allowed:
            raise ConfigError(f"{field}.{k}", f"unknown key; allowed: {', '.join(sorted(allowed))}")


def load_systems(path=None):
    """Read and check the validation configs; returns ``{key: dict}`` (errors name the field)."""
    path = Path(path) if path else DATA_DIR / "validation.toml"
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(path.name, f"bad TOML: {e}") from None
    except OSError as e:
        raise ConfigError(path.name, f"cannot read {path}: {e.strerror}") from None
    _check_keys(doc, {"systems"}, path.name)
    systems = doc.get("systems")
    if not isinstance(systems, dict) or not systems:
        raise ConfigError("systems", "no systems defined")
    for key, s in systems.items():
        f = f"systems.{key}"
        _check_keys(s, _KEYS[""], f)
        for sub in ("memory", "compute", "interposer", "d2d"):
            if sub in s:
                _check_keys(s[sub], _KEYS[sub], f"{f}.{sub}")
        for sub in ("name", "package", "dies", "memory", "compute"):
            if sub not in s:
                raise ConfigError(f"{f}.{sub}", "missing")
        dies = s["dies"]
        if not isinstance(dies, list) or not dies:
            raise ConfigError(f"{f}.dies", "a list of [name, area_mm2, count, tag]")
        for i, d in enumerate(dies):
            if not (isinstance(d, list) and len(d) == 4 and isinstance(d[0], str)):
                raise ConfigError(f"{f}.dies[{i}]", "expected [name, area_mm2, count, tag]")
            check_number(f"{f}.dies[{i}].area_mm2", d[1], lo=0, lo_open=True)
            check_int(f"{f}.dies[{i}].count", d[2], lo=1)
            _tag(d[3], f"{f}.dies[{i}].tag")
    return systems


def _pct(model, published):
    return (model / published - 1.0) * 100.0


def _gated_status(err, tag, known):
    if tag == "recall":
        return "recall"
    if abs(err) <= TARGET_PCT:
        return "ok"
    return "MISS*" if known else "MISS"


def validate(tech=None, systems=None):
    """Compute every row for every system; returns a list of :class:`Row`."""
    tech = tech or load_tech()
    systems = load_systems() if systems is None else systems
    rows = []
    for key, s in systems.items():
        f = f"systems.{key}"
        name = s["name"]
        pkg = tech.package(s["package"], field=f"{f}.package")

        # memory bandwidth
        m = s["memory"]
        mf = f"{f}.memory"
        kind = _get(m, "kind", mf, "str")
        channels = _get(m, "channels", mf, "int", lo=1)
        pin = _get(m, "pin_gbps", mf, lo=0, lo_open=True)
        if "bus_bits" in m:
            bus = _get(m, "bus_bits", mf, "int", lo=1)
        else:
            bus = tech.hbm(kind, field=f"{mf}.kind").bus_bits
        model_bw = channels * bus * pin / 8.0
        pub = _get(m, "published_gbyte_s", mf, lo=0, lo_open=True)
        tag = _tag(m.get("published_tag", "page"), f"{mf}.published_tag")
        err = _pct(model_bw, pub)
        known = m.get("known_deviation", "")
        rows.append(Row(name, "memory_bw", model_bw, pub, "GB/s", tag,
                        _tag(m.get("pin_tag", "page"), f"{mf}.pin_tag"),
                        _gated_status(err, tag, known), err,
                        f"{channels} x {bus} b x {pin:g} Gb/s {kind}" + (f"; {known}" if known else "")))

        # dense throughput
        c = s["compute"]
        cf = f"{f}.compute"
        units = _get(c, "units", cf, "int", lo=1)
        fpc = _get(c, "flop_per_clk_per_unit", cf, lo=0, lo_open=True)
        clk = _get(c, "clock_ghz", cf, lo=0, lo_open=True)
        model_tf = units * fpc * clk / 1000.0
        pub = _get(c, "published_tflops", cf, lo=0, lo_open=True)
        tag = _tag(c.get("published_tag", "page"), f"{cf}.published_tag")
        err = _pct(model_tf, pub)
        known = c.get("known_deviation", "")
        metric = c.get("metric", "BF16/FP16")
        rows.append(Row(name, "dense_throughput", model_tf, pub, "TFLOP/s", tag,
                        _tag(c.get("inputs_tag", "page"), f"{cf}.inputs_tag"),
                        _gated_status(err, tag, known), err,
                        f"{metric}: {units} {c.get('unit', 'units')} x {fpc:g} FLOP/clk x {clk:g} GHz"
                        + (f"; {known}" if known else "")))

        # die area vs reticle
        ret = tech.reticle_mm2
        for i, (dname, area, count, dtag) in enumerate(s["dies"]):
            rows.append(Row(name, f"die_area:{dname}", area / ret, None, "x reticle", dtag, dtag,
                            "ok" if area <= ret else "over", None,
                            f"{count} x {area:g} mm2 vs reticle {ret:g} mm2"))

        # interposer area (2.5D systems)
        ip = s.get("interposer", {})
        sites = check_int(f"{mf}.sites", m.get("sites", channels), lo=0)
        if pkg.kind == "interposer" or (pkg.kind == "bridge" and sites):
            # a full interposer (CoWoS-S) or CoWoS-L's RDL interposer with bridges; a bare
            # bridge between two dies (UltraFusion) has no interposer area to compare
            stacked = set(ip.get("hybrid_bonded", []))
            on_ip = sum(a * n for dn, a, n, _ in s["dies"] if dn not in stacked)
            hbm_area = 0.0
            if sites and kind in tech.hbms:
                hbm_area = sites * tech.hbm(kind).area_mm2
            scale = tech.package("interposer").interposer_area_scale
            model_ip = scale * (on_ip + hbm_area)
            limit = pkg.max_area_mm2
            pub_ip = ip.get("published_mm2")
            ptag = _tag(ip.get("published_tag", "page"), f"{f}.interposer.published_tag")
            status = "ok" if model_ip <= limit else "over"
            rows.append(Row(name, "interposer_area", model_ip, pub_ip, "mm2",
                            ptag if pub_ip else "assumption", "assumption", status,
                            _pct(model_ip, pub_ip) if pub_ip else None,
                            f"{scale:g} x ({on_ip:g} dies + {hbm_area:g} HBM) = {model_ip / ret:.2f} x reticle; "
                            f"{pkg.name} limit {limit:g} mm2"))

        # D2D feasibility
        d = s.get("d2d")
        if d:
            df = f"{f}.d2d"
            phy = tech.phy(_get(d, "phy", df, "str"), field=f"{df}.phy")
            pub = _get(d, "published_gbyte_s", df, lo=0, lo_open=True)
            edge = _get(d, "edge_mm", df, lo=0, lo_open=True)
            dirs = 2.0 if d.get("both_directions", True) else 1.0
            per_mm = phy.shoreline_gbyte_s_per_mm * dirs
            capacity = per_mm * edge
            need = pub / per_mm
            rows.append(Row(name, "d2d_bw", capacity, pub, "GB/s",
                            _tag(d.get("published_tag", "page"), f"{df}.published_tag"), "assumption",
                            "ok" if need <= edge else "over", None,
                            f"{phy.name} {per_mm:g} GB/s/mm: {need:.1f} mm of {edge:g} mm edge needed"))
    return rows


def summary(rows):
    """``{"passed": bool, "gated": n, "misses": [...], "known": [...], "recall": [...]}``."""
    gated = [r for r in rows if r.gated]
    misses = [f"{r.system} {r.metric}: {r.error_pct:+.2f}%" for r in gated if r.status == "MISS"]
    known = [f"{r.system} {r.metric}: {r.error_pct:+.2f}% ({r.note})" for r in gated if r.status == "MISS*"]
    recall = [f"{r.system} {r.metric}" for r in rows if r.tag == "recall" and r.published is not None]
    within = [r for r in rows if r.metric in GATED_METRICS and r.error_pct is not None
              and abs(r.error_pct) <= TARGET_PCT]
    return {"passed": not misses, "gated": len(gated), "misses": misses, "known_deviations": known,
            "recall_rows": recall, "target_pct": TARGET_PCT,
            "within_target": len(within),
            "target_rows": sum(1 for r in rows if r.metric in GATED_METRICS)}
