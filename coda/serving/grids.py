"""Interpolation grids of the iteration-cost table (`coda.serving.costs.CostTable`): the knots
of a tiled kernel's time and of log-spaced axes, and a bilinear table with a scalar fast path."""

from __future__ import annotations

from bisect import bisect_right

import numpy as np


def log_grid(lo: int, hi: int, exact: int, ratio: float) -> np.ndarray:
    """Integers lo..min(exact, hi), then about geometric steps of `ratio` up to hi (included)."""
    pts = list(range(lo, min(exact, hi) + 1))
    x = float(pts[-1] if pts else lo)
    while x < hi:
        x = max(x * ratio, x + 1)
        pts.append(min(int(round(x)), hi))
    return np.unique(np.asarray(pts, dtype=np.int64))


def tile_grid(hi: int, exact: int, tile: int) -> np.ndarray:
    """Integers 1..min(exact, hi), then every multiple of `tile` and the integer after it, and hi:
    the knots of a function that jumps right after each multiple of `tile` (a GEMM or attention
    kernel's row tiles) and varies smoothly in between."""
    k = np.arange(tile * (exact // tile), hi + 1, tile)
    pts = np.concatenate([np.arange(1, min(exact, hi) + 1), k, k + 1, [hi]])
    return np.unique(pts[(pts >= 1) & (pts <= hi)]).astype(np.int64)


def bilinear(xg: np.ndarray, yg: np.ndarray, z: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z (..., len(xg), len(yg)) interpolated bilinearly at points (x, y) inside the grids;
    returns (len(x), ...)."""
    i = np.clip(np.searchsorted(xg, x, side="right") - 1, 0, len(xg) - 2)
    j = np.clip(np.searchsorted(yg, y, side="right") - 1, 0, len(yg) - 2)
    fx = (x - xg[i]) / (xg[i + 1] - xg[i])
    fy = (y - yg[j]) / (yg[j + 1] - yg[j])
    z00, z10, z01, z11 = z[..., i, j], z[..., i + 1, j], z[..., i, j + 1], z[..., i + 1, j + 1]
    out = z00 * (1 - fx) * (1 - fy) + z10 * fx * (1 - fy) + z01 * (1 - fx) * fy + z11 * fx * fy
    return np.moveaxis(out, -1, 0)


class Grid:
    """A table z (pp, len(xg), len(yg)) of per-stage seconds on a 2-D grid, interpolated
    bilinearly: `many` at arrays of points (as `bilinear`), `at` at one point with scalar
    arithmetic (the simulator's hot path: one decode group or a few prefill chunks per
    iteration). Both evaluate the same expression in the same order, so they agree to the bit."""

    def __init__(self, xg: np.ndarray, yg: np.ndarray, z: np.ndarray) -> None:
        self.xg, self.yg, self.z = xg, yg, z
        self._x, self._y = xg.tolist(), yg.tolist()
        self._zt = np.ascontiguousarray(np.moveaxis(z, 0, -1))  # (len(xg), len(yg), pp): z[i, j] a view
        self._ni, self._nj = len(xg) - 2, len(yg) - 2

    def many(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(len(x), pp) values at the points (x, y)."""
        return bilinear(self.xg, self.yg, self.z, x, y)

    def along_y(self, x: float, y: np.ndarray) -> np.ndarray:
        """(len(y),) values of stage 0 at the points (x, y_k) (one row of the grid: a decode stretch)."""
        xs, yg = self._x, self.yg
        i = min(max(bisect_right(xs, x) - 1, 0), self._ni)
        j = np.clip(np.searchsorted(yg, y, side="right") - 1, 0, self._nj)
        fx = (x - xs[i]) / (xs[i + 1] - xs[i])
        fy = (y - yg[j]) / (yg[j + 1] - yg[j])
        z0, z1 = self.z[0, i], self.z[0, i + 1]
        return np.asarray(z0[j] * (1 - fx) * (1 - fy) + z1[j] * fx * (1 - fy) + z0[j + 1] * (1 - fx) * fy
                          + z1[j + 1] * fx * fy)

    def at(self, x: float, y: float) -> np.ndarray:
        """(pp,) values at the point (x, y)."""
        xs, ys = self._x, self._y
        i = min(max(bisect_right(xs, x) - 1, 0), self._ni)
        j = min(max(bisect_right(ys, y) - 1, 0), self._nj)
        fx = (x - xs[i]) / (xs[i + 1] - xs[i])
        fy = (y - ys[j]) / (ys[j + 1] - ys[j])
        zt = self._zt
        return zt[i, j] * (1 - fx) * (1 - fy) + zt[i + 1, j] * fx * (1 - fy) + zt[i, j + 1] * (1 - fx) * fy \
            + zt[i + 1, j + 1] * fx * fy


__all__ = ["Grid", "bilinear", "log_grid", "tile_grid"]
