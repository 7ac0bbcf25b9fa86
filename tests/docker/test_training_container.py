"""Training in an isolated container (model.training_runtime=docker) gives the same results
as training in the worker's process.

The project's image is built from the Dockerfile on local base images (see conftest.py). The
train DAG runs twice on the same warehouse with the same seed and settings: once in process,
once with train_candidates in a container started through the Docker provider, which reaches
the real MLflow server and the warehouse (PostgreSQL, or the SQLite file bind-mounted) with
connections passed as private environment. The chosen family, its cross-validated score and
its holdout metrics must be equal, and both models must be registered and decided on.
"""

from __future__ import annotations

import json
import uuid

import pytest
from helpers import set_config

from example_warehouse import WAREHOUSE_CONN_ENV, load_observations, own_warehouse

pytestmark = [pytest.mark.integration, pytest.mark.docker]

CONF = {
    "training_window_days": 365,
    "model_families": ["logistic_regression", "hist_gradient_boosting"],
    "search_iterations": 2,
    "force_promote": False,
}


def _train(monkeypatch, env: dict[str, str]) -> tuple:
    """Run the train DAG as parsed under `env` (the runtime is chosen when the DAG file is parsed)."""
    from airflow.dag_processing.dagbag import DagBag

    from mlops.config import PROJECT_ROOT

    set_config(monkeypatch, **env)
    dag = DagBag(dag_folder=str(PROJECT_ROOT / "dags" / "train.py")).dags["train"]
    dag_run = dag.test(run_conf=CONF)
    tis = {ti.task_id: ti for ti in dag_run.get_task_instances()}
    assert dag_run.state == "success", {k: ti.state for k, ti in tis.items()}
    return dag, tis


def _trained(ti) -> dict:
    return ti.xcom_pull(task_ids="train_candidates")


def _scores(trained: dict) -> dict:
    """Every candidate's cross-validated score and holdout metrics (not run ids or timings)."""
    return {
        c["family"]: {k: v for k, v in c.items() if k == "cv_score" or k.startswith("holdout_")}
        for c in trained["candidates"]
    }


def test_training_in_a_container_matches_training_in_process(stack, project_image, tmp_path_factory, monkeypatch):
    connection = own_warehouse(stack, tmp_path_factory, f"container_train_{stack.warehouse}")
    set_config(monkeypatch, **{WAREHOUSE_CONN_ENV: json.dumps(connection)})
    assert load_observations() > 19000

    suffix = uuid.uuid4().hex[:6]
    _, in_process = _train(monkeypatch, {"MLOPS__MODEL__REGISTERED_NAME": f"in_process_{suffix}"})
    dag, in_container = _train(
        monkeypatch,
        {
            "MLOPS__MODEL__REGISTERED_NAME": f"in_container_{suffix}",
            "MLOPS__MODEL__TRAINING_RUNTIME": "docker",
            "MLOPS__MODEL__TRAINING_IMAGE": project_image["MLOPS_IMAGE"],
        },
    )
    # The container path really was taken: the task is the Docker provider's operator.
    from airflow.providers.docker.operators.docker import DockerOperator

    assert isinstance(dag.get_task("train_candidates"), DockerOperator)
    assert in_container["train_candidates"].operator == "PipelineContainerOperator"
    assert in_process["train_candidates"].operator != in_container["train_candidates"].operator

    expected, got = _trained(in_process["train_candidates"]), _trained(in_container["train_candidates"])
    assert got["data_digest"] == expected["data_digest"]
    assert got["chosen"]["family"] == expected["chosen"]["family"]
    assert got["chosen"]["holdout"] == pytest.approx(expected["chosen"]["holdout"], rel=1e-9)
    assert set(_scores(got)) == set(_scores(expected)) == set(CONF["model_families"])
    for family, scores in _scores(expected).items():
        assert _scores(got)[family] == pytest.approx(scores, rel=1e-9), family
    for tis in (in_process, in_container):
        assert tis["register"].xcom_pull(task_ids="register")["version"] == "1"
        assert tis["promote"].xcom_pull(task_ids="promote")["outcome"] in ("first_champion", "rejected")
