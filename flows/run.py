"""``diestack run``: the main job on the embedded default design.

Each block registers a stage (``cli.stage(name, description, fn)``); ``fn(ctx)`` does its work
(generate, simulate against a golden model, synthesize, model) and returns a report section:
``{"title": str, "passed": bool, "metrics": {...}, "markdown": str}``. The run writes
``build/run/report.md``, ``report.html`` and ``metrics.json`` and exits 1 if any check failed.
"""

import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from .step import build_root, write_json

__all__ = ["register", "RunContext"]


@dataclass
class RunContext:
    out: Path
    sim: str | None = None
    quick: bool = False
    seed: int | None = None
    skip: tuple = ()
    sections: dict = field(default_factory=dict)


def configure(p):
    p.add_argument("--sim", choices=("verilator", "icarus"), default=None,
                   help="simulator (default: $SIM, else verilator)")
    p.add_argument("--seed", type=int, default=None, help="random seed for the simulated checks")
    p.add_argument("--skip", action="append", default=[], metavar="STAGE",
                   help="skip a stage (repeatable); stages: see below")
    p.add_argument("--only", action="append", default=[], metavar="STAGE",
                   help="run only these stages (repeatable)")
    p.add_argument("-o", "--out", default=None, help="report folder (default: build/run)")


def handler(args, cli):
    from .cli import UsageError, say
    names = [s[0] for s in cli.stages]
    for n in args.skip + args.only:
        if n not in names:
            raise UsageError(f"--skip/--only: unknown stage {n!r}; stages are {', '.join(names)}")
    out = Path(args.out) if args.out else build_root() / "run"
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(out=out, sim=args.sim, seed=args.seed)
    t0 = time.monotonic()
    for i, (name, description, fn) in enumerate(cli.stages, 1):
        if name in args.skip or (args.only and name not in args.only):
            continue
        say(f"[{i}/{len(cli.stages)}] {description}")
        ts = time.monotonic()
        section = fn(ctx)
        section.setdefault("seconds", round(time.monotonic() - ts, 1))
        ctx.sections[name] = section
        say(f"      {'ok' if section.get('passed', True) else 'FAILED'} "
            f"({section['seconds']:.0f} s)")
        write_report(ctx, time.monotonic() - t0)   # after each stage: nothing done is lost
    paths = write_report(ctx, time.monotonic() - t0)
    say(f"report: {paths[0]}  {paths[1]}  {paths[2]}")
    return 0 if all(s.get("passed", True) for s in ctx.sections.values()) else 1


def write_report(ctx, seconds):
    md = ["# diestack run report", "",
          f"Total time: {seconds:.0f} s.", "",
          "| stage | result | time (s) |", "|---|---|---|"]
    for name, s in ctx.sections.items():
        md.append(f"| {s.get('title', name)} | {'pass' if s.get('passed', True) else '**FAIL**'} "
                  f"| {s['seconds']:.0f} |")
    for name, s in ctx.sections.items():
        md += ["", f"## {s.get('title', name)}", "", s.get("markdown", "").rstrip()]
    md_text = "\n".join(md) + "\n"
    (ctx.out / "report.md").write_text(md_text)
    (ctx.out / "report.html").write_text(_html(md_text))
    metrics = {name: s.get("metrics", {}) | {"passed": s.get("passed", True),
                                             "seconds": s["seconds"]}
               for name, s in ctx.sections.items()}
    metrics["total_seconds"] = round(seconds, 1)
    write_json(ctx.out / "metrics.json", metrics)
    return ctx.out / "report.md", ctx.out / "report.html", ctx.out / "metrics.json"


def _html(md_text):
    """A small Markdown subset (headings, tables, paragraphs, images, code) to standalone HTML."""
    out, in_table, in_code = [], False, False
    for line in md_text.splitlines():
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            alt, src = line[2:].split("](", 1)
            out.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src.rstrip(")"))}">')
        elif line.startswith("- "):
            out.append(f"<li>{_inline(line[2:])}</li>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
             "img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>diestack report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def _inline(text):
    import re
    t = html.escape(text)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t


def register(cli):
    p = cli.top("run", "the main job: every block's stage on the embedded default design, "
                "then one report (Markdown, HTML, metrics.json)", configure, handler)
    p.epilog = "stages: " + ", ".join(f"{n} ({d})" for n, d, _ in cli.stages)
