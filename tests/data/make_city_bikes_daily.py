"""Write include/data/city_bikes_daily.csv.gz: a small synthetic DAILY data set for tests and the demo.

A city bike scheme, one row per day from 2021-01-01 to 2024-06-30 (1,277 rows): the day's
weather (a STRING category: sunny, cloudy, rainy, snowy), temperature, wind, the number of
rentals and whether the day was busy (a STRING label, "yes"/"no": more than 1.15 times the
median of the previous 28 days).
The configuration include/config/city_bikes_daily.yaml predicts `busy_tomorrow`.

Plausible, not real: temperature follows the seasons (a sine over the year plus noise), weather
comes in spells (today's again with probability WEATHER_PERSISTENCE), the
weather's odds follow the temperature, rentals grow with warmth and fall with rain, snow,
wind and Sundays, rise on Saturdays. From 2023-04 the scheme adds stations: rentals jump by half, so the
drift check has a real change to find. Deterministic (seeded): rerunning writes the same file.

    python tests/data/make_city_bikes_daily.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parents[2] / "include" / "data" / "city_bikes_daily.csv.gz"
BUSY_FACTOR = 1.15
WEATHER_PERSISTENCE = 0.85


def make_frame(seed: int = 7) -> pd.DataFrame:
    """The data set as strings, as an upstream system would export it."""
    rng = np.random.default_rng(seed)
    days = pd.date_range("2021-01-01", "2024-06-30", freq="D")
    season = np.sin(2 * np.pi * (days.day_of_year.to_numpy() - 110) / 365.25)
    temperature = 6 + 12 * season + rng.normal(0, 3.5, len(days))
    wind = np.clip(rng.gamma(2.0, 6.0, len(days)), 0, 90)
    weather = _weather(rng, temperature)
    effect = {"sunny": 1.0, "cloudy": 0.8, "rainy": 0.45, "snowy": 0.25}
    rentals = 900 + 160 * np.clip(temperature + 5, 0, None)
    rentals *= np.array([effect[w] for w in weather]) * (1 - np.clip(wind - 25, 0, 60) / 100)
    rentals *= np.select([days.day_of_week == 5, days.day_of_week == 6], [1.3, 0.7], 1.0)
    rentals *= np.where(days >= "2023-04-01", 1.5, 1.0)  # new stations
    rentals = np.round(rentals * rng.lognormal(0, 0.08, len(days))).astype(int)
    frame = pd.DataFrame(
        {
            "Date": days.strftime("%Y-%m-%d"),
            "Weather": weather,
            "Temperature_C": np.round(temperature, 1),
            "Wind_speed_kmph": np.round(wind, 1),
            "Rentals": rentals,
            "Busy": np.where(_busy(rentals), "yes", "no"),
        }
    )
    return frame.astype(str)


def _busy(rentals: np.ndarray) -> np.ndarray:
    """A busy day: more than BUSY_FACTOR times the median of the previous 28 days' rentals
    (the operator's "busier than usual", which calls for extra rebalancing: any season)."""
    usual = pd.Series(rentals).rolling(28, min_periods=1).median().shift(1).bfill()
    return rentals > BUSY_FACTOR * usual.to_numpy()


def _weather(rng: np.random.Generator, temperature: np.ndarray) -> np.ndarray:
    """Each day's weather: yesterday's again with probability WEATHER_PERSISTENCE (weather comes
    in spells, which is what makes tomorrow predictable from today), else drawn from the odds."""
    kinds = ["sunny", "cloudy", "rainy", "snowy"]
    weather = [rng.choice(kinds, p=_weather_odds(temperature[0]))]
    for t in temperature[1:]:
        keep = rng.random() < WEATHER_PERSISTENCE and (weather[-1] != "snowy" or t < 2)
        weather.append(weather[-1] if keep else rng.choice(kinds, p=_weather_odds(t)))
    return np.array(weather)


def _weather_odds(temperature: float) -> list[float]:
    """Odds of sunny, cloudy, rainy, snowy: snow only below +2 C."""
    snowy = 0.35 if temperature < 2 else 0.0
    sunny = 0.25 + 0.015 * max(temperature, 0)
    rainy = 0.2
    cloudy = 1 - snowy - sunny - rainy
    return [sunny, cloudy, rainy, snowy]


if __name__ == "__main__":
    make_frame().to_csv(OUT, index=False, compression={"method": "gzip", "mtime": 0})
    print(f"wrote {OUT}")
