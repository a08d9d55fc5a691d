"""HBM controller tests: address map and ECC RTL against independent Python models (Amaranth
simulator), then the whole controller in cocotb against the JEDEC-checking device model.

Default suite: ONE Verilog build (hbm2, queue depth 16, ECC on, tREFI shrunk to 1200 cycles so
refresh happens under load; run on Verilator and, if installed, on Icarus) runs random mixed traffic with interleaved AXI IDs, back-pressure on B and R, and ECC
single/double-bit injections; zero timing violations and every read equal to the last write.
The other presets and policies cost one build each and are marked slow.
Seed: $DIESTACK_SEED (printed).
"""

import os
import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from diestack.flows.hbm import make_config, make_requests, simulate
from diestack.hdl.hbm import ecc as ecc_rtl
from diestack.hdl.hbm.addrmap import AddressMap
from diestack.hdl.common.params import ConfigError
from diestack.sim import runner
from diestack.sim.hbm import ecc as golden

SEED = int(os.environ.get("DIESTACK_SEED", "20261130"))
print(f"HBM controller tests: seed {SEED} (set DIESTACK_SEED to override)")


# ---- address map -----------------------------------------------------------------------------

def _model_decode(addr, offset_bits, order, xor, widths):
    """Independent model: walk the address as a bit string, LSB first."""
    bits = bin(addr)[2:][::-1] + "0" * 64
    pos = offset_bits
    got = {f: "" for f in widths}
    for f, n in order:
        got[f] = got[f] + bits[pos:pos + n]          # LSB-first string per field
        pos += n
    val = {f: int(s[::-1], 2) if s else 0 for f, s in got.items()}
    if xor:
        gb, bb = widths["bank_group"], widths["bank"]
        val["bank_group"] ^= val["row"] % (1 << gb)
        val["bank"] ^= (val["row"] >> gb) % (1 << bb)
    return val


@pytest.mark.parametrize("xor", [False, True])
@pytest.mark.parametrize("channels", [1, 4])
def test_addrmap_python_matches_model(xor, channels):
    rng = random.Random(SEED)
    m = AddressMap.build(bytes_per_burst=32, channels=channels, sids=2, bank_groups=4,
                         banks_per_group=4, rows=16384, columns=32, xor=xor)
    widths = dict(m.widths)
    assert m.order[0] == ("column", 1) and m.order[1][0] in ("channel", "bank_group")
    for _ in range(2000):
        a = rng.randrange(1 << m.addr_bits)
        d = m.decode_int(a)
        want = _model_decode(a, m.offset_bits, m.order, xor, widths)
        assert {k: d[k] for k in want} == want, f"addr {a:#x} seed {SEED}"
        assert m.encode_int(**{k: d[k] for k in want}, offset=d["offset"]) == a


def test_addrmap_rtl_matches_python():
    rng = random.Random(SEED + 1)
    m = AddressMap.build(bytes_per_burst=32, channels=2, sids=2, bank_groups=4,
                         banks_per_group=4, rows=16384, columns=32, xor=True)

    class Dec(wiring.Component):
        addr: In(m.addr_bits)
        row: Out(14)
        col: Out(5)
        bank: Out(2)
        bg: Out(2)
        sid: Out(1)
        ch: Out(1)

        def elaborate(self, platform):
            mm = Module()
            f = m.decode(self.addr)
            mm.d.comb += [self.row.eq(f["row"]), self.col.eq(f["column"]), self.bank.eq(f["bank"]),
                          self.bg.eq(f["bank_group"]), self.sid.eq(f["sid"]),
                          self.ch.eq(f["channel"])]
            return mm

    dut = Dec()
    addrs = [rng.randrange(1 << m.addr_bits) for _ in range(200)]

    async def bench(ctx):
        for a in addrs:
            ctx.set(dut.addr, a)
            want = m.decode_int(a)
            got = dict(row=ctx.get(dut.row), column=ctx.get(dut.col), bank=ctx.get(dut.bank),
                       bank_group=ctx.get(dut.bg), sid=ctx.get(dut.sid), channel=ctx.get(dut.ch))
            assert got == {k: want[k] for k in got}, f"addr {a:#x} seed {SEED}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_addrmap_rejects_bad_order():
    with pytest.raises(ConfigError) as e:
        AddressMap.build(bytes_per_burst=32, channels=1, sids=1, bank_groups=4,
                         banks_per_group=4, rows=1024, columns=32,
                         order=(("row", 10), ("column", 5), ("bank", 2)))
    assert e.value.field == "order"


# ---- ECC RTL against the golden model ----------------------------------------------------------

def test_ecc_rtl_matches_golden():
    rng = random.Random(SEED + 2)

    class Codec(wiring.Component):
        data: In(64)
        word: Out(72)
        rx: In(72)
        out: Out(64)
        corr: Out(1)
        unc: Out(1)

        def elaborate(self, platform):
            mm = Module()
            w = ecc_rtl.encode(mm, self.data)
            d, c, u = ecc_rtl.decode(mm, self.rx)
            mm.d.comb += [self.word.eq(w), self.out.eq(d), self.corr.eq(c), self.unc.eq(u)]
            return mm

    dut = Codec()
    cases = []
    for k in range(300):
        data = rng.getrandbits(64)
        nflip = k % 3                       # 0, 1 or 2 flipped bits anywhere in the 72
        flips = rng.sample(range(72), nflip)
        cases.append((data, flips))

    async def bench(ctx):
        for data, flips in cases:
            ctx.set(dut.data, data)
            word = ctx.get(dut.word)
            assert word == golden.encode_word(data), f"encode {data:#x} seed {SEED}"
            rx = golden.flip(word, flips)
            ctx.set(dut.rx, rx)
            want_data, status = golden.decode_word(rx)
            assert ctx.get(dut.corr) == (status == golden.CORRECTED), f"{data:#x} {flips}"
            assert ctx.get(dut.unc) == (status == golden.UNCORRECTABLE), f"{data:#x} {flips}"
            if status != golden.UNCORRECTABLE:
                assert ctx.get(dut.out) == data, f"{data:#x} flips {flips} seed {SEED}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


