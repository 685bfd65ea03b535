"""What each of the three job files must be on its own (they are built from src: test_build)."""

import ast
import importlib
import json
import re
import sys
from pathlib import Path

import boto3
import pytest
from conftest import NOW, REGION, launch

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ROOT = Path(__file__).resolve().parents[2]
JOBS = {"creator": creator, "copier": copier, "manager": manager}
FILES = {name: ROOT / f"ebs_snapshot_{name}.py" for name in JOBS}


@pytest.mark.parametrize("name", list(FILES))
def test_each_job_imports_only_the_standard_library_boto3_and_botocore(name):
    tree = ast.parse(FILES[name].read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) - {"__future__"} <= {"boto3", "botocore"}


@pytest.mark.parametrize("name", list(FILES))
def test_nothing_is_hard_coded(name):
    code = FILES[name].read_text()
    assert not re.search(r"\b[a-z]{2}(-gov)?-[a-z]+-\d\b", code), "a region name"
    assert not re.search(r"\b\d{12}\b", code), "an account id"
    assert not re.search(r"\b(i|vol|snap|ami)-[0-9a-f]{8,}\b", code), "a resource id"
    assert "endpoint_url" not in code


@pytest.mark.parametrize("name", list(FILES))
def test_no_client_is_created_at_import(name, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("client created at import time")

    monkeypatch.setattr(boto3, "client", refuse)
    monkeypatch.setattr(boto3, "resource", refuse)
    importlib.reload(JOBS[name])
    monkeypatch.undo()
    importlib.reload(JOBS[name])


@pytest.mark.parametrize("name", list(FILES))
def test_lambda_handler_takes_event_and_a_none_context(name):
    result = JOBS[name].lambda_handler({}, None)
    assert result["job"] == name and result["region"] == REGION
    json.dumps(result)  # JSON-serialisable as it is


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("value", ["yes please", "maybe", 2, None, [True]])
def test_an_unreadable_dry_run_stops_the_job_before_anything(name, value):
    with pytest.raises(ValueError, match="dry_run"):
        JOBS[name].run({"dry_run": value}, None, now=NOW)


@pytest.mark.parametrize("name", list(FILES))
def test_no_region_is_a_clear_error(name, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    with pytest.raises(ValueError, match="AWS_REGION"):
        JOBS[name].run({}, None, now=NOW)


def test_dry_run_given_as_a_string_word_is_honoured():
    launch({"Backup": "Yes"})
    result = creator.run({"dry_run": "true"}, None, now=NOW)
    assert result["dry_run"] is True and "would_create" in result


def test_log_lines_are_one_json_object_each_on_stdout_and_honour_log_level(capsys, monkeypatch):
    launch({"Backup": "Yes", "Retention": "bad"})
    creator.run({}, None, now=NOW)
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["action"] for r in records] == ["warnings", "created", "summary"]
    assert all(r["job"] == "creator" and r["region"] == REGION for r in records)
    for wanted in ("WARNING", "WARN", "warn"):  # Python's name, Lambda's, any case
        monkeypatch.setenv("LOG_LEVEL", wanted)
        creator.run({}, None, now=NOW)
        records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
        assert [(r["level"], r["action"]) for r in records] == [
            ("WARN", "warnings"),
            ("WARN", "summary"),  # the run had a warning: its summary is at that level
        ]


@pytest.mark.parametrize(
    ("lambda_level", "shown"),
    [("TRACE", 3), ("DEBUG", 3), ("INFO", 3), ("WARN", 2), ("ERROR", 0), ("FATAL", 0)],
)
def test_lambdas_log_level_is_honoured_and_log_level_wins(lambda_level, shown, capsys, monkeypatch):
    launch({"Backup": "Yes", "Retention": "bad"})
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    monkeypatch.setenv("AWS_LAMBDA_LOG_LEVEL", lambda_level)
    creator.run({}, None, now=NOW)
    assert len(capsys.readouterr().out.strip().splitlines()) == shown
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")  # the function's own setting comes first
    creator.run({"id": "another"}, None, now=NOW)
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_job_failed_names_every_failure_once_per_error():
    summary = {
        "job": "manager",
        "region": REGION,
        "failures": [
            {"id": "snap-1", "error": "A: x"},
            {"id": "snap-2", "error": "B: y"},
            {"id": "snap-3", "error": "A: x"},
        ],
    }
    message = str(manager.JobFailed(summary))
    assert message == "manager in us-east-1: 3 failed: snap-1, snap-3: A: x; snap-2: B: y"


def test_summaries_of_all_three_jobs_are_json(monkeypatch):
    launch({"Backup": "Yes", "Copy_Dest": "us-west-2"})
    for job in (creator, copier, manager):
        json.dumps(job.run({}, None, now=NOW))


@pytest.mark.parametrize("name", list(FILES))
@pytest.mark.parametrize("event", ['{"dry_run": true}', ["i-0abc"], 42, 1.5, True])
def test_an_event_that_is_not_a_json_object_is_refused_with_one_clear_error(name, event, capsys):
    with pytest.raises(ValueError, match="the event must be a JSON object") as refused:
        JOBS[name].lambda_handler(event, None)
    assert type(event).__name__ in str(refused.value)
    (line,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"summary"' in x]
    assert line["Failures"] == 1  # the summary line and its metrics, even so


@pytest.mark.parametrize("name", list(FILES))
def test_a_null_event_is_an_empty_one(name):
    assert JOBS[name].lambda_handler(None, None)["job"] == name
