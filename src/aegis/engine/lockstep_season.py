"""The time-of-day state of the lockstep kernel (:mod:`aegis.engine.lockstep`).

:class:`Season` holds every row's time-of-day profile tables and advances them one point per
step; :class:`Held` holds the state of rows that stay in the same bins in dense arrays. Both
run the reference detector's operations in its order, so the scores stay bit-identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from aegis.engine.lockstep import BoolArray, FloatArray, IntArray


class Season:
    """The time-of-day profile tables of every row (flat: row * bins + bin)."""

    def __init__(self, rows: int, bins: int, p: dict[str, Any]) -> None:
        self.profile = np.zeros(rows * bins)
        self.bin_dev = np.zeros(rows * bins)
        self.visits = np.zeros(rows * bins, dtype=np.int64)
        self.dev = np.zeros(rows)
        self.dev_n = np.zeros(rows, dtype=np.int64)
        self.min_visits = int(p["seasonal_min_visits"])
        self.warmup = int(p["seasonal_warmup"])
        self.alpha = float(p["seasonal_alpha"])
        self.scale_alpha = float(p["seasonal_scale_alpha"])
        self.bin_alpha = float(p["seasonal_bin_scale_alpha"])
        self.share = float(p["seasonal_global_share"])
        self.dev_settled = False  # every row's dev_n is past warm-up: it no longer moves
        self.steady_visits = max(self.min_visits, 2)  # no bin can be on its first revisit

    def step_timed(
        self, flat: IntArray, x: FloatArray, timed: BoolArray, z_out: FloatArray
    ) -> None:
        """One point of each of the first ``len(x)`` rows, where only ``timed`` points have a
        time (the others are not seen by the profile)."""
        if timed.any():
            sel = np.flatnonzero(timed)
            picked = np.full(sel.size, -1.0)
            self.step(flat[sel], x[sel], sel, picked)
            z_out[sel] = picked

    def step(
        self, flat: IntArray, x: FloatArray, rows: slice | IntArray, z_out: FloatArray
    ) -> Held | None:
        """One point of each row in ``rows``; the rows' state when it ran steady (no branch
        left to take: every following point in the same bins runs as :meth:`Held.step`)."""
        seen = self.visits[flat]
        centre = self.profile[flat]
        r = x - centre
        ar = np.abs(r)
        if self.dev_settled and seen.min() >= self.steady_visits:
            return self._steady(flat=flat, rows=rows, centre=centre, r=r, ar=ar, z_out=z_out)
        revisit = seen > 0
        dev, dev_n = self.dev[rows], self.dev_n[rows]
        judged = revisit & (seen >= self.min_visits) & (dev_n > self.warmup)
        if judged.any():
            bin_dev = self.bin_dev[flat]
            den = np.maximum(np.maximum(bin_dev, self.share * dev), 1e-12)
            z_out[:] = np.where(judged, ar / den, -1.0)
        self.profile[flat] = np.where(revisit, centre + self.alpha * r, x)
        if revisit.any():
            bin_dev = self.bin_dev[flat]
            self.bin_dev[flat] = np.where(
                revisit,
                np.where(seen == 1, ar, bin_dev + self.bin_alpha * (ar - bin_dev)),
                bin_dev,
            )
            self.dev[rows] = np.where(
                revisit, np.where(dev_n == 0, ar, dev + self.scale_alpha * (ar - dev)), dev
            )
            if not self.dev_settled:
                self.dev_n[rows] = dev_n + (revisit & (dev_n <= self.warmup))
                self.dev_settled = bool(self.dev_n.min() > self.warmup)
        if seen.min() < self.min_visits:
            self.visits[flat] = np.minimum(seen + 1, self.min_visits)
        return None

    def _steady(
        self,
        *,
        flat: IntArray,
        rows: slice | IntArray,
        centre: FloatArray,
        r: FloatArray,
        ar: FloatArray,
        z_out: FloatArray,
    ) -> Held | None:
        """Every point revisits a bin seen often enough, every row is past warm-up.

        The same operations as :meth:`step` with the branches that can no longer be taken
        left out (visits no longer change, no bin is on its first revisit).
        """
        dev = self.dev[rows]
        bin_dev = self.bin_dev[flat]
        z_out[:] = ar / np.maximum(np.maximum(bin_dev, self.share * dev), 1e-12)
        profile = centre + self.alpha * r
        self.profile[flat] = profile
        spread = ar - bin_dev
        spread *= self.bin_alpha
        spread += bin_dev
        self.bin_dev[flat] = spread
        drift = ar - dev
        drift *= self.scale_alpha
        drift += dev
        self.dev[rows] = drift
        if not isinstance(rows, slice):
            return None
        return Held(self, flat, profile, spread, drift)


class Held:
    """The time-of-day state of rows ``0..n`` held in dense arrays while they stay in the same
    bins and steady: :meth:`Season._steady` without the gathers from and scatters to the
    tables, which get the state back (:meth:`store`) when a row changes bin. Each point's
    operations are :meth:`Season._steady`'s, in its order, so the results are identical.
    """

    def __init__(
        self,
        season: Season,
        flat: IntArray,
        profile: FloatArray,
        bin_dev: FloatArray,
        dev: FloatArray,
    ) -> None:
        self.alpha, self.share = season.alpha, season.share
        self.bin_alpha, self.scale_alpha = season.bin_alpha, season.scale_alpha
        self.flat, self.profile, self.bin_dev, self.dev = flat, profile, bin_dev, dev

    def step(self, x: FloatArray, z_out: FloatArray) -> None:
        """The next point of the first ``len(x)`` rows (rows that have ended drop out)."""
        n = x.shape[0]
        if n < self.dev.shape[0]:
            self.flat, self.profile = self.flat[:n], self.profile[:n]
            self.bin_dev, self.dev = self.bin_dev[:n], self.dev[:n]
        r = x - self.profile
        ar = np.abs(r)
        bin_dev, dev = self.bin_dev, self.dev
        z_out[:] = ar / np.maximum(np.maximum(bin_dev, self.share * dev), 1e-12)
        self.profile = self.profile + self.alpha * r
        spread = ar - bin_dev
        spread *= self.bin_alpha
        spread += bin_dev
        self.bin_dev = spread
        drift = ar - dev
        drift *= self.scale_alpha
        drift += dev
        self.dev = drift

    def store(self, season: Season) -> None:
        """Put the rows' state back in the tables."""
        season.profile[self.flat] = self.profile
        season.bin_dev[self.flat] = self.bin_dev
        season.dev[: self.dev.shape[0]] = self.dev
