"""The ``diestack`` command line.

Verbs shared by every block (``gen``, ``synth``, ``bench``) take the block name next; each block
also has its own group (``npu``, ``hbm``, ``d2d``, ``system``). Blocks add themselves in
``flows/<block>.py`` through ``register(cli)``; ``diestack run`` runs every block's main-job
stage in order and writes one report.

Exit codes: 0 success, 1 a check failed (a mismatch, a missed target, a tool error),
2 bad input (an argument, a config, a file).
"""

import argparse
import importlib
import json
import sys

from ..hdl.common.params import ConfigError
from ..sim.runner import SIMULATORS, SimulatorUnavailable, SimulationFailed
from .step import ToolFailed

__all__ = ["main", "CLI", "UsageError", "CheckFailed", "emit_json", "progress", "say"]

# Block modules, in the order their stages run in `diestack run`.
BLOCKS = ("npu", "hbm", "d2d", "system", "system_cost")


class UsageError(Exception):
    """Bad input from the user: exit code 2, one-line message naming what was wrong."""


class CheckFailed(Exception):
    """A check failed (mismatch against a golden model, a tool error): exit code 1."""


def say(msg):
    """Progress and notes go to stderr, so ``--json`` output on stdout stays parseable."""
    print(msg, file=sys.stderr, flush=True)


def emit_json(obj):
    from .step import _jsonable
    print(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable), flush=True)


def progress(description, total=None):
    """A rich progress bar on stderr (``with progress("sweep", total=n) as advance: advance(1)``)."""
    from contextlib import contextmanager

    @contextmanager
    def bar():
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                                   TextColumn, TimeElapsedColumn, TimeRemainingColumn)
        console = Console(stderr=True)
        columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                   MofNCompleteColumn(), TimeElapsedColumn()]
        if total is not None:
            columns.append(TimeRemainingColumn())
        with Progress(*columns, console=console, transient=not console.is_terminal) as p:
            task = p.add_task(description, total=total)
            yield lambda n=1: p.advance(task, n)
            if total is None:
                p.update(task, total=1, completed=1)
    return bar()


# ---- argument types: errors name the option -------------------------------------------------

def int_range(lo=None, hi=None, choices=None):
    def parse(text):
        try:
            v = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if choices is not None and v not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(map(str, choices))}, not {v}")
        if lo is not None and v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, not {v}")
        if hi is not None and v > hi:
            raise argparse.ArgumentTypeError(f"must be at most {hi}, not {v}")
        return v
    parse.__name__ = "integer"
    return parse


def float_range(lo=None, hi=None):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v != v or (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], not {text}")
        return v
    parse.__name__ = "number"
    return parse


def add_sim_args(p):
    p.add_argument("--sim", choices=SIMULATORS, default=None,
                   help="simulator (default: $SIM, else verilator)")
    p.add_argument("--waves", action="store_true", help="record waves (dump.vcd / dump.fst in the run folder)")
    p.add_argument("--seed", type=int_range(0, 2**32 - 1), default=None, help="random seed")


def add_json_arg(p):
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: the command, what is wrong, where help is (exit 2).

    argparse's default prints the whole usage block before the message; for a bad option value
    the user needs the option and the reason, and ``--help`` for the rest."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


class CLI:
    """The parser under construction; blocks call its methods from ``register(cli)``."""

    def __init__(self):
        self.parser = _Parser(
            prog="diestack",
            description="diestack: AI-accelerator chiplets from RTL to a multi-die package.",
            epilog="Exit codes: 0 ok, 1 a check failed, 2 bad input. "
                   "'diestack COMMAND --help' for each command.")
        self._top = self.parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self._verbs = {}
        self._groups = {}
        self.stages = []   # (name, description, fn(ctx) -> section dict) for `diestack run`
        for verb, help_ in (("gen", "generate Verilog and the interface JSON of a block"),
                            ("synth", "synthesize a block (generic gates, or ECP5 with nextpnr)"),
                            ("bench", "run a block's benchmark: a table on stdout and JSON")):
            p = self._top.add_parser(verb, help=help_, description=help_)
            self._verbs[verb] = p.add_subparsers(dest="block", metavar="BLOCK", required=True)

    def verb(self, verb, block, help, configure, handler):
        """Add ``diestack <verb> <block>`` (verb: gen, synth, bench)."""
        p = self._verbs[verb].add_parser(block, help=help, description=help)
        configure(p)
        p.set_defaults(_handler=handler)
        return p

    def group(self, name, help):
        """Return the subparsers of ``diestack <name> ...`` (created on first use)."""
        if name not in self._groups:
            p = self._top.add_parser(name, help=help, description=help)
            self._groups[name] = p.add_subparsers(dest="action", metavar="ACTION", required=True)
        return self._groups[name]

    def command(self, group, name, help, configure, handler):
        p = self.group(group, help=f"{group} commands").add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(_handler=handler)
        return p

    def top(self, name, help, configure, handler):
        p = self._top.add_parser(name, help=help, description=help)
        configure(p)
        p.set_defaults(_handler=handler)
        return p

    def stage(self, name, description, fn):
        """Register a stage of ``diestack run``: ``fn(ctx)`` returns a report section dict."""
        self.stages.append((name, description, fn))


def build_cli():
    cli = CLI()
    for block in BLOCKS:
        try:
            mod = importlib.import_module(f"diestack.flows.{block}")
        except ModuleNotFoundError as e:
            if e.name == f"diestack.flows.{block}":
                continue
            raise
        mod.register(cli)
    from . import run as run_mod
    run_mod.register(cli)
    return cli


def main(argv=None):
    cli = build_cli()
    args = cli.parser.parse_args(argv)
    try:
        rc = args._handler(args, cli) if _wants_cli(args._handler) else args._handler(args)
        return int(rc or 0)
    except (UsageError, ConfigError) as e:
        say(f"diestack: error: {e}")
        return 2
    except SimulatorUnavailable as e:
        say(f"diestack: error: {e}")
        return 2
    except (CheckFailed, SimulationFailed, ToolFailed) as e:
        say(f"diestack: check failed: {e}")
        return 1
    except KeyboardInterrupt:
        say("diestack: interrupted")
        return 130


def _wants_cli(fn):
    import inspect
    try:
        return len(inspect.signature(fn).parameters) >= 2
    except (TypeError, ValueError):
        return False

