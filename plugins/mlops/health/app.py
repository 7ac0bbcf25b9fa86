"""The FastAPI app of the "Model health" view, mounted in Airflow's API server by the plugin
plugins/model_health_plugin.py.

Protection: every route depends on Airflow's own `requires_access_view(AccessView.WEBSITE)`
(airflow.api_fastapi.core_api.security), the dependency Airflow's UI routes use: it resolves
the user from the `Authorization: Bearer <JWT>` header or the UI's `_token` cookie through the
configured auth manager, answers 401 without a valid token and 403 without the permission.
A browser that is not logged in gets a page linking to Airflow's login.

Routes (relative to the mount point, /model-health):
  GET /                the page (mlops.health.page.render of mlops.health.model.gather)
  GET /reports/{key}   a report streamed from the object store; only report files under the
                       reports/quarantine prefixes (mlops.health.model.report_key)
"""

from __future__ import annotations

import urllib.parse

from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse

# Reports may quote file contents: render them as an opaque origin, without scripts or fetches.
REPORT_HEADERS = {
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-store",
}

# Airflow's dependency for its own UI views: a valid JWT (bearer header or `_token` cookie) of a
# user the auth manager lets see the website.
require_login = requires_access_view(AccessView.WEBSITE)

app = FastAPI(
    title="Model health",
    description="Champion, decisions, drift, batches and freshness of the MLOps pipeline.",
    dependencies=[Depends(require_login)],
)


def _base(request: Request) -> str:
    """The path this app is mounted at (behind any Airflow base URL prefix)."""
    return request.scope.get("root_path", "").rstrip("/")


@app.exception_handler(HTTPException)
async def _refusal(request: Request, exc: HTTPException):
    """401/403 as JSON for API clients; for a browser a page with a link to Airflow's login."""
    if exc.status_code not in (401, 403) or "text/html" not in request.headers.get("accept", ""):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
    from airflow.api_fastapi.app import get_auth_manager

    login = get_auth_manager().get_url_login(next_url=str(request.url))
    body = (
        f'<p>{exc.detail}. <a href="{urllib.parse.quote(login, safe="/:?=&%")}" target="_top">Log in to Airflow</a></p>'
    )
    return HTMLResponse(body, status_code=exc.status_code)


@app.get("/", response_class=HTMLResponse)
def health_page(request: Request) -> HTMLResponse:
    """The health page, rendered on each request (read-only queries)."""
    from mlops.health import model as model_health
    from mlops.health import page as model_health_page

    return HTMLResponse(
        model_health_page.render(model_health.gather(), _base(request)), headers={"Cache-Control": "no-store"}
    )


@app.get("/reports/{key:path}")
def report(key: str) -> StreamingResponse:
    """Stream a report file (report.html, validation.json, result.json) from the object store."""
    from mlops.health import model as model_health

    try:
        chunks, content_type, length = model_health.open_report(key)
    except model_health.ReportNotAllowed as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    except FileNotFoundError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from exc
    headers = dict(REPORT_HEADERS)
    if length is not None:
        headers["Content-Length"] = str(length)
    return StreamingResponse(chunks, media_type=content_type, headers=headers)
