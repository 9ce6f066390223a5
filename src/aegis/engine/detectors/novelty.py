"""``aegis``: a streaming novelty detector built from cheap record-breaking signals.

Each point is compared with everything the series has shown so far, through five signals:

* ``value``: how far the value goes beyond the highest (or lowest) value seen so far, as a
  fraction of the range seen so far;
* ``mean``: the same for the mean of the last ``mean_window`` points (sustained shifts);
* ``ew_fast`` / ``ew_slow``: the point's z-score against an exponentially weighted mean and
  variance (two memories), scored by how far ``|z|`` beats the largest ``|z|`` seen so far;
* ``seasonal``: the point's deviation from the exponentially weighted profile of its time of day
  (``seasonal_bins`` bins a day), over the typical deviation at that time of day (but at least
  ``seasonal_global_share`` of the typical deviation at any time), scored the same way.

A signal's excess ``e`` is weighted, the largest wins, and ``s = e / (1 + e)`` (1 when ``e``
overflows: a range of a few subnormals, then a real value). To report an
episode once rather than at each of its points, the output is what ``s`` adds over the largest
``s`` of the previous ``suppress_window`` points, and that is mapped to [0, 1] by
``u / (u + score_scale)``: a score of 0.5 means an increase of ``score_scale``.

Everything is O(1) per point and the state is a fixed number of floats (ring buffers of
``mean_window`` and ``suppress_window`` values, ``seasonal_bins`` profile bins), so memory does not
grow with the series. The first ``warmup`` valid points score 0 (they only teach the state).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aegis.engine.detectors.base import (
    FloatArray,
    Timestamp,
    clean_value,
    epoch_seconds,
    series_arrays,
)
from aegis.engine.detectors.errors import InvalidDetectorParams

NAME = "aegis"
DAY = 86400.0
INF = math.inf


class NoveltyParams(BaseModel):
    """The parameters of the ``aegis`` detector (they ship in signed model archives)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    warmup: int = Field(30, ge=0, le=1_000_000)
    mean_window: int = Field(20, ge=2, le=10_000)
    w_value: float = Field(1.0, ge=0.0, le=100.0)
    w_mean: float = Field(1.0, ge=0.0, le=100.0)
    ew_fast_alpha: float = Field(0.01, gt=0.0, lt=1.0)
    w_ew_fast: float = Field(1.0, ge=0.0, le=100.0)
    ew_slow_alpha: float = Field(0.001, gt=0.0, lt=1.0)
    w_ew_slow: float = Field(1.0, ge=0.0, le=100.0)
    ew_warmup: int = Field(20, ge=1, le=1_000_000)
    seasonal_bins: int = Field(96, ge=1, le=1440)
    seasonal_alpha: float = Field(0.3, gt=0.0, le=1.0)
    seasonal_scale_alpha: float = Field(0.01, gt=0.0, le=1.0)
    seasonal_bin_scale_alpha: float = Field(0.1, gt=0.0, le=1.0)
    seasonal_global_share: float = Field(0.5, ge=0.0, le=10.0)
    seasonal_min_visits: int = Field(3, ge=1, le=10_000)
    seasonal_warmup: int = Field(20, ge=0, le=1_000_000)
    w_seasonal: float = Field(0.3, ge=0.0, le=100.0)
    suppress_window: int = Field(20, ge=1, le=10_000)
    score_scale: float = Field(0.045, gt=0.0, le=1.0)


