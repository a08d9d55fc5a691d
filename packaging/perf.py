"""Workload performance: GEMMs and transformer layers mapped across the compute chiplets.

Machine model (:class:`Machine`, numpy-broadcastable so one call evaluates a whole sweep chunk):
``p`` identical compute chiplets, each with ``arrays`` weight-stationary systolic arrays of
``rows`` x ``cols`` MACs at ``clock_hz``, ``hbm_bw`` bytes/s of its own HBM and ``d2d_bw``
bytes/s of D2D ingress for collective traffic.

GEMM ``C[M x N] = A[M x K] B[K x N]`` (``batch`` independent copies), operands of ``a_bytes``,
``b_bytes``, ``c_bytes`` bytes per element (0: the operand stays on chip). Mappings:

* ``split_n`` -- B (weights) sharded by columns, ``Nc = ceil(N/p)`` per chiplet; A starts
  sharded by rows in the chiplets' HBM and is all-gathered: each chiplet reads ``M K a / p`` from
  HBM and receives ``(p-1)/p M K a`` over D2D; reads ``K Nc b``, writes ``M Nc c``.
* ``split_m`` -- B replicated in every chiplet's HBM, A split by rows ``Mc = ceil(M/p)``: reads
  ``Mc K a + K N b``, writes ``Mc N c``; no D2D.
* ``split_batch`` -- for batched GEMMs whose B differs per batch element (attention over a KV
  cache): ``ceil(batch/p)`` whole GEMMs per chiplet, no D2D.

The faster legal mapping is taken. Per chiplet (double-buffered, so the three overlap):

* compute: the K x Nc weight tiles (``ceil(K/R) ceil(Nc/C)`` per batch element) are spread over
  the arrays in ``ceil(tiles/arrays)`` rounds; each round streams ``max(Mc, R)`` rows (the R-cycle
  weight load hides behind the stream only when Mc >= R), plus the first weight load and the
  skew/drain once (npu.md "Limits"): ``t_compute = (rounds x max(Mc, R) + 2R + C - 2) / f``;
* HBM: bytes / ``hbm_bw``; D2D: received bytes / ``d2d_bw``;
* ``time = max(compute, HBM, D2D)``; ``bound`` names the largest.

Energy = MACs x ``mac_pj`` + HBM bits x ``hbm_pj`` + D2D bits x hops x ``d2d_pj`` + SRAM bits x
``sram_pj`` (8 (R + C) bits per array per busy cycle, as ``power.py``) + static power x time +
other dynamic power x compute-busy time.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Machine", "Gemm", "Transformer", "machine_from_system", "gemm", "run_ops",
           "transformer_ops", "roofline", "BOUNDS", "MAPPINGS", "workload_report"]

BOUNDS = ("compute", "hbm", "d2d")
MAPPINGS = ("split_n", "split_m", "split_batch")


@dataclass(frozen=True)
class Machine:
    """Per-chiplet figures of a system of ``p`` identical compute chiplets (scalars or arrays)."""
    p: object
    arrays: object
    rows: object
    cols: object
    clock_hz: object
    hbm_bw: object             # bytes/s per chiplet
    d2d_bw: object             # bytes/s D2D ingress per chiplet (collectives)
    mac_pj: object
    sram_pj_bit: object
    hbm_pj_bit: object
    d2d_pj_bit: object
    d2d_hops: object = 1.0     # mean links crossed per collective byte
    static_w: object = 0.0     # whole system
    other_w: object = 0.0      # whole system dynamic power at activity 1 beyond MAC/SRAM

    @property
    def peak_ops_chiplet(self):
        return 2.0 * np.asarray(self.arrays) * self.rows * self.cols * self.clock_hz

    @property
    def peak_ops(self):
        return self.peak_ops_chiplet * self.p


@dataclass(frozen=True)
class Gemm:
    name: str
    m: int
    n: int
    k: int
    batch: int = 1
    a_bytes: float = 1.0
    b_bytes: float = 1.0
    c_bytes: float = 1.0
    b_shared: bool = True      # False: each batch element has its own B (attention over KV)

    @property
    def macs(self):
        return self.m * self.n * self.k * self.batch


@dataclass(frozen=True)
class Transformer:
    """One transformer configuration; ``phase`` is ``prefill`` (``seq_len`` new tokens per
    sequence) or ``decode`` (one new token per sequence attending to ``seq_len`` cached ones)."""
    name: str = "llm"
    d_model: int = 4096
    n_heads: int = 32
    d_ff: int = 16384
    n_layers: int = 32
    seq_len: int = 2048
    batch: int = 8
    bytes_per_el: float = 1.0
    phase: str = "prefill"

    def tokens(self):
        return self.batch * (self.seq_len if self.phase == "prefill" else 1)


def _ceil(a, b):
    return np.ceil(np.asarray(a, float) / b)


def gemm(mc, g):
    """Evaluate one GEMM on machine ``mc``. Returns a dict of (broadcast) arrays."""
    p = np.asarray(mc.p, float)
    R, C, arrays = mc.rows, mc.cols, mc.arrays
    f = mc.clock_hz

    def compute_time(M, N, batch_c):
        tiles = batch_c * _ceil(g.k, R) * _ceil(N, C)
        rounds = _ceil(tiles, arrays)
        # npu.md "Limits": R (first weight load) + tiles x max(M, R) + (R + C - 2) (skew/drain)
        cycles = rounds * np.maximum(M, R) + 2 * R + C - 2
        return cycles / f, cycles

    cands = []
    if g.b_shared:
        # split_n
        Nc = _ceil(g.n, p)
        tc, cyc = compute_time(g.m, Nc, g.batch)
        hbm = g.batch * (g.m * g.k * g.a_bytes / p + g.k * Nc * g.b_bytes + g.m * Nc * g.c_bytes)
        d2d = g.batch * (p - 1) / p * g.m * g.k * g.a_bytes
        cands.append(("split_n", tc, cyc, hbm, d2d))
        # split_m
        Mc = _ceil(g.m, p)
        tc, cyc = compute_time(Mc, g.n, g.batch)
        hbm = g.batch * (Mc * g.k * g.a_bytes + g.k * g.n * g.b_bytes + Mc * g.n * g.c_bytes)
        cands.append(("split_m", tc, cyc, hbm, np.zeros_like(hbm)))
    else:
        bc = _ceil(g.batch, p)
        tc, cyc = compute_time(g.m, g.n, bc)
        hbm = bc * (g.m * g.k * g.a_bytes + g.k * g.n * g.b_bytes + g.m * g.n * g.c_bytes)
        cands.append(("split_batch", tc, cyc, hbm, np.zeros_like(hbm)))

    best = None
    for name, tc, cyc, hbm, d2d in cands:
        th = hbm / mc.hbm_bw
        with np.errstate(divide="ignore", invalid="ignore"):
            td = np.where(d2d > 0, d2d / mc.d2d_bw, 0.0)
        t = np.maximum(np.maximum(tc, th), td)
        bound = np.argmax(np.stack(np.broadcast_arrays(tc, th, td)), axis=0)
        cand = dict(mapping=MAPPINGS.index(name), time_s=t, t_compute_s=tc, t_hbm_s=th, t_d2d_s=td, bound=bound,
                    cycles=cyc, hbm_bytes_chiplet=hbm, d2d_bytes_chiplet=d2d)
        if best is None:
            best = cand
        else:
            better = t < best["time_s"]
            best = {k: np.where(better, cand[k], best[k]) for k in best}
    r = best
    macs = float(g.macs)
    hbm_total = r["hbm_bytes_chiplet"] * p
    d2d_total = r["d2d_bytes_chiplet"] * p
    sram_bits = r["cycles"] * arrays * 8.0 * (R + C) * p
    e_mac = macs * mc.mac_pj * 1e-12
    e_hbm = hbm_total * 8 * mc.hbm_pj_bit * 1e-12
    e_d2d = d2d_total * 8 * mc.d2d_hops * mc.d2d_pj_bit * 1e-12
    e_sram = sram_bits * mc.sram_pj_bit * 1e-12
    e_static = r["time_s"] * mc.static_w + r["t_compute_s"] * mc.other_w
    r.update(name=g.name, macs=macs, ops=2 * macs, hbm_bytes=hbm_total, d2d_bytes=d2d_total,
             energy_j=e_mac + e_hbm + e_d2d + e_sram + e_static,
             energy_breakdown_j={"mac": e_mac, "hbm": e_hbm, "d2d": e_d2d, "sram": e_sram,
                                 "static_other": e_static},
             achieved_ops=2 * macs / r["time_s"],
             intensity_ops_per_byte=np.where(hbm_total > 0, 2 * macs / np.maximum(hbm_total, 1e-30),
                                             np.inf))
    return r


def transformer_ops(t):
    """The GEMMs of one transformer layer (see the module docstring for the operand bytes)."""
    if t.phase not in ("prefill", "decode"):
        raise ValueError(f"phase must be prefill or decode, not {t.phase!r}")
    b = t.bytes_per_el
    dh = t.d_model // t.n_heads
    T = t.tokens()
    sq = t.seq_len if t.phase == "prefill" else 1
    skv = t.seq_len
    bh = t.batch * t.n_heads
    return [
        Gemm("qkv", T, 3 * t.d_model, t.d_model, 1, b, b, b),
        # scores = Q K^T per (sequence, head): B = the K cache; scores stay on chip (flash-style)
        Gemm("scores", sq, skv, dh, bh, b, b, 0.0, b_shared=False),
        # context = softmax(scores) V: A = probabilities on chip, B = the V cache
        Gemm("context", sq, dh, skv, bh, 0.0, b, b, b_shared=False),
        Gemm("out_proj", T, t.d_model, t.d_model, 1, b, b, b),
        Gemm("ffn_up", T, t.d_ff, t.d_model, 1, b, b, b),
        Gemm("ffn_down", T, t.d_model, t.d_ff, 1, b, b, b),
    ]


def run_ops(mc, ops, repeat=1):
    """Run GEMMs back to back (``repeat`` times, e.g. layers). Totals plus per-op results."""
    res = [gemm(mc, g) for g in ops]
    time = sum(r["time_s"] for r in res) * repeat
    energy = sum(r["energy_j"] for r in res) * repeat
    ops_total = sum(r["ops"] for r in res) * repeat
    bound_time = [sum(np.where(r["bound"] == i, r["time_s"], 0.0) for r in res) * repeat
                  for i in range(3)]
    dominant = np.argmax(np.stack(np.broadcast_arrays(*bound_time)), axis=0)
    return {"time_s": time, "energy_j": energy, "ops": ops_total,
            "achieved_ops": ops_total / time, "bound_time_s": dict(zip(BOUNDS, bound_time)),
            "bound": dominant, "per_op": res}


def roofline(mc):
    """Roofline figures per chiplet and for the system (ops/s, bytes/s, ridge ops/byte)."""
    chip = {"peak_ops": mc.peak_ops_chiplet, "hbm_bw": mc.hbm_bw,
            "ridge_ops_per_byte": mc.peak_ops_chiplet / mc.hbm_bw, "d2d_bw": mc.d2d_bw}
    system = {"peak_ops": mc.peak_ops, "hbm_bw": mc.hbm_bw * mc.p,
              "ridge_ops_per_byte": mc.peak_ops / (mc.hbm_bw * mc.p)}
    return {"chiplet": chip, "system": system}


def machine_from_system(system, tech):
    """A :class:`Machine` for a placed system (its compute dies must be identical)."""
    from .topology import build_graph, evaluate_traffic, traffic_pattern
    comp = system.compute_dies
    if not comp:
        raise ValueError(f"system {system.name!r} has no compute dies")
    specs = {(d.chiplet.compute.arrays, d.chiplet.compute.rows, d.chiplet.compute.cols,
              d.chiplet.compute.clock_ghz) for d in comp}
    if len(specs) != 1:
        raise ValueError("the perf model maps work over identical compute chiplets; "
                         f"found {len(specs)} different compute specs")
    cs = comp[0].chiplet.compute
    p = len(comp)
    hbm_bw = min(system.hbm_bandwidth_gbs(d.name) for d in comp) * 1e9
    stacks = system.memory_dies
    hbm_pj = (sum(s.chiplet.memory.energy_pj_per_bit for s in stacks) / len(stacks)) if stacks else 0.0
    g = build_graph(system, tech)
    if p > 1:
        tr = evaluate_traffic(g, traffic_pattern(g, "all_to_all_compute"))
        d2d_bw = tr["throughput_gbs"] / p * 1e9
        hops = tr["mean_hops"]
        if tr["unroutable"]:       # compute dies that cannot reach each other: no collectives
            d2d_bw = 1e-30
    else:
        d2d_bw, hops = float("inf"), 0.0
    pj = [e["pj_per_bit"] for _, _, e in g.edges(data=True)]
    return Machine(p=p, arrays=cs.arrays, rows=cs.rows, cols=cs.cols, clock_hz=cs.clock_ghz * 1e9,
                   hbm_bw=hbm_bw if hbm_bw > 0 else 1e-30, d2d_bw=d2d_bw,
                   mac_pj=cs.mac_energy_pj, sram_pj_bit=cs.sram_energy_pj_per_bit,
                   hbm_pj_bit=hbm_pj, d2d_pj_bit=(sum(pj) / len(pj)) if pj else 0.0,
                   d2d_hops=hops,
                   static_w=sum(d.chiplet.power_static_w for d in system.dies),
                   other_w=sum(d.chiplet.power_dynamic_w for d in system.dies
                               if d.chiplet.kind != "memory"))


def _scalar(x):
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x.tolist()


def workload_report(mc, workloads):
    """Scalar summary of named workloads (GEMM or Transformer) on a scalar machine."""
    out = {}
    for w in workloads:
        if isinstance(w, Transformer):
            r = run_ops(mc, transformer_ops(w), repeat=w.n_layers)
            extra = {"tokens_per_s": w.tokens() / float(r["time_s"]), "phase": w.phase,
                     "tokens": w.tokens()}
        else:
            r = run_ops(mc, [w])
            extra = {"m": w.m, "n": w.n, "k": w.k}
        out[w.name] = {
            "time_s": _scalar(r["time_s"]), "energy_j": _scalar(r["energy_j"]),
            "achieved_tops": _scalar(r["achieved_ops"]) / 1e12,
            "utilization": _scalar(r["achieved_ops"] / mc.peak_ops),
            "bound": BOUNDS[int(r["bound"])],
            "bound_time_s": {k: _scalar(v) for k, v in r["bound_time_s"].items()},
            "avg_power_w": _scalar(r["energy_j"] / r["time_s"]),
            "ops": [{"name": o["name"], "mapping": MAPPINGS[int(o["mapping"])], "time_s": _scalar(o["time_s"]),
                     "bound": BOUNDS[int(o["bound"])], "macs": o["macs"],
                     "hbm_bytes": _scalar(o["hbm_bytes"]), "d2d_bytes": _scalar(o["d2d_bytes"]),
                     "intensity": _scalar(o["intensity_ops_per_byte"]),
                     "achieved_tops": _scalar(o["achieved_ops"]) / 1e12,
                     "energy_j": _scalar(o["energy_j"])} for o in r["per_op"]],
            **extra}
    return out


