"""cocotb testbench of ``npu_top``: runs GEMM commands from a job folder (pytest and the CLI).

Job folder ``$DIESTACK_JOB``:

- ``job.json``: ``{"gemms": ["g0", "g1", ...], "backpressure": p, "seed": s}``; each named
  sub-folder holds ``A.npy`` (int8 MxK), ``B.npy`` (int8 KxN), optional ``D.npy`` (int32 MxN)
  and ``job.json`` with ``dataflow`` ("ws"/"os"), ``requant`` ([scale, shift] or null),
  ``relu``, and optional ``pad`` (extra bytes per matrix row, to exercise strides).
- results, per GEMM folder: ``C.npy`` (int32, or int8 when requantized) and ``metrics.json``
  (cycles, compute_cycles = compute span, macs, utilization = M*N*K/(R*C*cycles), all
  performance counters, simulated wall-clock speed, guard-byte check).

External memory is cocotbext-axi's AxiRam; with ``backpressure`` > 0 every AXI channel pauses
randomly with that probability. The GEMMs run one after another on the same design; the
performance counters are cleared before each. The testbench only moves data and reads counters:
the comparison with the golden model is done by the caller.
"""

import json
import os
import random
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from .driver import start_npu

GUARD = 0xA5


def _align(x, a=64):
    return (x + a - 1) // a * a


@cocotb.test()
async def run_gemms(dut):
    job = Path(os.environ["DIESTACK_JOB"])
    spec = json.loads((job / "job.json").read_text())
    seed = int(spec.get("seed", 1))
    rng = random.Random(seed)
    dut._log.info("seed %d", seed)
    gemms = []
    total = 0x1000
    for g in spec["gemms"]:
        d = job / g
        gj = json.loads((d / "job.json").read_text())
        a, b = np.load(d / "A.npy"), np.load(d / "B.npy")
        dm = np.load(d / "D.npy") if (d / "D.npy").exists() else None
        gemms.append((d, gj, a, b, dm))
        m, k = a.shape
        n = b.shape[1]
        pad = int(gj.get("pad", 0))
        total += _align(m * (k + pad)) + _align(k * (n + pad)) + 2 * _align(m * (4 * n + pad)) + 4096
    ram, drv = await start_npu(dut, _align(total, 4096), float(spec.get("backpressure", 0)), rng)
    info = await drv.info()
    dut._log.info("npu %s", info)
    await drv.enable_irq(True)

    if os.environ.get("DIESTACK_NPU_DEBUG"):
        async def mon():
            c = 0
            while True:
                await RisingEdge(dut.clk)
                c += 1
                ev = {n: int(getattr(dut.control, n).value) if getattr(dut.control, n).value.is_resolvable else -1 for n in
                      ("issue", "cmd_done", "perf_clear", "busy", "push")}
                if any(ev[n] for n in ("issue", "cmd_done", "perf_clear", "push")):
                    dut._log.info("cycle %d %s", c, ev)
        cocotb.start_soon(mon())
    base = 0x1000
    for d, gj, a, b, dm in gemms:
        m, k = a.shape
        n = b.shape[1]
        pad = int(gj.get("pad", 0))
        int8 = gj.get("requant") is not None
        eb = 1 if int8 else 4
        lda, ldb, ldc, ldd = k + pad, n + pad, eb * n + pad, 4 * n + pad
        a_addr = base
        b_addr = _align(a_addr + m * lda)
        c_addr = _align(b_addr + k * ldb)
        d_addr = _align(c_addr + m * ldc)
        base = _align(d_addr + m * ldd, 4096)

        def put(addr, mat, ld):
            raw = np.ascontiguousarray(mat).view(np.uint8).reshape(mat.shape[0], -1)
            buf = np.full((mat.shape[0], ld), GUARD, np.uint8)
            buf[:, :raw.shape[1]] = raw
            ram.write(addr, buf.tobytes())

        put(a_addr, a.astype(np.int8), lda)
        put(b_addr, b.astype(np.int8), ldb)
        ram.write(c_addr, bytes([GUARD]) * (m * ldc))
        if dm is not None:
            put(d_addr, dm.astype("<i4"), ldd)
        scale, shift = gj["requant"] if int8 else (1, 0)
        dc0 = await drv.read("DONE_COUNT")
        await drv.clear_counters()
        t0 = time.monotonic()
        await drv.gemm(m=m, n=n, k=k, a=a_addr, lda=lda, b=b_addr, ldb=ldb, c=c_addr, ldc=ldc,
                       d=d_addr if dm is not None else None, ldd=ldd,
                       dataflow=gj.get("dataflow", "ws"), int8=int8, scale=int(scale),
                       shift=int(shift), relu=bool(gj.get("relu", False)), irq=True)
        await drv.wait_irq(poll=32)
        wall = time.monotonic() - t0
        ctr = await drv.counters()
        dc1 = await drv.read("DONE_COUNT")
        if dc1 != dc0 + 1:
            dut._log.warning("DONE_COUNT %d -> %d", dc0, dc1)
        st = await drv.status()
        raw = np.frombuffer(ram.read(c_addr, m * ldc), np.uint8).reshape(m, ldc)
        guard_ok = bool(np.all(raw[:, eb * n:] == GUARD))
        c = raw[:, :eb * n].copy().view(np.int8 if int8 else "<i4").reshape(m, n)
        tmp = d / ".C.npy.tmp.npy"
        np.save(tmp, c.astype(np.int8 if int8 else np.int32))
        os.replace(tmp, d / "C.npy")
        R, C = info["rows"], info["cols"]
        cycles = max(1, ctr["cycles"])
        metrics = {
            "m": m, "n": n, "k": k, "rows": R, "cols": C, "dataflow": gj.get("dataflow", "ws"),
            "cycles": ctr["cycles"], "compute_cycles": ctr["compute_span"],
            "compute_active_cycles": ctr["compute_cycles"], "macs": ctr["macs"],
            "utilization": m * n * k / (R * C * cycles),
            "compute_utilization": m * n * k / (R * C * max(1, ctr["compute_span"])),
            "counters": ctr, "status": st, "guard_ok": guard_ok,
            "sim_seconds": wall, "sim_cycles_per_s": cycles / max(wall, 1e-9),
            "axi_data_width": info["axi_data_width"], "seed": seed,
        }
        (d / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        dut._log.info("%s: %dx%dx%d %s cycles %d span %d util %.3f", d.name, m, n, k,
                      metrics["dataflow"], ctr["cycles"], ctr["compute_span"],
                      metrics["utilization"])
        assert st["error_bits"] == 0, f"seed {seed}: {d.name}: NPU ERROR register {st['error_bits']:#x}"
