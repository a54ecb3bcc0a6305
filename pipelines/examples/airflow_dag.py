"""Airflow: invoice-sync every hour with dlt's Airflow helper, one task per source, then models.

Copy this file into your Airflow ``dags/`` folder and your ``.dlt/`` folder to ``dags/.dlt/``
(dlt's helper reads config from there), install ``invoice-sync[postgres]`` (or the extra of your
warehouse) on the workers, and give the secrets as Airflow environment variables
(``SOURCES__STRIPE__API_KEY``, ``DESTINATION__POSTGRES__CREDENTIALS``, ...).

``PipelineTasksGroup`` runs every task in a fresh data folder and restores the pipeline state
(the cursors) from the destination first, so any worker can take any task; a task killed half
way loses nothing, because the cursors in the destination only move with a completed load. The
source tasks run one after another (they share one pipeline state; in parallel the last one to
finish would overwrite the others' cursors) and each runs even if the one before failed.
``max_active_runs=1`` keeps two DAG runs from overlapping. Use a warehouse destination: a local
DuckDB file is not shared between workers.

The sources are built when Airflow parses this file (dlt's documented pattern), so their
configuration must be readable by the DAG processor too; nothing is requested from the APIs
until a task runs.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dlt
import pendulum
from airflow.decorators import dag, task
from dlt.helpers.airflow_helper import PipelineTasksGroup

from invoice_source.pipeline import (
    DEFAULT_DATASET,
    DEFAULT_PIPELINE_NAME,
    SOURCES,
    build_source,
    resolve_destination,
)

# any dlt destination name with its credentials in config; None reads `destination_type`
DESTINATION = "postgres"
SCHEDULE = "17 * * * *"


def make_pipeline() -> dlt.Pipeline:
    """The pipeline every task of the DAG uses."""
    return dlt.pipeline(
        pipeline_name=DEFAULT_PIPELINE_NAME,
        destination=resolve_destination(DESTINATION, DEFAULT_PIPELINE_NAME),
        dataset_name=DEFAULT_DATASET,
    )


@dag(
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"owner": "data", "retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["invoice-sync", "dlt"],
)
def invoice_sync() -> None:
    """Stripe, PrepBusiness and Alternative Payments invoices, then the SQL models."""
    tasks = PipelineTasksGroup(
        DEFAULT_PIPELINE_NAME,
        use_data_folder=False,
        wipe_local_data=True,
        abort_task_if_any_job_failed=True,
    )
    pipeline = make_pipeline()
    previous: Any = None
    for name in SOURCES:
        runs = tasks.add_run(
            pipeline, build_source(name), decompose="none", trigger_rule="all_done"
        )
        if previous is not None:
            previous >> runs[0]
        previous = runs[-1]

    @task(trigger_rule="all_done")
    def build_models() -> None:
        """Build the SQL models in the destination from whatever has landed."""
        from invoice_source.models import run_models

        run_models(make_pipeline())

    previous >> build_models()


invoice_sync()
