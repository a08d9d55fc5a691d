"""Multi-die system model: technology data, cost/yield, placement, topology, power, thermal, perf.

``tech`` loads the technology data in ``packaging/data/*.toml``; ``cost`` is the vectorised
Chiplet Actuary cost/yield model; ``validate`` compares configs modelled on real systems with
their published figures.
"""

if __name__ == "packaging":
    # Imported under the top-level name ``packaging``: the project root is on sys.path (``python -c``
    # or ``python -m`` run from the root). That name is PyPA's ``packaging``, which matplotlib, dask
    # and pip import; diestack's own code always says ``diestack.packaging``. Load PyPA's module in
    # our place, so the fixed top-level layout never shadows it.
    import importlib.machinery as _machinery
    import importlib.util as _util
    import os as _os
    import sys as _sys

    _root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    _spec = _machinery.PathFinder.find_spec(
        "packaging", [p for p in _sys.path if _os.path.abspath(p or _os.curdir) != _root])
    if _spec is None:
        raise ImportError("PyPA's 'packaging' distribution is not installed (pip install packaging)")
    _real = _util.module_from_spec(_spec)
    _sys.modules["packaging"] = _real
    _spec.loader.exec_module(_real)
