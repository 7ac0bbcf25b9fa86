"""The model registry's aliases: one answer to "which version holds alias X", for every caller.

promotion, scoring (batch_score) and drift_check all ask here, so they share one policy:

* "none" is returned ONLY for a positive answer of a working MLflow server that the alias
  does not exist: the registered model was read (HTTP 200) and its `aliases` do not hold it,
  or the server answered RESOURCE_DOES_NOT_EXIST "Registered Model with name=<name> not found"
  AND a search for that exact name answered (HTTP 200) with no model. A model that does not
  exist yet has no champion: that is the first training run, not an outage.
* Anything else - an HTTP 404 from the endpoint (wrong path, a proxy), 5xx, a refused
  connection, a timeout, any error text containing "not found" - is an outage: retried with
  exponential backoff (`ATTEMPTS` tries), then raised as RegistryUnavailable, which fails the
  task (and Airflow retries it). A registry outage never reads as "no champion".

The alias names and the tag that remembers the previous champion live here only.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
# Model version tag: the version this one replaced as champion (rollback's default target).
PREVIOUS_CHAMPION_TAG = "previous_champion"
# Registered-model tag: a promotion or rollback decided but not yet completed (see promotion).
PENDING_DECISION_TAG = "pending_decision"

# Tries of one registry read before the task fails, waiting 1, 2, 4... s (at most 10 s) between.
ATTEMPTS = 4
MAX_WAIT_SECONDS = 10


class RegistryUnavailable(RuntimeError):
    """The registry did not give a usable answer after ATTEMPTS tries (the task should fail)."""


def client():
    """An MlflowClient on the tracking server of the `mlflow` Airflow connection."""
    from mlops.io.connections import configure_mlflow

    return configure_mlflow().MlflowClient()


def _model_absent(mlflow_client, name: str, exc: Exception) -> bool:
    """True only if exc says the registered model does not exist AND a search confirms it."""
    from mlflow.exceptions import MlflowException

    if not (
        isinstance(exc, MlflowException)
        and exc.error_code == "RESOURCE_DOES_NOT_EXIST"
        and f"name={name} not found" in exc.message
    ):
        return False
    escaped = name.replace("'", "\\'")
    return not mlflow_client.search_registered_models(filter_string=f"name = '{escaped}'")


def _retrying(what: str, call):
    """call() with ATTEMPTS tries and exponential backoff; RegistryUnavailable after the last."""
    import tenacity

    retryer = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=1, max=MAX_WAIT_SECONDS),
        before_sleep=lambda state: log.warning(
            "registry: %s failed (try %d of %d): %s", what, state.attempt_number, ATTEMPTS, state.outcome.exception()
        ),
        reraise=False,
    )
    try:
        return retryer(call)
    except tenacity.RetryError as exc:
        last = exc.last_attempt.exception()
        raise RegistryUnavailable(f"registry: {what} failed {ATTEMPTS} times, last: {last}") from last


def read_model(name: str, mlflow_client=None) -> dict:
    """{"aliases": {alias: version}, "tags": {key: value}} of registered model `name`; both
    empty when the model does not exist (yet). Raises RegistryUnavailable for any other error
    (see the module docstring)."""
    mlflow_client = mlflow_client or client()

    def read() -> dict:
        try:
            model = mlflow_client.get_registered_model(name)
        except Exception as exc:
            if _model_absent(mlflow_client, name, exc):
                return {"aliases": {}, "tags": {}}
            raise
        aliases = {alias: str(version) for alias, version in (model.aliases or {}).items()}
        return {"aliases": aliases, "tags": dict(model.tags or {})}

    return _retrying(f"read of model {name!r}", read)


def aliases(name: str, mlflow_client=None) -> dict[str, str]:
    """{alias: version} of registered model `name` ({} when the model does not exist yet)."""
    return read_model(name, mlflow_client)["aliases"]


def alias_version(name: str, alias: str, mlflow_client=None) -> str | None:
    """The version number holding `alias` of model `name`, or None when that alias (or the
    model) does not exist. Raises RegistryUnavailable when the registry cannot tell."""
    return aliases(name, mlflow_client).get(alias)


def champion_version(name: str, mlflow_client=None) -> str | None:
    """alias_version(name, "champion")."""
    return alias_version(name, CHAMPION, mlflow_client)
