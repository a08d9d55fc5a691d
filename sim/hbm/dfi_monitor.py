"""cocotb monitor for the DFI-style HBM PHY interface: feeds the device model, drives read data.

One :class:`DFIMonitor` watches one pseudo-channel interface (signals ``<prefix>__row_valid`` ...,
see the DFI contract in hdl/hbm/controller.py). Every controller cycle ``n`` it

1. samples the row bus, the column bus and the write-data bus of cycle ``n``, feeds them to
   :class:`~diestack.sim.hbm.device.HBMDevice` (row command first), and logs each command;
2. drives ``rddata_valid``/``rddata`` for the reads whose data are due in cycle ``n`` (``RL``
   cycles after their RD/RDA), so the controller samples them at the rising edge ending cycle
   ``n``, exactly as if a register drove them.

``sample="falling"`` (default, one trigger per cycle, about twice as fast) does both at the
falling edge in the middle of cycle ``n``; the controller's outputs are registered, so they are
stable there, and it only samples ``rddata`` at rising edges. ``sample="readonly"`` samples in the
ReadOnly phase after the rising edge that starts cycle ``n`` and drives read data right after that
rising edge (two triggers per cycle; use it if the clock is not 50 % duty).

Cycle numbers count rising edges since :meth:`DFIMonitor.start` (cycle 0 is the first one).
Violations are counted by the device; ``on_violation`` says what happens: ``"end"`` (default) ->
:meth:`DFIMonitor.check` raises at the end of the test; ``"immediate"`` -> the monitor raises the
:class:`~diestack.sim.hbm.device.TimingViolation` at once (failing the test); ``"count"`` -> never
fail, only count (for benchmarks that report ``timing_violations``).

The command log (``log``) holds tuples ``(cycle, channel, pseudo_channel, sid, bank_group, bank,
command, row, column)``; :func:`write_command_log` writes it as the ``--command-log`` CSV. For
column commands ``row`` is the row open in that bank when the command was issued.
"""

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

from .cmdlog import CSV_HEADER, write_command_log
from .device import COL_COMMANDS, ROW_COMMANDS, HBMDevice

__all__ = ["DFIMonitor", "CSV_HEADER", "write_command_log"]

_MODES = ("end", "immediate", "count")


def _reader(handle, name):
    """A fast getter of a handle's value as an unsigned int; X/Z raise naming the signal.

    Reads the simulator's bit string directly (``handle._handle``, cocotb's GPI object): building a
    ``LogicArray`` through ``handle.value`` costs several times more, and the monitor reads three
    signals every cycle. Falls back to ``handle.value`` if that object is not there.
    """
    gpi = getattr(handle, "_handle", None)
    binstr = getattr(gpi, "get_signal_val_binstr", None)
    if binstr is None:
        def get():
            v = handle.value
            try:
                return v.to_unsigned()
            except AttributeError:
                return int(v)
        return get

    def get():
        s = binstr()
        try:
            return int(s, 2)
        except ValueError:
            raise AssertionError(f"{name} is not 0/1: {s}") from None
    return get


