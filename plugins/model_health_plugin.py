"""Airflow plugin: the "Model health" view in the Airflow UI.

Registers the FastAPI app of mlops.health.app at /model-health in Airflow's API server
(`fastapi_apps`), and an external view (`external_views`) that puts "Model health" in the UI's
navigation (Browse menu) and shows the app inside the UI at /plugin/model-health. The app
requires a logged-in Airflow user (see mlops.health.app).

Every Airflow process loads plugins (scheduler, DAG processor, each task), but only the API
server serves this app: the app (FastAPI and Airflow's API security, about 2 s of imports) is
imported on the first request, not when the plugin is loaded.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

VIEW_PREFIX = "/model-health"  # mlops.health.model.VIEW_PREFIX (not imported here: see above)


class AppOnFirstRequest:
    """An ASGI app that imports mlops.health.app.app when the first request arrives."""

    def __init__(self) -> None:
        self._app = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            from mlops.health.app import app

            self._app = app
        await self._app(scope, receive, send)

    def __repr__(self) -> str:
        return "mlops.health.app:app"


class ModelHealthPlugin(AirflowPlugin):
    name = "model_health"
    fastapi_apps = [{"app": AppOnFirstRequest(), "url_prefix": VIEW_PREFIX, "name": "Model health"}]
    external_views = [
        {
            "name": "Model health",
            "href": f"{VIEW_PREFIX}/",
            "url_route": "model-health",
            "destination": "nav",
            "category": "browse",
        }
    ]
