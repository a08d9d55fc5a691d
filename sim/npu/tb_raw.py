"""cocotb testbench of ``npu_top``: small GEMMs done by hand with the raw commands.

The GEMM command's hardware tiler is not used: this testbench tiles C = A·B (+ D) itself with
CONFIG, MVIN, PRELOAD, COMPUTE, MVOUT and FENCE through the AXI4-Lite command queue, following
the command semantics documented in hdl/npu/control.py (field layout) and hdl/npu/core.py
(WS/OS tile operations), and writes C back to memory. The comparison with numpy is done by the
caller (tests/npu/test_raw.py); this file checks only the control protocol (DONE_COUNT, STATUS,
ERROR, IRQ_STATUS and the ``irq`` pin).

Job folder ``$DIESTACK_JOB``: ``job.json`` ``{"scenarios": [...], "seed": s, "backpressure": p}``;
each scenario folder holds ``A.npy`` (int8 MxK), ``B.npy`` (int8 KxN), optional ``D.npy`` (int32
MxN) and ``job.json`` (``dataflow`` "ws"/"os", ``requant`` [scale, shift] or null, ``relu``,
``pad``, ``irq`` (true: wait on the interrupt pin; false: poll DONE_COUNT with interrupts
disabled)). Results per scenario: ``C.npy`` (int32, or int8 when requantized) and
``result.json`` (commands, cycles, guard-byte check).

Accumulator rows are shared between scenarios (the same base region, shifted at random), so a
COMPUTE or MVIN that should overwrite meets stale rows of the previous scenario.
"""

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles
from cocotb.utils import get_sim_time

from .driver import (compute_words, config_words, fence_words, mvin_words, mvout_words,
                     preload_words, start_npu)

GUARD = 0x5A
RAM_SIZE = 1 << 20


