"""Multi-die system model: technology data, cost/yield, placement, topology, power, thermal, perf.

``tech`` loads the technology data in ``packaging/data/*.toml``; ``cost`` is the vectorised
Chiplet Actuary cost/yield model; ``validate`` compares configs modelled on real systems with
their published figures.
"""
