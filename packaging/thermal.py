"""Steady-state thermal grid with TAP-2.5D's layer stack, solved with a sparse linear solver.

The package is cut into a regular grid of ``resolution_mm`` cells in x/y and into the layers of
TAP-2.5D's HotSpot stack (system.md, "Thermal: TAP-2.5D layer stack"), bottom to top:

=========== ====================== ================= =============
layer        material               rho (m K / W)     thickness
=========== ====================== ================= =============
substrate    organic                3.33              0.2 mm
c4           C4 + underfill         0.625             70 um
interposer   Si with TSVs           0.01              110 um
ubump        ubumps + underfill     0.625             10 um
chip         Si (dies) / filler     0.01 / 0.625      150 um
tim          thermal interface      0.25              20 um
spreader     copper                 0.0025            1 mm
=========== ====================== ================= =============

Power is injected in the chip layer, spread evenly over each die's cells. Heat leaves through
the spreader to a heat sink of convection resistance ``r_convec`` (HotSpot default 0.1 K/W)
distributed over the grid area; the substrate's underside is adiabatic (HotSpot's default, no
secondary path). Chip-layer cells outside any die are filler (underfill/mould, rho 0.625
[assumption: TAP-2.5D fills the gaps between chiplets with underfill-class material]).
The copper spreader (HotSpot: 30 mm x 1 mm) is taken as large as the grid; rho(Cu) = 0.0025 as
in TAP-2.5D's mixed-layer formula.

Each cell of each layer is a node; neighbour conductances are the series halves
(``g = k t w / (dx/2 + dx/2)`` laterally with per-cell k, ``g = A / (t1/2k1 + t2/2k2)``
vertically). ``G T = P + g_amb T_amb`` (G sparse, symmetric positive definite) is solved with
Jacobi-preconditioned conjugate gradients (relative residual 1e-11), falling back to
:func:`scipy.sparse.linalg.spsolve`.
"""

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["Layer", "TAP25D_LAYERS", "CHIP_LAYER", "solve_grid", "solve_system", "ThermalResult",
           "series_resistance_k_per_w"]


@dataclass(frozen=True)
class Layer:
    name: str
    rho_mk_per_w: float        # thermal resistivity, m K / W
    thickness_m: float
    rho_filler: float | None = None   # resistivity where no die is (chip layer only)


# system.md "TAP-2.5D layer stack" (HotSpot), bottom to top; spreader: HotSpot default 1 mm Cu.
TAP25D_LAYERS = (
    Layer("substrate", 3.33, 0.2e-3),
    Layer("c4", 0.625, 70e-6),
    Layer("interposer", 0.01, 110e-6),
    Layer("ubump", 0.625, 10e-6),
    Layer("chip", 0.01, 150e-6, rho_filler=0.625),
    Layer("tim", 0.25, 20e-6),
    Layer("spreader", 0.0025, 1e-3),
)
CHIP_LAYER = 4
R_CONVEC_K_PER_W = 0.1     # HotSpot default r_convec (system.md)
AMBIENT_C = 45.0           # HotSpot default ambient, 318.15 K [recall: HotSpot hotspot.config]


def solve_grid(power_w, die_mask, dx_m, dy_m, *, layers=TAP25D_LAYERS, chip_layer=CHIP_LAYER,
               ambient_c=AMBIENT_C, r_convec=R_CONVEC_K_PER_W):
    """Solve the steady-state grid. Returns temperatures, shape (n_layers, ny, nx), in deg C.

    ``power_w``: (ny, nx) watts injected in each chip-layer cell. ``die_mask``: (ny, nx) True
    where the chip layer is silicon (else filler). The top layer loses heat to ambient through
    ``r_convec`` K/W split over the cells in proportion to area.
    """
    power_w = np.asarray(power_w, float)
    mask = np.asarray(die_mask, bool)
    ny, nx = power_w.shape
    nl = len(layers)
    ncell = nx * ny
    n = nl * ncell
    area = dx_m * dy_m
    k = np.empty((nl, ny, nx))
    t = np.array([L.thickness_m for L in layers])
    for i, L in enumerate(layers):
        if L.rho_filler is not None:
            k[i] = np.where(mask, 1.0 / L.rho_mk_per_w, 1.0 / L.rho_filler)
        else:
            k[i] = 1.0 / L.rho_mk_per_w
    idx = np.arange(n).reshape(nl, ny, nx)
    rows, cols, vals = [], [], []

    def couple(a, b, g):
        a, b, g = a.ravel(), b.ravel(), g.ravel()
        rows.extend((a, b, a, b))
        cols.extend((a, b, b, a))
        vals.extend((g, g, -g, -g))

    # lateral, x direction: half-cell resistances in series
    tl = t[:, None, None]
    if nx > 1:
        r = (dx_m / 2) / (k[:, :, :-1] * tl * dy_m) + (dx_m / 2) / (k[:, :, 1:] * tl * dy_m)
        couple(idx[:, :, :-1], idx[:, :, 1:], 1.0 / r)
    if ny > 1:
        r = (dy_m / 2) / (k[:, :-1, :] * tl * dx_m) + (dy_m / 2) / (k[:, 1:, :] * tl * dx_m)
        couple(idx[:, :-1, :], idx[:, 1:, :], 1.0 / r)
    # vertical between layers
    for i in range(nl - 1):
        r = (t[i] / 2) / (k[i] * area) + (t[i + 1] / 2) / (k[i + 1] * area)
        couple(idx[i], idx[i + 1], 1.0 / r)
    # convection from the top layer: r_convec shared by all cells in parallel
    r_cell = r_convec * ncell
    g_amb = 1.0 / ((t[-1] / 2) / (k[-1] * area) + r_cell)
    top = idx[-1].ravel()
    rows.append(top)
    cols.append(top)
    vals.append(g_amb.ravel())
    G = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n, n))
    rhs = np.zeros(n)
    rhs[idx[chip_layer].ravel()] += power_w.ravel()
    rhs[top] += g_amb.ravel() * ambient_c
    return _solve_spd(G, rhs).reshape(nl, ny, nx)


