"""Chiplets: physical descriptors (size, node, power, PHYs, compute/memory figures) as TOML data.

Built-in descriptors: ``npu`` (NPU compute die), ``hbm3`` (HBM3 stack), ``io`` (IO die); see
:mod:`diestack.chiplets.descriptor`.
"""

from .descriptor import (BUILTIN, Chiplet, ComputeSpec, MemorySpec, Phy, builtin,
                         chiplet_from_dict, load_chiplet)

__all__ = ["BUILTIN", "Chiplet", "ComputeSpec", "MemorySpec", "Phy", "builtin",
           "chiplet_from_dict", "load_chiplet"]
