"""The scheduled-job examples users copy: ``pipelines/sync_all.py``, the cron line, the GitHub
Actions workflow and the Airflow DAG, each run or checked for what a scheduler relies on."""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomlkit
import yaml

from invoice_source.pipeline import SOURCES
from invoice_source.sandbox import SandboxSet
from tests.ops.conftest import CLI, duckdb_query

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "pipelines" / "examples"
CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


def json_records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.strip().splitlines()]


def test_given_the_sandboxes_when_sync_all_runs_as_a_script_then_json_logs_exit_zero_and_models(
    sandboxes: SandboxSet, tmp_path: Path, duckdb_path: Path, state_dir: Path
) -> None:
    script = ROOT / "pipelines" / "sync_all.py"

    done = subprocess.run(
        [sys.executable, str(script), "--destination", str(duckdb_path),
         "--pipelines-dir", str(state_dir)],
        cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    records = json_records(done.stderr)
    assert records[-1]["event"] == "run_finished" and records[-1]["status"] == "ok"
    assert set(records[-1]["sources"]) == set(SOURCES)
    history = duckdb_query(duckdb_path, "select distinct source from invoice_history")
    assert {row[0] for row in history} == set(SOURCES)


def test_given_the_cron_example_when_its_command_runs_then_json_records_end_with_run_finished(
    sandboxes: SandboxSet, tmp_path: Path
) -> None:
    lines = [
        line
        for line in (EXAMPLES / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert len(lines) == 1
    fields = lines[0].split(None, 5)
    assert all(CRON_FIELD.match(value) for value in fields[:5]), fields[:5]
    command = fields[5]
    assert "invoice-sync --log-format json run all" in command
    log_file = tmp_path / "sync.jsonl"
    runnable = (
        command.replace("cd /srv/invoice-sync", f"cd {shlex.quote(str(tmp_path))}")
        .replace(".venv/bin/invoice-sync", shlex.quote(str(CLI)))
        .replace("/var/log/invoice-sync/sync.jsonl", shlex.quote(str(log_file)))
    )

    done = subprocess.run(["/bin/sh", "-c", runnable], env=dict(os.environ), timeout=60)

    assert done.returncode == 0
    records = json_records(log_file.read_text())
    assert records[-1]["event"] == "run_finished" and records[-1]["exit_code"] == 0
    assert (tmp_path / "invoice_sync.duckdb").exists(), "the default DuckDB file is in the cd dir"


def test_given_the_github_workflow_example_then_scheduled_without_overlap_using_secrets() -> None:
    path = EXAMPLES / "github-actions-invoice-sync.yml"
    workflow = yaml.safe_load(path.read_text())
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    job = workflow["jobs"]["sync"]
    secrets_example = tomlkit.parse((ROOT / ".dlt" / "secrets.toml.example").read_text())

    assert ".github" not in path.parts, "the example is not this repository's own CI"
    assert len(triggers["schedule"][0]["cron"].split()) == 5
    assert workflow["concurrency"]["cancel-in-progress"] is False
    runs = [step.get("run", "") for step in job["steps"]]
    assert any("pipelines/sync_all.py" in run for run in runs)
    assert any("pip-audit --strict -r requirements.lock" in run for run in runs)
    assert not any("${{" in run for run in runs), "inputs reach the shell only through env"
    for section, keys in secrets_example["sources"].items():
        for key in keys:
            env_name = f"SOURCES__{section}__{key}".upper()
            assert job["env"][env_name] == "${{ secrets." + env_name + " }}"
    assert job["env"]["DESTINATION__POSTGRES__CREDENTIALS"].startswith("${{ secrets.")


@dataclass
class FakeOperator:
    """Stands in for an Airflow operator: remembers what runs after it and what it runs."""

    name: str
    action: Callable[[], Any]
    downstream: list[FakeOperator] = field(default_factory=list)
    trigger_rule: str = ""

    def __rshift__(self, other: FakeOperator) -> FakeOperator:
        self.downstream.append(other)
        return other


@dataclass
class FakeAirflow:
    """The parts of Airflow and of dlt's Airflow helper the DAG example uses."""

    dag_kwargs: dict[str, Any] = field(default_factory=dict)
    dag_function: Callable[[], None] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)
    operators: list[FakeOperator] = field(default_factory=list)

    def modules(self) -> dict[str, types.ModuleType]:
        airflow = types.ModuleType("airflow")
        decorators = types.ModuleType("airflow.decorators")
        helper = types.ModuleType("dlt.helpers.airflow_helper")
        decorators.dag = self.dag  # type: ignore[attr-defined]
        decorators.task = self.task  # type: ignore[attr-defined]
        fake = self

        class PipelineTasksGroup:
            def __init__(self, pipeline_name: str, **kwargs: Any) -> None:
                self.pipeline_name = pipeline_name

            def add_run(self, pipeline: Any, data: Any, **kwargs: Any) -> list[FakeOperator]:
                fake.runs.append({"pipeline": pipeline, "source": data, **kwargs})
                operator = FakeOperator(data.name, lambda: pipeline.run(data), [], "")
                operator.trigger_rule = kwargs.get("trigger_rule", "")
                fake.operators.append(operator)
                return [operator]

        helper.PipelineTasksGroup = PipelineTasksGroup  # type: ignore[attr-defined]
        return {"airflow": airflow, "airflow.decorators": decorators, helper.__name__: helper}

    def dag(self, **kwargs: Any) -> Callable[[Callable[[], None]], Callable[[], None]]:
        self.dag_kwargs = kwargs

        def decorate(function: Callable[[], None]) -> Callable[[], None]:
            self.dag_function = function
            return lambda: None  # Airflow builds the DAG later; the test does it below

        return decorate

    def task(self, **kwargs: Any) -> Callable[[Callable[[], None]], Callable[[], FakeOperator]]:
        def decorate(function: Callable[[], None]) -> Callable[[], FakeOperator]:
            def make() -> FakeOperator:
                operator = FakeOperator(function.__name__, function, [], kwargs["trigger_rule"])
                self.operators.append(operator)
                return operator

            return make

        return decorate


@pytest.fixture
def fake_airflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAirflow]:
    fake = FakeAirflow()
    for name, module in fake.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    yield fake


def test_given_the_airflow_example_when_its_dag_runs_then_each_source_loads_in_turn_then_models(
    sandboxes: SandboxSet,
    fake_airflow: FakeAirflow,
    duckdb_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "airflow_dag.py"))
    assert fake_airflow.dag_function is not None
    fake_airflow.dag_function.__globals__["DESTINATION"] = str(duckdb_path)

    fake_airflow.dag_function()
    order: list[FakeOperator] = [fake_airflow.operators[0]]
    while order[-1].downstream:
        order.append(order[-1].downstream[0])
    for operator in order:
        operator.action()

    assert fake_airflow.dag_kwargs["max_active_runs"] == 1
    assert fake_airflow.dag_kwargs["catchup"] is False
    assert [operator.name for operator in order] == [*SOURCES, "build_models"]
    assert all(operator.trigger_rule == "all_done" for operator in order)
    assert all(run["decompose"] == "none" for run in fake_airflow.runs)
    history = duckdb_query(duckdb_path, "select distinct source from invoice_history")
    assert {row[0] for row in history} == set(SOURCES)
