"""Turn a component into Verilog text and its interface JSON (no file I/O here)."""

import json

from amaranth.back import verilog

__all__ = ["to_verilog", "interface_json"]


def to_verilog(component, name):
    """Verilog for ``component`` with top module ``name``; no absolute paths in the output."""
    return verilog.convert(component, name=name, emit_src=False)


def interface_json(component):
    """The component's interface (``component.metadata.as_json()``), as a JSON string."""
    return json.dumps(component.metadata.as_json(), indent=2, sort_keys=True) + "\n"