def plan(rng, R, C, m, n, k, *, dataflow, addrs, has_d, out_int8, relu, scale, shift):
    """The command list of one hand-tiled GEMM (a list of 16-word commands).

    ``addrs``: memory addresses/strides (a, lda, b, ldb, d1, d2, ldd, c, ldc) and local bases
    (a0, b0 scratchpad rows; acc0 accumulator row). Accumulator row of C[i][j]:
    ``acc0 + (j // C) * m + i`` (lane j % C) in both dataflows.
    """
    ad = addrs
    nk, nn, nm = -(-k // R), -(-n // C), -(-m // R)
    cmds = [config_words(dataflow=dataflow, int8=out_int8, relu=relu, scale=scale, shift=shift)]

    def fence():
        if rng.random() < 0.2:
            cmds.append(fence_words())

    # D into the accumulator: D1 overwrites (stale rows there), then D2 is added (D = D1 + D2).
    if has_d:
        for part, acc in ((ad["d1"], False), (ad["d2"], True)):
            cmds.append(mvin_words(addr=part, stride=ad["ldd"], rows=m, row_bytes=4 * n,
                                   local=ad["acc0"], chunk_bytes=0, row_step=1, chunk_step=m,
                                   to_acc=True, accumulate=acc))
        fence()
    if dataflow == "ws":
        # A row i, K chunk kc -> sp row a0 + kc*m + i; B row kk, N tile t -> b0 + t*nk*R + kk
        cmds.append(mvin_words(addr=ad["a"], stride=ad["lda"], rows=m, row_bytes=k,
                               local=ad["a0"], chunk_bytes=R, row_step=1, chunk_step=m))
        cmds.append(mvin_words(addr=ad["b"], stride=ad["ldb"], rows=k, row_bytes=n,
                               local=ad["b0"], chunk_bytes=C, row_step=1, chunk_step=nk * R))
        fence()
        tiles = [(kc, t) for t in range(nn) for kc in range(nk)]
        if rng.random() < 0.5:          # K-outer order: each N tile's partial sums interleave
            tiles = [(kc, t) for kc in range(nk) for t in range(nn)]
        for kc, t in tiles:
            kv, nv = min(R, k - kc * R), min(C, n - t * C)
            cmds.append(preload_words(b_addr=ad["b0"] + t * nk * R + kc * R, k_valid=kv,
                                      n_valid=nv))
            cmds.append(compute_words(a_addr=ad["a0"] + kc * m, b_addr=0,
                                      acc=ad["acc0"] + t * m, rows=m, k_valid=kv, n_valid=nv,
                                      accumulate=has_d or kc > 0))
    else:
        # A rows m0..m0+R-1 of M tile mt, K group g -> sp row a0 + mt*nk*R + g*R + i;
        # B row kk, N tile t -> b0 + t*k + kk
        for mt in range(nm):
            cmds.append(mvin_words(addr=ad["a"] + mt * R * ad["lda"], stride=ad["lda"],
                                   rows=min(R, m - mt * R), row_bytes=k,
                                   local=ad["a0"] + mt * nk * R, chunk_bytes=R, row_step=1,
                                   chunk_step=R))
        cmds.append(mvin_words(addr=ad["b"], stride=ad["ldb"], rows=k, row_bytes=n,
                               local=ad["b0"], chunk_bytes=C, row_step=1, chunk_step=k))
        fence()
        for mt in range(nm):
            for t in range(nn):
                mv, nv = min(R, m - mt * R), min(C, n - t * C)
                # K in one command, or split at a multiple of R (the second part accumulates)
                splits = [(0, k)]
                if k > R and rng.random() < 0.5:
                    k1 = R * rng.randint(1, nk - 1)
                    splits = [(0, k1), (k1, k)]
                for s, (k0, k1) in enumerate(splits):
                    cmds.append(compute_words(
                        a_addr=ad["a0"] + mt * nk * R + k0, a_stride=R,
                        b_addr=ad["b0"] + t * k + k0, acc=ad["acc0"] + t * m + mt * R,
                        rows=k1 - k0, k_valid=mv, n_valid=nv, accumulate=has_d or s > 0))
    fence()
    eb = 1 if out_int8 else 4
    for t in range(nn):
        cmds.append(mvout_words(addr=ad["c"] + t * C * eb, stride=ad["ldc"], rows=m,
                                elems=min(C, n - t * C), acc=ad["acc0"] + t * m))
    return cmds


@cocotb.test()
async def raw_commands(dut):
    job = Path(os.environ["DIESTACK_JOB"])
    spec = json.loads((job / "job.json").read_text())
    seed = int(spec["seed"])
    rng = random.Random(seed)
    dut._log.info("seed %d", seed)
    ram, drv = await start_npu(dut, RAM_SIZE, float(spec.get("backpressure", 0)), rng)
    info = await drv.info()
    R, C = info["rows"], info["cols"]

    # An unknown opcode completes, sets ERROR[3], and W1C clears it.
    done = await drv.read("DONE_COUNT")
    bad = [0] * 16
    bad[0] = 0x7F                     # not an opcode of hdl/npu/control.py
    await drv.push(bad)
    await drv.wait_done(done + 1, timeout_cycles=10_000, poll=8)
    err = await drv.read("ERROR")
    assert err == 0x8, f"seed {seed}: ERROR {err:#x} after an unknown opcode, expected 0x8"
    assert (await drv.status())["error"] == 1, f"seed {seed}: STATUS[3] not set with ERROR"
    await drv.write("ERROR", 0x8)
    assert await drv.read("ERROR") == 0, f"seed {seed}: ERROR not cleared by W1C"
    dut._log.info("unknown opcode: ERROR[3] set and cleared")

    base = 0x1000
    for name in spec["scenarios"]:
        d = job / name
        sj = json.loads((d / "job.json").read_text())
        a, b = np.load(d / "A.npy"), np.load(d / "B.npy")
        dm = np.load(d / "D.npy") if (d / "D.npy").exists() else None
        m, k = a.shape
        n = b.shape[1]
        pad = int(sj.get("pad", 0))
        int8 = sj.get("requant") is not None
        scale, shift = sj["requant"] if int8 else (1, 0)
        eb = 1 if int8 else 4

        def alloc(nbytes):
            nonlocal base
            addr = base + rng.randrange(64)
            base = addr + nbytes + 64
            assert base < RAM_SIZE, "scenario data does not fit the RAM model"
            return addr

        def put(mat, ld):
            raw = np.ascontiguousarray(mat).view(np.uint8).reshape(mat.shape[0], -1)
            buf = np.full((mat.shape[0], ld), GUARD, np.uint8)
            buf[:, :raw.shape[1]] = raw
            addr = alloc(buf.size)
            ram.write(addr, buf.tobytes())
            return addr

        ad = {"lda": k + pad, "ldb": n + pad, "ldd": 4 * n + pad, "ldc": eb * n + pad,
              "a0": rng.randrange(64), "b0": 1024 + rng.randrange(64), "acc0": rng.randrange(32)}
        ad["a"] = put(a.astype(np.int8), ad["lda"])
        ad["b"] = put(b.astype(np.int8), ad["ldb"])
        if dm is not None:
            d1 = np.array([[rng.randrange(-2**31, 2**31) for _ in range(n)] for _ in range(m)],
                          np.int64)
            d2 = (dm.astype(np.int64) - d1 + 2**31) % 2**32 - 2**31      # D1 + D2 = D (wrap)
            ad["d1"] = put(d1.astype("<i4"), ad["ldd"])
            ad["d2"] = put(d2.astype("<i4"), ad["ldd"])
        ad["c"] = alloc(m * ad["ldc"])
        ram.write(ad["c"] - 16, bytes([GUARD]) * (m * ad["ldc"] + 32))

        cmds = plan(rng, R, C, m, n, k, dataflow=sj["dataflow"], addrs=ad,
                    has_d=dm is not None, out_int8=int8, relu=bool(sj.get("relu")),
                    scale=int(scale), shift=int(shift))
        use_irq = bool(sj.get("irq", True))
        cmds[-1][0] |= 1 << 8                           # only the last command raises IRQ
        await drv.enable_irq(use_irq)
        done0 = await drv.read("DONE_COUNT")
        assert not int(dut.irq.value), f"seed {seed}: {name}: irq high before any command"
        t0 = get_sim_time(unit="ns")
        dut._log.info("%s: pushing %d commands", name, len(cmds))
        for w in cmds:
            await drv.push(w)
            if os.environ.get("DIESTACK_NPU_DEBUG"):
                dut._log.info("pushed op %d; DONE_COUNT %d, state %s, core idle %s", w[0] & 0xFF,
                              await drv.read("DONE_COUNT"), dut.control.dispatch_state.value,
                              dut.control.core_idle.value)
        if use_irq:
            await drv.wait_irq(timeout_cycles=2_000_000, poll=8)
            # pending was set by the last command (the only one with the IRQ flag)
            got = await drv.read("DONE_COUNT")
            assert got == done0 + len(cmds), \
                f"seed {seed}: {name}: irq with DONE_COUNT {got}, expected {done0 + len(cmds)}"
        else:
            await drv.wait_done(done0 + len(cmds), timeout_cycles=2_000_000, poll=16)
            assert await drv.read("IRQ_STATUS") == 1, \
                f"seed {seed}: {name}: IRQ_STATUS not pending after the flagged command"
            assert not int(dut.irq.value), f"seed {seed}: {name}: irq high while disabled"
            await drv.enable_irq(True)
            await ClockCycles(dut.clk, 2)
            assert int(dut.irq.value), f"seed {seed}: {name}: irq low once enabled with pending"
            await drv.write("IRQ_STATUS", 1)
        cycles = int((get_sim_time(unit="ns") - t0) // 10)
        await ClockCycles(dut.clk, 2)
        assert not int(dut.irq.value), f"seed {seed}: {name}: irq still high after W1C"
        assert await drv.read("IRQ_STATUS") == 0, f"seed {seed}: {name}: IRQ_STATUS not cleared"
        st = await drv.status()
        assert (st["busy"], st["queue_empty"], st["level"], st["error_bits"]) == (0, 1, 0, 0), \
            f"seed {seed}: {name}: STATUS after the last command {st}"
        assert await drv.read("DONE_COUNT") == done0 + len(cmds)

        raw = np.frombuffer(ram.read(ad["c"] - 16, m * ad["ldc"] + 32), np.uint8)
        guard_ok = bool(np.all(raw[:16] == GUARD) and np.all(raw[-16:] == GUARD))
        rows = raw[16:16 + m * ad["ldc"]].reshape(m, ad["ldc"])
        guard_ok = guard_ok and bool(np.all(rows[:, eb * n:] == GUARD))
        c = rows[:, :eb * n].copy().view(np.int8 if int8 else "<i4").reshape(m, n)
        np.save(d / "C.npy", c.astype(np.int8 if int8 else np.int32))
        ops = {}
        for w in cmds:
            ops[w[0] & 0xFF] = ops.get(w[0] & 0xFF, 0) + 1
        (d / "result.json").write_text(json.dumps({
            "commands": len(cmds), "opcodes": {str(o): c for o, c in sorted(ops.items())},
            "cycles": cycles, "guard_ok": guard_ok, "seed": seed}))
        dut._log.info("%s: %dx%dx%d %s, %d commands %s, %d cycles", name, m, n, k,
                      sj["dataflow"], len(cmds), ops, cycles)
