"""The fast testbench driver (sim/hbm/axi_host.py in one clock loop) and the benchmark flows built
on it: progress reporting, the 1M-command run at a small size, and a cross-check against the
cocotbext-axi driver (slow)."""

import json
import os
import random
import threading
import time

import pytest

from diestack.flows.cli import main
from diestack.flows.hbm import _poll, make_config, make_requests, simulate
from diestack.sim import runner

SEED = int(os.environ.get("DIESTACK_SEED", random.randrange(1 << 30)))


def test_poll_reports_each_change_once(tmp_path):
    path = tmp_path / "progress.json"
    seen = []
    stop = threading.Event()
    t = threading.Thread(target=_poll, args=(path, seen.append, stop, 0.02), daemon=True)
    t.start()
    try:
        for done in (0, 5, 5, 9):
            path.write_text(json.dumps({"done": done, "total": 9}))
            time.sleep(0.15)
        path.write_text("{not json")          # a torn write is skipped, not fatal
        time.sleep(0.1)
    finally:
        stop.set()
        t.join()
    assert [o["done"] for o in seen] == [0, 5, 9]


def _icarus():
    if "icarus" not in runner.available():
        pytest.skip("icarus not installed (the Verilator build of this configuration is slow)")
    return "icarus"


def test_million_flow_small_on_icarus(tmp_path, capfd):
    """`bench hbm --million-only` at 300 requests: data checked, zero violations, JSON written."""
    sim = _icarus()
    print(f"seed {SEED}")
    out = tmp_path / "bench.json"
    rc = main(["bench", "hbm", "--million-only", "--million-requests", "300", "--sim", sim,
               "--seed", str(SEED), "--json", "-o", str(out)])
    text = capfd.readouterr().out    # the simulator writes to fd 1 too: the JSON object is last
    obj = json.loads(text[text.rindex("\n{") + 1:] if not text.startswith("{") else text)
    assert rc == 0, f"seed {SEED}: {obj}"
    m = obj["million"]
    assert m == json.loads(out.read_text())["million"]
    assert m["requests"] == 300 and m["timing_violations"] == 0 and m["mismatches"] == 0, f"seed {SEED}"
    # 300 random 64 B requests over 16 banks x 4 bank groups: nearly every one opens a row
    assert m["commands_by_type"]["ACT"] > 200 and m["commands"] > 3 * 300 - 100, f"seed {SEED}: {m}"


@pytest.mark.slow
def test_fast_and_cocotbext_drivers_agree(tmp_path):
    """The same mixed traffic (1..4-beat bursts, 4 IDs, back-pressure) through both drivers:
    both see every read return the last data written, zero violations, the same bytes."""
    sim = os.environ.get("SIM") or "verilator"
    if sim not in runner.available():
        pytest.skip(f"{sim} not installed")
    print(f"seed {SEED}")
    cfg = make_config("hbm2", queue_depth=16, ecc=True, overrides={"tREFI": 1200})
    reqs = make_requests("mixed", 200, cfg, seed=SEED)
    rng = random.Random(SEED)
    for r in reqs:
        r[2] = rng.choice((1, 2, 2, 4))
    out = {}
    for driver in ("fast", "cocotbext"):
        res = simulate(cfg, reqs, sim=sim, seed=SEED, ids=4, backpressure=0.3, driver=driver,
                       job_dir=tmp_path / driver)
        assert res["mismatches"] == 0 and res["timing_violations"] == 0, f"{driver} seed {SEED}"
        assert res["driver"] == driver
        out[driver] = res
    assert out["fast"]["bytes"] == out["cocotbext"]["bytes"] == int(reqs[:, 2].sum()) * 32
    assert out["fast"]["reads"] == out["cocotbext"]["reads"] == int((reqs[:, 1] == 0).sum())