class NoveltyDetector:
    """The ``aegis`` detector for one series. See the module docstring for the method."""

    name = NAME

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        try:
            self._p = NoveltyParams.model_validate(params or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "parameters"
            raise InvalidDetectorParams(
                f"invalid parameters for detector {NAME!r}: {where}: {first['msg']}"
            ) from None
        self._state = _initial_state(self._p)

    @property
    def params(self) -> dict[str, Any]:
        return self._p.model_dump()

    def update(self, timestamp: Timestamp, value: float) -> float:
        return self._run([epoch_seconds(timestamp)], [clean_value(value)])[0]

    def score_series(self, timestamps: Any, values: Any) -> FloatArray:
        ts, xs = series_arrays(timestamps, values)
        return np.asarray(self._run(ts, xs), dtype=np.float64)

    def get_state(self) -> dict[str, Any]:
        return _copy_state(self._state)

    def set_state(self, state: dict[str, Any]) -> None:
        expected = _initial_state(self._p)
        if not isinstance(state, dict) or set(state) != set(expected):
            raise InvalidDetectorParams("the state does not belong to a detector with these params")
        restored: dict[str, Any] = {}
        for key, default in expected.items():
            got = state[key]
            if isinstance(default, list) != isinstance(got, list) or (
                isinstance(default, list) and len(got) != len(default)
            ):
                raise InvalidDetectorParams(f"state entry {key!r} does not fit these params")
            kind = type(default[0]) if isinstance(default, list) else type(default)
            try:
                restored[key] = (
                    [_number(v, kind) for v in got] if isinstance(got, list) else _number(got, kind)
                )
            except (TypeError, ValueError):
                raise InvalidDetectorParams(f"state entry {key!r} is not a valid number") from None
        self._state = restored

    def _run(self, ts: list[float], xs: list[float]) -> list[float]:  # noqa: PLR0912, PLR0915
        """Score points in order. The one loop that both ``update`` and ``score_series`` use."""
        p = self._p
        st = self._state
        warmup = p.warmup
        w_value, w_mean = p.w_value, p.w_mean
        win = p.mean_window
        a_fast, w_fast = p.ew_fast_alpha, p.w_ew_fast
        a_slow, w_slow = p.ew_slow_alpha, p.w_ew_slow
        ew_warmup = p.ew_warmup
        bins = p.seasonal_bins
        a_season, a_scale = p.seasonal_alpha, p.seasonal_scale_alpha
        min_visits, season_warmup, w_season = (
            p.seasonal_min_visits,
            p.seasonal_warmup,
            p.w_seasonal,
        )
        rest = p.suppress_window
        scale = p.score_scale
        a_bin, share = p.seasonal_bin_scale_alpha, p.seasonal_global_share

        n = st["n"]
        vmax, vmin = st["vmax"], st["vmin"]
        buf, bsum = st["buf"], st["bsum"]
        mmax, mmin = st["mmax"], st["mmin"]
        fm, fs, fz = st["fast_mean"], st["fast_var"], st["fast_zmax"]
        sm, ss, sz = st["slow_mean"], st["slow_var"], st["slow_zmax"]
        prof, visits = st["profile"], st["visits"]
        sdev, sdev_n, szmax = st["season_dev"], st["season_n"], st["season_zmax"]
        ring, rpos = st["ring"], st["rpos"]
        bdev = st["bin_dev"]

        out: list[float] = []
        append = out.append
        for t, x in zip(ts, xs, strict=True):
            if x != x:  # noqa: PLR0124 (the fastest NaN test) NaN: not scored, not learnt
                append(0.0)
                continue
            e = 0.0
            if n == 0:
                vmax = vmin = x
                fm = sm = x
            else:
                # value records
                span = vmax - vmin
                if span > 0.0:
                    if x > vmax:
                        e = w_value * (x - vmax) / span
                    elif x < vmin:
                        e = w_value * (vmin - x) / span
                if x > vmax:
                    vmax = x
                elif x < vmin:
                    vmin = x
                # exponentially weighted z-scores
                d = x - fm
                if n >= ew_warmup:
                    sd = math.sqrt(fs)
                    floor = 1e-9 * (abs(fm) + 1.0)
                    z = abs(d) / (sd if sd > floor else floor)
                    if z > fz:
                        if fz > 0.0:
                            c = w_fast * (z - fz) / fz
                            e = c if c > e else e
                        fz = z
                a = 1.0 / (n + 1) if n * a_fast < 1.0 else a_fast
                fm += a * d
                fs = (1.0 - a) * (fs + a * d * d)
                d = x - sm
                if n >= ew_warmup:
                    sd = math.sqrt(ss)
                    floor = 1e-9 * (abs(sm) + 1.0)
                    z = abs(d) / (sd if sd > floor else floor)
                    if z > sz:
                        if sz > 0.0:
                            c = w_slow * (z - sz) / sz
                            e = c if c > e else e
                        sz = z
                a = 1.0 / (n + 1) if n * a_slow < 1.0 else a_slow
                sm += a * d
                ss = (1.0 - a) * (ss + a * d * d)
            # mean of the last `win` points, and its records
            slot = n % win
            bsum += x - buf[slot]
            buf[slot] = x
            if slot == win - 1:
                bsum = math.fsum(buf)  # no drift, whatever the magnitudes went through
            if n >= win - 1:
                mean = bsum / win
                if n >= win:
                    span = mmax - mmin
                    if span > 0.0:
                        if mean > mmax:
                            c = w_mean * (mean - mmax) / span
                            e = c if c > e else e
                        elif mean < mmin:
                            c = w_mean * (mmin - mean) / span
                            e = c if c > e else e
                    if mean > mmax:
                        mmax = mean
                    elif mean < mmin:
                        mmin = mean
                else:
                    mmax = mmin = mean
            # time-of-day profile
            if t == t:  # noqa: PLR0124 (not NaN: the point has a timestamp)
                k = int((t % DAY) * bins / DAY)
                k = k if k < bins else bins - 1
                seen = visits[k]
                if seen == 0:
                    prof[k] = x
                else:
                    r = x - prof[k]
                    ar = abs(r)
                    if seen >= min_visits and sdev_n > season_warmup:
                        den = max(bdev[k], share * sdev, 1e-12)
                        z = ar / den
                        if z > szmax:
                            if szmax > 0.0:
                                c = w_season * (z - szmax) / szmax
                                e = c if c > e else e
                            szmax = z
                    prof[k] += a_season * r
                    bdev[k] = ar if seen == 1 else bdev[k] + a_bin * (ar - bdev[k])
                    sdev = ar if sdev_n == 0 else sdev + a_scale * (ar - sdev)
                    if sdev_n <= season_warmup:
                        sdev_n += 1
                if seen < min_visits:
                    visits[k] = seen + 1
            n += 1
            s = e / (1.0 + e) if e < INF else 1.0  # an excess past the largest double
            # report what this point adds over the recent past
            prev = max(ring)
            ring[rpos] = s
            rpos = rpos + 1 if rpos + 1 < rest else 0
            u = s - prev
            if n <= warmup or u <= 0.0:
                append(0.0)
            else:
                append(u / (u + scale))
        st.update(
            n=n,
            vmax=vmax,
            vmin=vmin,
            bsum=bsum,
            mmax=mmax,
            mmin=mmin,
            fast_mean=fm,
            fast_var=fs,
            fast_zmax=fz,
            slow_mean=sm,
            slow_var=ss,
            slow_zmax=sz,
            season_dev=sdev,
            season_n=sdev_n,
            season_zmax=szmax,
            rpos=rpos,
        )
        return out


def _initial_state(p: NoveltyParams) -> dict[str, Any]:
    return {
        "n": 0,
        "vmax": 0.0,
        "vmin": 0.0,
        "buf": [0.0] * p.mean_window,
        "bsum": 0.0,
        "mmax": 0.0,
        "mmin": 0.0,
        "fast_mean": 0.0,
        "fast_var": 0.0,
        "fast_zmax": 0.0,
        "slow_mean": 0.0,
        "slow_var": 0.0,
        "slow_zmax": 0.0,
        "profile": [0.0] * p.seasonal_bins,
        "visits": [0] * p.seasonal_bins,
        "season_dev": 0.0,
        "season_n": 0,
        "season_zmax": 0.0,
        "ring": [0.0] * p.suppress_window,
        "rpos": 0,
        "bin_dev": [0.0] * p.seasonal_bins,
    }


def _number(value: object, kind: type) -> int | float:
    """A state number of the expected kind: ints stay exact, floats must be finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(value)
    if kind is int:
        if not isinstance(value, int) or value < 0:
            raise ValueError(value)
        return value
    if not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _copy_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, list) else v for k, v in state.items()}