# ---- whole controller in cocotb ------------------------------------------------------------------

def _need(sim):
    if sim not in runner.available():
        pytest.skip(f"{sim} not installed")


def _check(res, what):
    assert res["mismatches"] == 0, f"{what}: {res['first_mismatches']} (seed {SEED})"
    assert res["timing_violations"] == 0, f"{what}: violations (seed {SEED})"
    ch = res["channels"][0]
    # counters agree with the device model's own command counts
    dev = ch["monitor"]["commands"]
    for name, key in (("ACT", "act"), ("RD", "rd"), ("WR", "wr"), ("REFab", "refab")):
        assert dev.get(name, 0) == ch[key], f"{what}: {name} device {dev.get(name, 0)} vs RTL {ch[key]}"
    cols = ch["rd"] + ch["wr"] + ch["rda"] + ch["wra"]
    # hits/misses/conflicts count requests (queue entries of one or two bursts, the first column
    # command decides): between half the column commands and all of them
    reqs = ch["row_hits"] + ch["row_misses"] + ch["row_conflicts"]
    assert (cols + 1) // 2 <= reqs <= cols, f"{what}: {reqs} requests for {cols} column commands"
    return ch


# the default-suite configuration (test_cli uses the same one, so the build is shared)
DEFAULT = dict(preset="hbm2", ecc=True, queue_depth=16, overrides={"tREFI": 1200})


@pytest.mark.parametrize("sim", ["verilator", "icarus"])
def test_mixed_traffic_refresh_ecc_backpressure(sim, tmp_path):
    """hbm2 + ECC + tREFI 1200: random reads/writes (1..4-beat bursts), 4 interleaved AXI IDs,
    30% back-pressure on B and R, refresh under load, then one single- and one double-bit
    injection."""
    _need(sim)
    cfg = make_config(**DEFAULT)
    reqs = make_requests("mixed", 240 if sim == "verilator" else 160, cfg, seed=SEED)
    rng = random.Random(SEED)
    for r in reqs:
        r[2] = rng.choice((1, 2, 2, 4))
    inject = [{"addr": 0x10000, "bits": [rng.randrange(288)]},   # any one bit of the burst
              {"addr": 0x20040, "bits": [7, 40]}]             # two bits in word 0
    res = simulate(cfg, reqs, sim=sim, seed=SEED, ids=4, backpressure=0.3, inject=inject,
                   job_dir=tmp_path / "job")
    ch = _check(res, "mixed hbm3 ecc")
    assert ch["refab"] >= 2, f"refresh did not run under load: {ch['refab']}"
    single, double = res["inject"]
    assert single["resp"] == 0 and single["data_ok"], single
    assert double["resp"] == 2, f"double-bit error must give SLVERR: {double}"
    assert ch["ecc_corrected"] >= 1 and ch["ecc_uncorrectable"] >= 1


SLOW_SIM = os.environ.get("SIM") or "verilator"     # slow tests: one simulator, $SIM


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["hbm2", "hbm2e", "hbm3"])
def test_every_preset_mixed(preset, tmp_path):
    _need(SLOW_SIM)
    cfg = make_config(preset)
    reqs = make_requests("mixed", 300, cfg, seed=SEED)
    res = simulate(cfg, reqs, sim=SLOW_SIM, seed=SEED, ids=8, backpressure=0.2,
                   job_dir=tmp_path / "job")
    _check(res, preset)


@pytest.mark.slow
@pytest.mark.parametrize("page,refresh", [("closed", "allbank"), ("adaptive", "perbank")])
def test_policies(page, refresh, tmp_path):
    _need(SLOW_SIM)
    cfg = make_config("hbm2", page=page, refresh=refresh, overrides={"tREFI": 1200})
    reqs = make_requests("mixed", 300, cfg, seed=SEED)
    res = simulate(cfg, reqs, sim=SLOW_SIM, seed=SEED, job_dir=tmp_path / "job")
    ch = _check(res, f"{page}/{refresh}")
    if page == "closed":
        # every request ends with an auto-precharge; a 64 B request is RD + RDA (one ACT)
        assert ch["rda"] + ch["wra"] > 0 and ch["rd"] + ch["wr"] <= ch["rda"] + ch["wra"]
    if refresh == "perbank":
        assert ch["refpb"] > 0



@pytest.mark.slow
@pytest.mark.parametrize("sim", [SLOW_SIM])
def test_two_channels_route_by_address_map(sim, tmp_path):
    """hbm_top with 2 pseudo-channels: the channel bit of the map picks the AXI port; both
    channels see traffic, data and timing are checked per channel."""
    _need(sim)
    cfg = make_config("hbm2", channels=2, queue_depth=16)
    reqs = make_requests("mixed", 120, cfg, seed=SEED)
    res = simulate(cfg, reqs, sim=sim, seed=SEED, backpressure=0.2, job_dir=tmp_path / "job")
    assert res["mismatches"] == 0 and res["timing_violations"] == 0, f"seed {SEED}"
    for ch in res["channels"]:
        assert ch["rd"] + ch["wr"] > 0, "a channel saw no traffic"
