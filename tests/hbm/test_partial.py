"""Partial writes, narrow / FIXED / WRAP AXI bursts and ECC read-modify-write on ``hbm_top``
(cocotb, ``sim/hbm/tb_partial.py``), against a bus-level golden written from the AXI spec and the
JEDEC-checking device model (zero timing violations required).

Default suite: ECC on and off, Icarus (builds in seconds). 600 operations each run under the slow
mark on $SIM (default Verilator). Seed: $DIESTACK_SEED (printed).
"""

import json
import os

import pytest

from diestack.flows.hbm import gen_verilog, make_config
from diestack.sim import runner

SEED = int(os.environ.get("DIESTACK_SEED", "20261130"))
print(f"HBM partial-write tests: seed {SEED} (set DIESTACK_SEED to override)")

# same configuration as test_controller's default-suite build (shared through the build cache)
CONFIG = dict(preset="hbm2", queue_depth=16, overrides={"tREFI": 1200})


def run_partial(*, ecc, sim, seed, ops, inject, job_dir, backpressure=0.2, workers=6):
    """Build ``hbm_top`` and run ``tb_partial``; return its results dict."""
    cfg = make_config(**CONFIG, ecc=ecc)
    job_dir.mkdir(parents=True, exist_ok=True)
    v, _ = gen_verilog(cfg, job_dir / "rtl")
    b = runner.build([v], "hbm_top", sim=sim)
    t = cfg.timing
    spec = {"preset": t.preset, "overrides": t.as_dict() | {k: getattr(t, k) for k in
                                                           ("sids", "bank_groups",
                                                            "banks_per_group", "rows")},
            "ecc": ecc, "addrmap": cfg.addrmap.as_dict(), "ops": ops, "workers": workers,
            "window": 2048, "base": 0x10000, "inject": inject, "backpressure": backpressure,
            "seed": seed}
    (job_dir / "job.json").write_text(json.dumps(spec))
    r = runner.run(b, "diestack.sim.hbm.tb_partial", extra_env={"DIESTACK_JOB": str(job_dir)},
                   seed=seed, test_dir=job_dir / "run")
    res_path = job_dir / "results.json"
    res = json.loads(res_path.read_text()) if res_path.exists() else None
    r.check()
    assert res is not None, f"tb_partial wrote no results (log {r.log})"
    return res


def _check(res, ecc):
    assert res["mismatches"] == 0 and not res["errors"], f"seed {SEED}: {res}"
    assert res["device"]["timing_violations"] == 0, f"seed {SEED}"
    c = res["counts"]
    for kind in ("write incr", "write incr narrow", "write fixed", "write wrap", "read wrap",
                 "read incr narrow", "read fixed", "sparse writes"):
        assert sum(v for k, v in c.items() if k.startswith(kind)) > 0, \
            f"no '{kind}' operation in the mix (seed {SEED}): {c}"
    if ecc:
        st = res["stat"]
        # every partial write does one internal read: more RD commands than host read beats
        assert st["rd"] + st["rda"] > res["r_beats"], f"no read-modify-write seen: {st}"


def _need(sim):
    if sim not in runner.available():
        pytest.skip(f"{sim} not installed")


@pytest.mark.parametrize("ecc", [True, False], ids=["ecc", "noecc"])
def test_partial_narrow_wrap_icarus(ecc, tmp_path):
    _need("icarus")
    res = run_partial(ecc=ecc, sim="icarus", seed=SEED, ops=55 if ecc else 40, inject=6 if ecc else 0,
                      job_dir=tmp_path / "job")
    _check(res, ecc)
    if ecc:
        assert len(res["inject"]) == 6


SLOW_SIM = os.environ.get("SIM") or "verilator"     # slow tests: one simulator, $SIM


@pytest.mark.slow
@pytest.mark.parametrize("ecc", [True, False], ids=["ecc", "noecc"])
def test_partial_narrow_wrap_long(ecc, tmp_path):
    _need(SLOW_SIM)
    res = run_partial(ecc=ecc, sim=SLOW_SIM, seed=SEED + 1, ops=600, inject=12 if ecc else 0,
                      job_dir=tmp_path / "job", workers=12)
    _check(res, ecc)