class DFIMonitor:
    """Watch one DFI pseudo-channel interface of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
        Top level holding the ``<prefix>__*`` signals.
    clk : cocotb handle
        Controller clock (= HBM CK).
    timing : HBMTiming
        Resolved timing (RL, WL, organisation).
    prefix : str
        Signal prefix, ``dfi`` or ``ch<N>_dfi``.
    channel, pseudo_channel : int
        Written into the command log.
    device : HBMDevice, optional
        Device model (a fresh non-strict one by default; ``data_bytes`` follows the rddata width).
    on_violation : str
        ``"end"``, ``"immediate"`` or ``"count"`` (see module doc).
    log_commands : bool
        Keep the command log.
    sample : str
        ``"falling"`` or ``"readonly"`` (see module doc).
    """

    def __init__(self, dut, clk, timing, prefix="dfi", channel=0, pseudo_channel=0, device=None,
                 on_violation="end", log_commands=True, sample="falling"):
        if on_violation not in _MODES:
            raise ValueError(f"on_violation must be one of {', '.join(_MODES)}, not {on_violation!r}")
        if sample not in ("falling", "readonly"):
            raise ValueError(f"sample must be 'falling' or 'readonly', not {sample!r}")
        self.sample = sample
        self.dut = dut
        self.clk = clk
        self.timing = timing
        self.prefix = prefix
        self.channel = channel
        self.pseudo_channel = pseudo_channel
        self.on_violation = on_violation
        self.log_commands = log_commands

        def sig(name):
            return getattr(dut, f"{prefix}__{name}")

        self._rddata = sig("rddata")
        self._rddata_valid = sig("rddata_valid")
        width = len(self._rddata)
        if width % 8:
            raise ValueError(f"{prefix}__rddata is {width} bits, not whole bytes")
        self.device = device or HBMDevice(timing, strict=False, data_bytes=width // 8)
        if self.device.strict and on_violation != "immediate":
            raise ValueError("a strict device raises at once: use on_violation='immediate'")
        r = {n: _reader(sig(n), f"{prefix}__{n}") for n in ("row_valid", "row_cmd", "row_sid", "row_bg", "row_ba",
                                           "row_addr", "col_valid", "col_cmd", "col_sid", "col_bg",
                                           "col_ba", "col_addr", "wrdata_en", "wrdata", "wrdata_mask")}
        self._r = r
        self.log = []
        self.cycle = -1
        self.reads_returned = 0
        self.writes_seen = 0
        self._due = {}               # cycle -> read data to drive in that cycle
        self._driving = False
        self._task = None
        self._step = None
        self._raised = 0

    # --- control -----------------------------------------------------------------------------
    def start(self, loop=True):
        """Drive the read-data bus idle and start watching (call before the first rising edge).

        With ``loop=False`` no coroutine is started: the caller's own clock loop calls
        :meth:`step` at every falling edge (``sample="falling"`` only).
        """
        self._rddata_valid.value = 0
        self._rddata.value = 0
        if not loop:
            if self.sample != "falling":
                raise ValueError("start(loop=False) needs sample='falling'")
            return None
        self._task = cocotb.start_soon(self._run())
        return self._task

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @property
    def violations(self):
        return self.device.violation_total

    def summary(self):
        """JSON-ready counters."""
        d = self.device
        return {
            "cycles": self.cycle + 1,
            "commands": dict(d.command_counts),
            "timing_violations": d.violation_total,
            "violations_by_rule": dict(d.violation_counts),
            "first_violations": [str(v) for v in d.violations[:20]],
            "reads_returned": self.reads_returned,
            "writes_seen": self.writes_seen,
        }

    def finish(self):
        """Close the run: refresh deadline and owed write data up to the current cycle."""
        self.device.finish(max(self.cycle, 0))
        return self.device.violation_total

    def check(self):
        """Raise ``AssertionError`` listing the first violations if there were any (not in count mode)."""
        self.finish()
        n = self.device.violation_total
        if n and self.on_violation != "count":
            first = "\n  ".join(str(v) for v in self.device.violations[:10])
            raise AssertionError(f"{n} HBM timing violation(s) on {self.prefix}:\n  {first}")

    def write_command_log(self, path):
        write_command_log(path, self.log)

    # --- the per-cycle work ------------------------------------------------------------------
    def step(self):
        """Do one cycle of ``sample="falling"`` work: call it at every falling edge.

        For a testbench that runs its own single clock loop (``start(loop=False)``): it must call
        this once after the first rising edge's falling edge and then at every falling edge, like
        the monitor's own loop does. Raises the first violation at once with ``"immediate"``.
        """
        if self._step is None:
            self._step = self._make_step()
        self._step()

    def _make_step(self):
        """A closure doing one cycle: sample row, column and write-data buses, feed the device,
        log, and (``falling`` mode) drive the read data due in this cycle."""
        r = self._r
        dev = self.device
        due = self._due
        row_valid, col_valid, wr_en = r["row_valid"], r["col_valid"], r["wrdata_en"]
        row_cmd, row_sid, row_bg, row_ba, row_addr = (r[k] for k in ("row_cmd", "row_sid", "row_bg",
                                                                     "row_ba", "row_addr"))
        col_cmd, col_sid, col_bg, col_ba, col_addr = (r[k] for k in ("col_cmd", "col_sid", "col_bg",
                                                                     "col_ba", "col_addr"))
        wrdata, wrmask = r["wrdata"], r["wrdata_mask"]
        log = self.log if self.log_commands else None
        ch, pc = self.channel, self.pseudo_channel
        immediate = self.on_violation == "immediate"
        falling = self.sample == "falling"
        drive = self._drive
        issue = dev.issue
        prefix = self.prefix

        def step():
            self.cycle += 1
            n = self.cycle
            before = dev.violation_total if immediate else 0
            if row_valid():
                code = row_cmd()
                cmd = ROW_COMMANDS.get(code)
                if cmd is None:
                    raise AssertionError(f"{prefix}: bad row_cmd code {code} in cycle {n}")
                sid, bg, ba, addr = row_sid(), row_bg(), row_ba(), row_addr()
                issue(n, cmd, sid, bg, ba, row=addr)
                if log is not None:
                    if cmd == "ACT":
                        log.append((n, ch, pc, sid, bg, ba, cmd, addr, None))
                    elif cmd in ("PRE", "REFpb"):
                        log.append((n, ch, pc, sid, bg, ba, cmd, None, None))
                    else:
                        log.append((n, ch, pc, None, None, None, cmd, None, None))
            if col_valid():
                code = col_cmd()
                cmd = COL_COMMANDS.get(code)
                if cmd is None:
                    raise AssertionError(f"{prefix}: bad col_cmd code {code} in cycle {n}")
                sid, bg, ba, addr = col_sid(), col_bg(), col_ba(), col_addr()
                open_row = dev.open_row(sid, bg, ba) if log is not None else None
                out = issue(n, cmd, sid, bg, ba, col=addr)
                if out is not None:
                    due[out[0]] = out[1]
                if log is not None:
                    log.append((n, ch, pc, sid, bg, ba, cmd, open_row, addr))
            if wr_en():
                self.writes_seen += 1
                dev.write_data(n, wrdata(), wrmask())
            if falling:
                drive(due, n)                   # RL = 0 would be due this very cycle
            if immediate and dev.violation_total != before:
                raise dev.violations[-1] if dev.violations else AssertionError("HBM timing violation")

        return step

    async def _run(self):
        rising = RisingEdge(self.clk)
        await rising                            # cycle 0 starts at the first rising edge
        if self.sample == "falling":
            step, fall = self._make_step(), FallingEdge(self.clk)
            while True:
                await fall                      # middle of cycle n
                step()
        else:
            # start of cycle n: drive read data like a register, then sample in ReadOnly
            self._drive(self._due, self.cycle + 1)
            step, settle = self._make_step(), ReadOnly()
            while True:
                await settle
                step()
                await rising
                self._drive(self._due, self.cycle + 1)

    def _drive(self, due, n):
        data = due.pop(n, None) if due else None
        if data is not None:
            self._rddata.value = data
            self._rddata_valid.value = 1
            self._driving = True
            self.reads_returned += 1
        elif self._driving:
            self._rddata_valid.value = 0
            self._driving = False
