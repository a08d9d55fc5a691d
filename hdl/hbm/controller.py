"""HBM pseudo-channel controller: request queue, FR-FCFS scheduler, bank timing, refresh, DFI.

One :class:`HBMController` drives one pseudo-channel (PC). ``hdl/hbm/top.py`` instantiates N of
them behind AXI4 ports.

DFI-style PHY interface (contract with ``sim/hbm/dfi_monitor.py``)
------------------------------------------------------------------
One interface per pseudo-channel; port prefix ``dfi`` (Verilog ``dfi__<name>``; in ``hbm_top`` with
several channels ``ch<N>_dfi__<name>``). The controller clock is the HBM command clock CK: every
cycle below is one CK, and every timing parameter is used in CK as resolved by
``hdl/hbm/timing.py`` (``HBMTiming``). All outputs are registered (they change just after the
rising edge); a command "issued in cycle t" is the one whose ``*_valid`` is high during cycle t,
sampled by the monitor at the rising edge that ends cycle t.

Row command bus (at most one row command per cycle):

- ``row_valid`` (1): a row command this cycle.
- ``row_cmd`` (3): 1 = ACT, 2 = PRE (one bank), 3 = PREA (all banks of the PC, every SID),
  4 = REFab (all banks of the PC, every SID), 5 = REFpb (one bank: HBM2 REFSB / HBM3 REFpb).
- ``row_sid`` (max(1, log2 SIDs)), ``row_bg`` (log2 bank groups), ``row_ba`` (log2 banks per
  group): the bank, for ACT, PRE and REFpb; driven 0 (don't care) for PREA and REFab.
- ``row_addr`` (log2 rows): the row, for ACT; 0 otherwise.

Column command bus (at most one column command per cycle; may share a cycle with a row command):

- ``col_valid`` (1), ``col_cmd`` (3): 1 = RD, 2 = WR, 3 = RDA (read, auto-precharge),
  4 = WRA (write, auto-precharge).
- ``col_sid``, ``col_bg``, ``col_ba``: the bank (same widths as on the row bus).
- ``col_addr`` (log2 columns): the column in units of one column access (= one burst of
  ``bytes_per_burst`` bytes, 32 B for every preset).

Write data:

- ``wrdata_en`` (1), ``wrdata`` (8 x bytes per burst; 9/8 of that with ECC),
  ``wrdata_mask`` (one bit per byte of ``wrdata``, 1 = byte masked, not written). The whole burst
  is presented in ONE cycle, exactly ``WL`` cycles after the cycle of its WR/WRA.

Read data (driven by the device model):

- ``rddata_valid`` (1), ``rddata`` (same width as ``wrdata``): the whole burst in ONE cycle,
  exactly ``RL`` cycles after the cycle of its RD/RDA. The controller does not look at
  ``rddata_valid`` for timing (it knows RL); it samples ``rddata`` on that cycle and (debug)
  counts cycles where ``rddata_valid`` disagrees with its expectation.

ECC: with ``ecc=True`` every 64 data bits travel as a 72-bit SECDED codeword (``hdl/hbm/ecc.py``,
layout identical to the golden ``sim/hbm/ecc.py``): burst word ``k`` (k = 0 .. bytes_per_burst/8-1)
occupies ``wrdata[72k : 72k+72]``. The device stores the 72-bit words as data, so a model can flip
stored bits to inject errors.

Byte order: byte ``j`` of a burst is ``wrdata[8j : 8j+8]`` (without ECC), i.e. the burst is the
little-endian integer of the 32 bytes at byte addresses ``col*32 .. col*32+31`` of the row.
"""
