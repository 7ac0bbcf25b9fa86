"""The example data in a warehouse of a test's own, stored the way ingest stores it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

import stack as stack_module
from mlops.config import PROJECT_ROOT, get_config
from mlops.io import warehouse

DATA = PROJECT_ROOT / "include" / "data" / "port_of_turku_weather.csv.gz"
WAREHOUSE_CONN_ENV = f"AIRFLOW_CONN_{get_config().connections.warehouse.upper()}"


def load_observations() -> int:
    """Insert the example data into observations as ingest would; returns the row count."""
    frame = pd.read_csv(DATA)
    frame = frame.drop_duplicates("Timestamp", keep="first")
    frame.loc[frame["Pressure_millibars"] == 0, "Pressure_millibars"] = np.nan
    frame["Timestamp"] = pd.to_datetime(frame["Timestamp"]).dt.strftime(warehouse.TIMESTAMP_FORMAT)
    frame["batch_id"] = "turku-" + frame["Timestamp"].str[:4]
    frame["loaded_at"] = "2026-01-01 00:00:00"
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    warehouse.ensure_schema()
    engine = warehouse.engine()
    table = sa.Table("observations", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert(), rows)
    return len(rows)


def own_warehouse(stack, tmp_path_factory, name: str) -> dict:
    """A fresh, empty database on the parametrized backend, as an Airflow connection."""
    if stack.warehouse == "postgres":
        stack_module.create_pg_database(stack, name, fresh=True)
        return {**stack.warehouse_connection(), "schema": name}
    return {"conn_type": "sqlite", "host": str(tmp_path_factory.mktemp(name) / "warehouse.db")}
