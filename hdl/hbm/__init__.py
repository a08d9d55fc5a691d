"""HBM memory controller: timing presets (timing.py) and the controller RTL."""
