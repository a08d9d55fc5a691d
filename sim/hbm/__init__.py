"""HBM verification parts: device model with JEDEC checker, DFI monitor, ECC golden model, traffic."""