def _dot(a, b):
    # an unthreaded inner product: scipy's cg uses BLAS ddot, and multi-threaded OpenBLAS spins
    # on a loaded machine (measured 10x more CPU time on the shared 2-core host)
    return float(np.add.reduce(a * b))


def _solve_spd(G, rhs, rtol=1e-11):
    """G is symmetric positive definite: Jacobi-preconditioned conjugate gradients (10x faster
    than a direct factorisation here), falling back to the sparse direct solver if CG stalls."""
    G = G.tocsr()
    dinv = 1.0 / G.diagonal()
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = dinv * r
    p = z.copy()
    rz = _dot(r, z)
    stop = rtol * np.sqrt(_dot(rhs, rhs))
    for _ in range(20 * G.shape[0]):
        q = G @ p
        alpha = rz / _dot(p, q)
        x += alpha * p
        r -= alpha * q
        if np.sqrt(_dot(r, r)) <= stop:
            return x
        z = dinv * r
        rz_new = _dot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
    return spla.spsolve(G.tocsc(), rhs)


def series_resistance_k_per_w(area_m2, *, layers=TAP25D_LAYERS, chip_layer=CHIP_LAYER,
                              r_convec=R_CONVEC_K_PER_W):
    """Analytic 1-D resistance from the chip layer's mid-plane to ambient for uniform heating.

    With power spread evenly over the whole area, no heat flows sideways or down (adiabatic
    bottom), so the chip-layer temperature rise is P x (r_convec + sum over the layers above the
    chip of t / (k A) + half the chip's own t / (k A)).
    """
    r = r_convec + layers[chip_layer].rho_mk_per_w * layers[chip_layer].thickness_m / 2 / area_m2
    for L in layers[chip_layer + 1:]:
        r += L.rho_mk_per_w * L.thickness_m / area_m2
    return r


@dataclass
class ThermalResult:
    temps_c: np.ndarray          # chip layer temperature, (ny, nx)
    extent_mm: tuple             # (x0, x1, y0, y1) for plotting
    per_die: dict                # die -> {"peak_c", "mean_c", "power_w"}
    peak_c: float
    ambient_c: float
    total_power_w: float
    resolution_mm: float


def solve_system(system, power_by_die, *, resolution_mm=0.5, ambient_c=AMBIENT_C,
                 r_convec=R_CONVEC_K_PER_W):
    """Thermal map of a placed system given each die's power (W)."""
    nx = max(1, int(round(system.interposer_w / resolution_mm)))
    ny = max(1, int(round(system.interposer_h / resolution_mm)))
    dx = system.interposer_w / nx
    dy = system.interposer_h / ny
    xc = (np.arange(nx) + 0.5) * dx
    yc = (np.arange(ny) + 0.5) * dy
    X, Y = np.meshgrid(xc, yc)
    pmap = np.zeros((ny, nx))
    mask = np.zeros((ny, nx), bool)
    cells = {}
    for d in system.dies:
        x0, y0, x1, y1 = d.rect
        m = (X >= x0) & (X < x1) & (Y >= y0) & (Y < y1)
        if not m.any():   # a die smaller than a cell: its nearest cell
            j = min(nx - 1, int((x0 + x1) / 2 / dx))
            i = min(ny - 1, int((y0 + y1) / 2 / dy))
            m[i, j] = True
        cells[d.name] = m
        mask |= m
        p = float(power_by_die.get(d.name, 0.0))
        pmap[m] += p / m.sum()
    T = solve_grid(pmap, mask, dx * 1e-3, dy * 1e-3, ambient_c=ambient_c, r_convec=r_convec)
    chip = T[CHIP_LAYER]
    per_die = {name: {"peak_c": float(chip[m].max()), "mean_c": float(chip[m].mean()),
                      "power_w": float(power_by_die.get(name, 0.0))} for name, m in cells.items()}
    return ThermalResult(chip, (0.0, system.interposer_w, 0.0, system.interposer_h), per_die,
                         float(chip.max()), ambient_c, float(pmap.sum()), resolution_mm)
