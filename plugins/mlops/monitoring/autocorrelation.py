"""How many independent rows a time series is worth: the design effect of its autocorrelation.

The hours of a month of weather are not independent samples: a warm afternoon is followed by
a warm evening. KS and chi-square p-values computed with n = the row count then treat a
month as hundreds of independent draws and call the ordinary difference between two months
"significant". A test statistic on n autocorrelated rows has the variance of one on
n_eff = n / tau independent rows, where tau is the integrated autocorrelation time

    tau = 1 + 2 * sum_{k >= 1} rho_k

(Bayley & Hammersley 1946, "The 'effective' number of independent observations in an
autocorrelated time series", JRSS Suppl. 8; for an AR(1) process tau = (1 + rho) / (1 - rho),
Wilks, "Statistical Methods in the Atmospheric Sciences", 3rd ed. 2011, eq. 5.12). tau is
the design effect n / n_eff of survey sampling (Kish 1965).

Estimated here, on the reference at profile time:

* the series is placed on the regular grid of the data set's frequency (rows sorted by time;
  a missing period is a gap, never a neighbour, so "lag 1" is one period, not one row);
* the statistic drift_check tests is about shares of rows (the empirical CDF at the
  reference's bin edges for KS, category shares for chi-square), so tau is estimated for the
  indicator series 1{x <= edge} (or 1{x == category}) whose shares the test compares, and
  averaged over them: Rao & Scott's first-order correction divides a chi-square statistic by
  the mean design effect of its cells (Rao & Scott 1981, "The analysis of categorical data
  from complex sample surveys", JASA 76, eq. 3.2 with weights (1 - p_i));
* each indicator is centred on its calendar month's mean (the season-adjusted comparison is
  within the same months, so the seasonal cycle is not persistence);
* rho_k by FFT over the gap-masked grid (pairs present at both ends only), summed up to
  Sokal's automatic window: the smallest M with M >= SOKAL_C * tau(M) (Sokal 1997, "Monte
  Carlo methods in statistical mechanics", sec. 3; Madras & Sokal 1988), which keeps the
  sum's variance small where rho_k is noise.

tau is floored at 1: negative correlation never makes a row count for more than one.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# Sokal's window constant (5 for an exponential decay; 4-10 are usual).
SOKAL_C = 5.0
# A lag is used only while at least this many pairs of rows are that far apart.
MIN_PAIRS = 30
# At most this many of the reference's most recent periods are used (the estimate needs
# thousands, not millions; bounds the FFT at profile time).
MAX_PERIODS = 2**17
# The correction of the mean-removal bias (integrated_time) multiplies tau by at most this.
MAX_BIAS_FACTOR = 2.0
# Categorical: at most this many of the most frequent categories get an indicator.
MAX_CATEGORIES = 20


def grid_positions(times, frequency: str) -> np.ndarray:
    """Each row's period on the regular grid of `frequency` from the first time (int64, shape (n,)).

    times: datetimes of the rows, any order. frequency: a pandas Timedelta string ("1h", "1D").
    Raises ValueError for a missing time or a non-positive frequency.
    """
    stamps = pd.to_datetime(pd.Series(times), errors="coerce")
    if stamps.isna().any():
        raise ValueError(f"row {int(np.flatnonzero(stamps.isna().to_numpy())[0])}: time missing or not a time")
    step = pd.Timedelta(frequency)
    if step <= pd.Timedelta(0):
        raise ValueError(f"frequency {frequency!r} must be a positive duration")
    offsets = (stamps - stamps.min()).to_numpy()
    return np.rint(offsets / step.to_timedelta64()).astype(np.int64)


def autocorrelations(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation per lag of each row of a gap-masked series matrix, and the pairs behind it.

    grid: shape (k, L), NaN where no value. Each row is centred on its own mean. Returns
    (rho, pairs): rho shape (k, L), rho[:, 0] = 1 (NaN for a constant row); pairs shape (L,)
    counts the periods t with a value at t and t + lag (the same for every row when the rows
    share their gaps, as indicators of one feature do; taken from the first row).
    """
    present = ~np.isnan(grid)
    centred = np.where(present, grid - np.nanmean(grid, axis=1, keepdims=True), 0.0)
    length = grid.shape[1]
    size = 1 << int(np.ceil(np.log2(2 * length)))
    spectrum = np.fft.rfft(centred, size, axis=1)
    mask = np.fft.rfft(present[:1].astype(float), size, axis=1)
    products = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, :length]
    pairs = np.rint(np.fft.irfft(mask * np.conj(mask), size, axis=1)[0, :length])
    with np.errstate(invalid="ignore", divide="ignore"):
        covariance = products / np.maximum(pairs, 1.0)
        rho = covariance / covariance[:, :1]
    return rho, pairs


