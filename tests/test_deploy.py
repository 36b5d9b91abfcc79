"""The deploy recipes in `pipelines/deploy/` work as written: the crontab line run by `sh -c`
in the bare environment cron gives a job, the GitHub Actions workflow's sync step on two fresh
runners in a row (the second stays incremental on state from the destination), and the Airflow
DAG's task when Airflow is installed (`make test-airflow`)."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from orb_source.catalog import TABLES
from orb_source.runner import make_pipeline
from orb_source.sandbox import Account, SandboxServer
from orb_source.sandbox.mutations import simulate_day
from tests.warehouse import assert_mirror

DEPLOY = Path(__file__).resolve().parent.parent / "pipelines" / "deploy"
VENV_BIN = Path(sys.executable).parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO (\w+): [\d,]+ rows read", re.M)


def crontab_command() -> str:
    [entry] = [
        line
        for line in (DEPLOY / "crontab").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    fields = entry.split(None, 5)
    assert fields[:5] == ["17", "*", "*", "*", "*"]
    return fields[5]


def test_the_crontab_line_runs_as_written(
    sandbox: SandboxServer, account: Account, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A project folder with `.venv` and a plain `KEY=value` env file, no `logs/` yet."""
    project = tmp_path / "srv" / "orb"
    (project / ".venv" / "bin").mkdir(parents=True)
    (project / ".venv" / "bin" / "orb-pipeline").symlink_to(VENV_BIN / "orb-pipeline")
    (project / "orb.env").write_text(
        f"ORB_API_KEY={sandbox.api_key}\nORB_BASE_URL={sandbox.base_url}\n"
    )
    command = crontab_command().replace("cd /srv/orb", f"cd {project}")
    assert command != crontab_command(), "the line starts in /srv/orb"
    home = tmp_path / "home"
    cron_environment = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "SHELL": "/bin/sh",
        # not cron's: keeps the test's pipeline state off the machine's (/var/dlt under root)
        "DLT_DATA_DIR": str(home / "dlt"),
    }

    runs = [
        subprocess.run(
            ["/bin/sh", "-c", command],
            env=cron_environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        for _ in range(2)
    ]

    assert [run.returncode for run in runs] == [0, 0], (project / "logs" / "orb.log").read_text()
    assert [(run.stdout, run.stderr) for run in runs] == [("", "")] * 2, "all output in the log"
    log = (project / "logs" / "orb.log").read_text()
    assert log.count(f"Synced Orb into duckdb at {project / 'orb_billing.duckdb'}") == 2
    logged = LOG_LINE.findall(log)
    assert sorted(set(logged)) == sorted(set(TABLES) - {"invoice_line_items"})
    assert len(logged) == 2 * (len(TABLES) - 1)
    summary = json.loads((project / "logs" / "last-run.json").read_text())
    assert summary["status"] == "ok"
    monkeypatch.chdir(project)
    assert_mirror(make_pipeline(pipelines_dir=str(home / "dlt" / "pipelines")), account)


def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((DEPLOY / "github-actions.yml").read_text())
    return loaded


def test_the_workflow_never_overlaps_and_takes_its_secrets_from_the_repository() -> None:
    flow = workflow()
    triggers = flow.get("on", flow.get(True))  # YAML 1.1 reads a bare `on` as true

    assert triggers["schedule"] == [{"cron": "17 * * * *"}]
    assert flow["concurrency"] == {"group": "orb-sync", "cancel-in-progress": False}
    [job] = flow["jobs"].values()
    steps = {step.get("name"): step for step in job["steps"]}
    assert steps["Sync"]["env"] == {
        "ORB_API_KEY": "${{ secrets.ORB_API_KEY }}",
        "DESTINATION__POSTGRES__CREDENTIALS": "${{ secrets.DESTINATION__POSTGRES__CREDENTIALS }}",
    }
    assert steps["Keep the run summary"]["if"] == "always()"
    assert steps["Keep the run summary"]["with"]["path"] in steps["Sync"]["run"]


def test_the_workflow_syncs_and_a_fresh_runner_stays_incremental(
    sandbox: SandboxServer, account: Account, postgres_url: str, tmp_path: Path
) -> None:
    """The Sync step's command and environment, with the repository's secrets, on two runners
    that each start with an empty folder: the second takes its state from PostgreSQL."""
    flow = workflow()
    [job] = flow["jobs"].values()
    [sync] = [step for step in job["steps"] if step.get("name") == "Sync"]
    secrets = {"ORB_API_KEY": sandbox.api_key, "DESTINATION__POSTGRES__CREDENTIALS": postgres_url}
    step_env = {
        name: secrets[re.fullmatch(r"\$\{\{ secrets\.(\w+) \}\}", value)[1]]  # type: ignore[index]
        for name, value in sync["env"].items()
    }
    summaries = []
    for runner in ("first", "second"):
        workspace = tmp_path / runner
        workspace.mkdir()
        environment = {
            "PATH": f"{VENV_BIN}:/usr/bin:/bin",
            "HOME": str(workspace / "home"),
            "DLT_DATA_DIR": str(workspace / "dlt"),  # a new runner's: empty
            "ORB_BASE_URL": sandbox.base_url,
            **step_env,
        }
        done = subprocess.run(
            ["bash", "-e", "-c", sync["run"]],  # GitHub's default shell for `run`
            cwd=workspace,
            env=environment,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        summaries.append(json.loads((workspace / "orb-summary.json").read_text()))
        if runner == "first":
            with account.lock:
                simulate_day(account, random.Random(11))

    invoices = [
        next(t for t in summary["tables"] if t["table"] == "invoices") for summary in summaries
    ]
    assert invoices[0]["rows_read"] == invoices[0]["rows_loaded"] > 100
    assert 0 < invoices[1]["rows_read"] < invoices[0]["rows_read"] / 2, "incremental"
    assert {s["destination"] for s in summaries} == {"postgres"}
    assert_mirror(make_pipeline("postgres", pipelines_dir=str(tmp_path / "check")), account)


@pytest.mark.airflow
def test_the_airflow_dag_runs_its_task(
    sandbox: SandboxServer, account: Account, postgres_url: str
) -> None:
    pytest.importorskip("airflow", reason="make test-airflow installs Airflow")
    spec = importlib.util.spec_from_file_location("orb_airflow_dag", DEPLOY / "airflow_dag.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.orb_billing_dag

    assert (dag.dag_id, dag.max_active_runs, dag.catchup) == ("orb_billing", 1, False)
    summary = dag.get_task("sync").python_callable()

    assert (summary["status"], summary["destination"]) == ("ok", "postgres")
    assert {t["table"] for t in summary["tables"]} == set(TABLES)
    assert_mirror(make_pipeline("postgres"), account)
    assert os.environ["DESTINATION__POSTGRES__CREDENTIALS"] == postgres_url
