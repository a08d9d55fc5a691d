"""The ``--command-log`` CSV: write it, read it back, and re-check it against the device model.

Header ``cycle,channel,pseudo_channel,sid,bank_group,bank,command,row,column`` (issue 3, CLI
contract); ``command`` is one of ACT, PRE, PREA, RD, WR, RDA, WRA, REFab, REFpb; fields that do not
apply are empty. :func:`replay` feeds a log to fresh :class:`~diestack.sim.hbm.device.HBMDevice`
models (one per channel/pseudo-channel), so a log written by one run can be re-checked for timing
by independent code, without the simulator. No cocotb here.
"""

import csv
import os
import tempfile

from ...hdl.common.params import ConfigError
from .device import COMMANDS, HBMDevice

__all__ = ["CSV_HEADER", "write_command_log", "read_command_log", "replay"]

CSV_HEADER = ("cycle", "channel", "pseudo_channel", "sid", "bank_group", "bank", "command", "row", "column")
_NEEDS = {"ACT": ("sid", "bank_group", "bank", "row"), "PRE": ("sid", "bank_group", "bank"),
          "REFpb": ("sid", "bank_group", "bank"), "PREA": (), "REFab": (),
          "RD": ("sid", "bank_group", "bank", "column"), "WR": ("sid", "bank_group", "bank", "column"),
          "RDA": ("sid", "bank_group", "bank", "column"), "WRA": ("sid", "bank_group", "bank", "column")}


def write_command_log(path, entries):
    """Write ``(cycle, channel, pseudo_channel, sid, bank_group, bank, command, row, column)``
    tuples as CSV (None -> empty). Atomic: a temp file renamed over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".cmdlog-", suffix=".csv", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CSV_HEADER)
            for e in entries:
                w.writerow("" if x is None else x for x in e)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_command_log(path):
    """Read a command-log CSV into tuples (ints, None for empty fields).

    Raises ConfigError with field ``<file>:<line>`` naming the bad column.
    """
    path = os.fspath(path)
    name = os.path.basename(path)
    try:
        f = open(path, newline="", encoding="utf-8")
    except OSError as e:
        raise ConfigError("command_log", f"cannot read {path}: {e.strerror or e}") from None
    try:
        with f:
            return _parse(csv.reader(f), name)
    except UnicodeDecodeError as e:
        raise ConfigError("command_log", f"{path} is not a text CSV ({e.reason})") from None
    except csv.Error as e:
        raise ConfigError("command_log", f"{path} is not a valid CSV ({e})") from None


def _parse(rows, name):
    """Rows of a csv.reader -> command tuples; cycles must not decrease per pseudo-channel."""
    out = []
    last = {}                                    # (channel, pseudo_channel) -> last cycle
    header = next(rows, None)
    if header is None or tuple(header) != CSV_HEADER:
        raise ConfigError(f"{name}:1", f"header must be {','.join(CSV_HEADER)}")
    for lineno, row in enumerate(rows, 2):
        if len(row) != len(CSV_HEADER):
            raise ConfigError(f"{name}:{lineno}", f"expected {len(CSV_HEADER)} fields, found {len(row)}")
        rec = dict(zip(CSV_HEADER, row))
        cmd = rec.pop("command")
        if cmd not in COMMANDS:
            raise ConfigError(f"{name}:{lineno}", f"command {cmd!r} is not one of {', '.join(COMMANDS)}")
        vals = {}
        for k, v in rec.items():
            if v == "":
                vals[k] = None
            elif v.isascii() and v.isdigit():       # '²'.isdigit() is True
                vals[k] = int(v)
            else:
                raise ConfigError(f"{name}:{lineno}", f"{k} {v!r} is not a non-negative integer")
        for k in ("cycle", "channel", "pseudo_channel") + _NEEDS[cmd]:
            if vals[k] is None:
                raise ConfigError(f"{name}:{lineno}", f"{k} is empty but {cmd} needs it")
        where = (vals["channel"], vals["pseudo_channel"])
        if vals["cycle"] < last.get(where, 0):
            raise ConfigError(f"{name}:{lineno}", f"cycle {vals['cycle']} is earlier than the previous "
                              f"command's {last[where]} on channel {where[0]} pseudo-channel {where[1]}")
        last[where] = vals["cycle"]
        out.append((vals["cycle"], vals["channel"], vals["pseudo_channel"], vals["sid"],
                    vals["bank_group"], vals["bank"], cmd, vals["row"], vals["column"]))
    return out


def replay(entries, timing, *, check_refresh=True, end_cycle=None):
    """Re-check a command log: one fresh non-strict device per (channel, pseudo_channel).

    Writes carry no data in a log, so write-data timing is not checked. Returns
    ``{(channel, pseudo_channel): HBMDevice}``; ``sum(d.violation_total ...)`` is the verdict.
    """
    devices = {}
    last = 0
    for cyc, ch, pc, sid, bg, ba, cmd, row, col in entries:
        dev = devices.get((ch, pc))
        if dev is None:
            dev = devices[(ch, pc)] = HBMDevice(timing, strict=False, check_refresh=check_refresh)
        if cmd in ("PREA", "REFab"):
            dev.issue(cyc, cmd)
        elif cmd in ("WR", "WRA"):
            dev.issue(cyc, cmd, sid, bg, ba, col=col, data=0)
        elif cmd in ("RD", "RDA"):
            dev.issue(cyc, cmd, sid, bg, ba, col=col)
        else:
            dev.issue(cyc, cmd, sid, bg, ba, row=row)
        last = max(last, cyc)
    for dev in devices.values():
        dev.finish(last if end_cycle is None else end_cycle)
    return devices