def integrated_time(rho: np.ndarray, pairs: np.ndarray, segment: float = math.inf) -> float:
    """tau = 1 + 2 sum_{k=1}^{M} rho_k with Sokal's window M (module docstring), at least 1.

    rho: autocorrelations by lag (rho[0] = 1), pairs: pairs per lag; the sum stops early at
    the first lag with fewer than MIN_PAIRS pairs or an undefined rho. segment: the rows
    each centring mean was taken over (a calendar month's); the autocorrelations of a series
    centred on its own mean are biased by about -tau / segment per lag (the variance of that
    mean: Priestley 1981, "Spectral Analysis and Time Series", sec. 5.3.3), so the windowed
    sum is divided by 1 - (2M - tau + 1) / segment (at most doubled, MAX_BIAS_FACTOR).
    NaN when rho[1] is undefined (a constant series, or fewer than MIN_PAIRS pairs one period apart).
    """
    if len(rho) < 2 or pairs[1] < MIN_PAIRS or not np.isfinite(rho[1]):
        return float("nan")
    usable = np.flatnonzero((pairs[1:] < MIN_PAIRS) | ~np.isfinite(rho[1:]))
    last = int(usable[0]) if len(usable) else len(rho) - 1
    taus = 1.0 + 2.0 * np.cumsum(rho[1 : last + 1])
    lags = np.arange(1, last + 1)
    window = np.flatnonzero(lags >= SOKAL_C * taus)
    at = int(window[0]) if len(window) else len(taus) - 1
    tau = float(taus[at])
    # Corrected before the floor: an independent series sums to about 1 - 2M / segment.
    shrink = 1.0 - (2.0 * lags[at] - tau + 1.0) / segment
    return max(tau / max(shrink, 1.0 / MAX_BIAS_FACTOR), 1.0)


def _month_centred(indicators: np.ndarray, months: np.ndarray | None) -> np.ndarray:
    """indicators (k, n) minus each calendar month's mean (months: shape (n,), or None)."""
    if months is None:
        return indicators
    labels, codes = np.unique(months, return_inverse=True)
    counts = np.bincount(codes, minlength=len(labels))
    means = np.stack([np.bincount(codes, weights=row, minlength=len(labels)) / counts for row in indicators])
    return indicators - means[:, codes]


def _on_grid(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Scatter (k, n) row values to (k, L) grid periods; the first row of a period wins, NaN elsewhere."""
    periods, first = np.unique(positions, return_index=True)
    keep = periods >= periods[-1] - MAX_PERIODS + 1
    periods, first = periods[keep], first[keep]
    grid = np.full((rows.shape[0], int(periods[-1] - periods[0]) + 1), np.nan)
    grid[:, periods - periods[0]] = rows[:, first]
    return grid


def design_effect(indicators: np.ndarray, positions: np.ndarray, months: np.ndarray | None, weights=None) -> dict:
    """The mean integrated autocorrelation time of indicator series of one feature's present rows.

    indicators: shape (k, n), 0/1 per indicator and row; positions: grid_positions of the
    rows (n,); months: calendar month per row (n,) or None; weights: per indicator (k,)
    for the mean (Rao-Scott: 1 - p_i), default equal. Returns {"design_effect": mean tau
    or None when no indicator has an estimate, "taus": per indicator (None where undefined),
    "window_pairs": pairs one period apart}.
    """
    if indicators.shape[0] == 0 or indicators.shape[1] < 2:
        return {"design_effect": None, "taus": [], "window_pairs": 0}
    grid = _on_grid(_month_centred(indicators.astype(float), months), positions)
    rho, pairs = autocorrelations(grid)
    # Rows per centring mean: per calendar month present, else the whole series.
    segment = indicators.shape[1] / (len(np.unique(months)) if months is not None else 1)
    taus = np.array([integrated_time(row, pairs, segment) for row in rho])
    weights = np.ones(len(taus)) if weights is None else np.asarray(weights, dtype=float)
    known = np.isfinite(taus) & (weights > 0)
    value = float(np.average(taus[known], weights=weights[known])) if known.any() else None
    return {
        "design_effect": value,
        "taus": [round(float(t), 3) if np.isfinite(t) else None for t in taus],
        "window_pairs": int(pairs[1]) if len(pairs) > 1 else 0,
    }


def lag1(values: np.ndarray, positions: np.ndarray, months: np.ndarray | None) -> float | None:
    """The month-centred lag-1 autocorrelation of a series (one period apart), None when undefined."""
    grid = _on_grid(_month_centred(values[None, :].astype(float), months), positions)
    rho, pairs = autocorrelations(grid)
    if rho.shape[1] < 2 or pairs[1] < MIN_PAIRS or not np.isfinite(rho[0, 1]):
        return None
    return float(rho[0, 1])
