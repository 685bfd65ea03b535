"""Each job as a command-line tool: a thin layer over lambda_handler."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DEST, REGION, launch, snapshots

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ROOT = Path(__file__).resolve().parent.parent
JOBS = {"creator": creator, "copier": copier, "manager": manager}


def script(name, *args, env):
    return subprocess.run(
        [sys.executable, str(ROOT / f"ebs_snapshot_{name}.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def bare_env(tmp_path):
    """A shell with no AWS region, credentials or profile anywhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env


@pytest.fixture(autouse=True)
def restore_env(monkeypatch):
    """main() sets LOG_LEVEL and AWS_REGION, as a process would; undo that after each test."""
    monkeypatch.setenv("LOG_LEVEL", "INFO")
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.mark.parametrize("name", list(JOBS))
def test_help_shows_the_usage(name, bare_env):
    done = script(name, "--help", env=bare_env)
    assert done.returncode == 0
    for option in ("--region", "--dry-run", "--json", "--verbose", "Exit codes"):
        assert option in done.stdout
    assert ("--instance-id" in done.stdout) is (name == "creator")


@pytest.mark.parametrize("name", list(JOBS))
def test_bad_usage_exits_2(name, bare_env):
    done = script(name, "--bogus", env=bare_env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "unrecognized arguments" in done.stderr


@pytest.mark.parametrize("name", list(JOBS))
def test_no_region_exits_2_with_one_line(name, bare_env):
    done = script(name, env=bare_env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "no region" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", list(JOBS))
def test_no_credentials_exits_2_with_one_line(name, bare_env):
    done = script(name, "--region", REGION, env=bare_env)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "credentials" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("name", list(JOBS))
def test_a_profile_that_does_not_exist_exits_2_with_one_line(name, bare_env):
    done = script(name, "--region", REGION, env=bare_env | {"AWS_PROFILE": "nosuchprofile"})
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "nosuchprofile" in done.stderr
    assert "Traceback" not in done.stderr


def test_dry_run_prints_what_it_would_do_and_changes_nothing(capsys):
    iid, vols = launch({"Backup": "Yes", "Name": "web", "Copy_Dest": DEST})
    assert creator.main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run: nothing was changed" in out
    assert "would create (1):" in out and vols["/dev/sda1"] in out and iid in out
    assert "permitted (1):" in out and "ec2:CreateSnapshot" in out
    assert snapshots() == {}


def test_report_columns_are_aligned(capsys):
    launch({"Backup": "Yes", "Retention": "x"})
    launch({"Backup": "Yes", "Retention": "soon"})
    creator.main([])
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("created (2):") + 1 : lines.index("created (2):") + 4]
    assert (
        len(
            {
                line.index("volume id") if "volume id" in line else line.index("vol-")
                for line in table
            }
        )
        == 1
    )


def test_json_prints_the_summary(capsys):
    launch({"Backup": "Yes"})
    assert creator.main(["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"] == {"created": 1} and summary["region"] == REGION


def test_instance_id_is_repeatable(capsys):
    a, _ = launch({"Backup": "Yes"})
    b, _ = launch({"Backup": "Yes"})
    launch({"Backup": "Yes"})
    assert creator.main(["--instance-id", a, "--instance-id", b, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(c["instance_id"] for c in summary["created"]) == sorted([a, b])


def test_region_option_picks_the_region(capsys, monkeypatch):
    launch({"Backup": "Yes"}, region=DEST)
    monkeypatch.delenv("AWS_REGION")
    assert creator.main(["--region", DEST, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["region"] == DEST
    assert len(snapshots(DEST)) == 1


def test_a_failed_item_exits_1_and_is_named(api, capsys):
    _, vols = launch({"Backup": "Yes"})
    api.fail("CreateSnapshot", "IncorrectState")
    assert creator.main([]) == 1
    out = capsys.readouterr().out
    assert "failures (1):" in out and vols["/dev/sda1"] in out and "IncorrectState" in out


def test_a_listing_refused_by_aws_exits_1_with_one_line(api, capsys):
    api.fail("DescribeSnapshots", "UnauthorizedOperation")
    assert manager.main([]) == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "UnauthorizedOperation" in err


def test_verbose_adds_json_log_lines_on_stderr(capsys):
    launch({"Backup": "Yes"})
    creator.main([])
    assert capsys.readouterr().err == ""
    creator.main(["--verbose"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["created", "summary"]
    assert '"level"' not in out  # stdout is the report alone
