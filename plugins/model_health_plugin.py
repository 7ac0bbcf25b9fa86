"""Airflow plugin: the "Model health" view in the Airflow UI.

Registers the FastAPI app of mlops.model_health_app at /model-health in Airflow's API server
(`fastapi_apps`), and an external view (`external_views`) that puts "Model health" in the UI's
navigation (Browse menu) and shows the app inside the UI at /plugin/model-health. The app
requires a logged-in Airflow user (see mlops.model_health_app).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mlops.model_health import VIEW_PREFIX
from mlops.model_health_app import app


class ModelHealthPlugin(AirflowPlugin):
    name = "model_health"
    fastapi_apps = [{"app": app, "url_prefix": VIEW_PREFIX, "name": "Model health"}]
    external_views = [
        {
            "name": "Model health",
            "href": f"{VIEW_PREFIX}/",
            "url_route": "model-health",
            "destination": "nav",
            "category": "browse",
        }
    ]
