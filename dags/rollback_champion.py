"""
### Roll back the champion

Manual only. Moves the registry alias `champion` of the configured model
(`model.registered_name`) back to the version it replaced (the `previous_champion` tag that
train's promote task wrote), or to `target_version` if given. Recorded like a promotion:
tags and description of the version, and a row in the warehouse table `model_decisions`
(action `rollback`). batch_score picks the restored champion up on its next run.

Trigger with conf `{"target_version": "3", "reason": "v4 over-predicts rain"}`, or with an
empty conf to go back one step.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

from mlops.dag_defaults import dag_default_args


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["mlops", "train", "ops"],
    default_args=dag_default_args(),
    doc_md=__doc__,
    params={
        "target_version": Param(
            None,
            type=["null", "string", "integer"],
            description="Version to make champion. Empty: the previous champion.",
        ),
        "reason": Param(None, type=["null", "string"], description="Why (recorded with the decision)."),
    },
)
def rollback_champion():
    @task
    def rollback() -> dict:
        from mlops.training import promotion
        from mlops.training.pipeline import trigger_info

        ctx = get_current_context()
        params = dict(ctx["params"])
        target = params.get("target_version")
        decision = promotion.rollback(
            None if target in (None, "") else str(target), trigger_info(params, ctx["dag_run"])
        )
        print(decision["reason"])
        return {k: decision[k] for k in ("outcome", "reason", "champion_before", "champion_after")}

    rollback()


rollback_champion()
