"""Each job as a command-line tool: a thin layer over lambda_handler."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError
from botocore.parsers import ResponseParserError
from conftest import DEST, REGION, launch, snapshot_details, snapshots
from moto.core.botocore_stubber import BotocoreStubber

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

ROOT = Path(__file__).resolve().parents[2]
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


# ---- the operator's first day -------------------------------------------------------------


def one_line(err):
    assert "Traceback" not in err
    assert err.strip() and err.strip().count("\n") == 0, err
    return err.strip()


@pytest.mark.parametrize("region", ["us-east-9", "", "US-EAST-1"])
def test_a_region_botocore_does_not_know_exits_2_at_once(region, bare_env):
    env = bare_env | {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    started = time.monotonic()
    done = script("creator", "--region", region, env=env)
    assert done.returncode == 2 and time.monotonic() - started < 20
    assert "is not an EC2 region" in one_line(done.stderr)


def test_a_response_botocore_cannot_parse_is_one_line_and_exit_1(api, capsys):
    launch({"Backup": "Yes"})
    api.network(
        lambda url: ResponseParserError(f"Unable to parse response from {url}: <html>502"),
        "DescribeInstances",
    )
    assert creator.main([]) == 1
    assert "ResponseParserError: Unable to parse" in one_line(capsys.readouterr().err)


def test_an_unreachable_endpoint_is_one_line_naming_it_and_exit_1(api, capsys):
    api.network(lambda url: EndpointConnectionError(endpoint_url=url))
    assert manager.main([]) == 1
    line = one_line(capsys.readouterr().err)
    assert 'Could not connect to the endpoint URL: "https://ec2.us-east-1.amazonaws.com/"' in line


def test_instance_ids_may_be_separated_by_commas(capsys):
    a, _ = launch({"Backup": "Yes"})
    b, _ = launch({"Backup": "Yes"})
    c, _ = launch({"Backup": "Yes"})
    launch({"Backup": "Yes"})
    assert creator.main(["--instance-id", f"{a},{b}", "--instance-id", c, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sorted(i["instance_id"] for i in summary["created"]) == sorted([a, b, c])


@pytest.mark.parametrize("value", ["i-a,i-b", "", "web-1", "i-0123456789abcdef0,,bad"])
def test_a_bad_instance_id_is_refused_in_the_command_lines_words(value, capsys):
    with pytest.raises(SystemExit) as exit:
        creator.main(["--instance-id", value])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "argument --instance-id:" in err and "instance_ids" not in err
    assert snapshots() == {}


def test_each_command_line_run_has_an_event_id_and_a_retry_reuses_it(api, capsys):
    _, vols = launch({"Backup": "Yes"})
    api.fail("DescribeRegions", "RequestLimitExceeded", times=10)  # the first run fails
    assert creator.main([]) == 1
    err = capsys.readouterr().err
    event_id = re.search(r"run it again with --event-id (cli-\S+)$", err.strip()).group(1)
    assert creator.main(["--event-id", event_id]) == 0
    assert f"event {event_id}" in capsys.readouterr().out
    assert creator.main(["--event-id", event_id]) == 0  # once more: nothing twice
    assert [t["EventId"] for t in snapshots().values()] == [event_id]
    assert creator.main([]) == 0  # a new run, a new id: a new snapshot
    assert len({t["EventId"] for t in snapshots().values()}) == 2
    assert set(vols.values()) == {s["VolumeId"] for s in snapshot_details().values()}


def test_the_manager_counts_the_volumes_not_yet_due_and_says_when(capsys):
    launch({"Backup": "Yes", "Name": "fresh"})
    assert manager.main([]) == 0
    out = capsys.readouterr().out
    assert "not yet due (1):" in out and "expected by" in out and "fresh" in out
    assert "volumes: 0 checked, 1 not yet due for a check (see expected by)" in out


def test_the_managers_help_says_it_checks_coverage(bare_env):
    assert "check coverage" in script("manager", "--help", env=bare_env).stdout


def test_ctrl_c_is_one_line_and_exit_130(api, capsys):
    launch({"Backup": "Yes"})
    api.network(lambda url: KeyboardInterrupt(), "DescribeInstances")
    assert creator.main([]) == 130
    assert one_line(capsys.readouterr().err).endswith("interrupted")


def test_a_dry_run_that_fails_suggests_no_real_runs_recovery(capsys):
    """Issue 28: a dry run of an unknown instance ended with "run it again with --event-id
    cli-...", a real run's recovery (its snapshots are tagged with the id; a dry run's none)."""
    missing = "i-0123456789abcdef0"
    assert creator.main(["--dry-run", "--instance-id", missing]) == 1
    out, err = capsys.readouterr()
    assert missing in one_line(err) and "instance not found" in err
    assert "--event-id" not in err and "--event-id" not in out
    assert "dry run: nothing was changed" in out
    assert creator.main(["--instance-id", missing]) == 1  # a real run still says how
    assert "run it again with --event-id cli-" in one_line(capsys.readouterr().err)


# ---- AWS unreachable: one line, at once (issue 28: 43.6 s and five messages before) ----


def no_connection(url):
    return EndpointConnectionError(endpoint_url=url)


def no_connection_in_time(url):
    return ConnectTimeoutError(endpoint_url=url)


@pytest.fixture
def unreachable(monkeypatch):
    """Every HTTP attempt fails as botocore fails to connect, raised from moto's before-send
    handler; unlike the api fixture's, botocore's backoff really sleeps."""
    attempts = []

    def before_send(stubber, event_name, request, **kwargs):
        attempts.append(event_name)
        raise EndpointConnectionError(endpoint_url=request.url)

    monkeypatch.setattr(BotocoreStubber, "__call__", before_send)
    return attempts


@pytest.mark.parametrize("name", list(JOBS))
def test_an_unreachable_endpoint_ends_the_run_in_one_line_within_seconds(name, unreachable, capsys):
    started = time.monotonic()
    assert JOBS[name].main([]) == 1
    assert time.monotonic() - started < 5  # 10 attempts with backoff, 13 to 55 s, before
    out, err = capsys.readouterr()
    assert out == "" and len(unreachable) == 1  # the first attempt, not retried
    line = one_line(err)
    assert line.startswith(f"ebs_snapshot_{name}.py: AWS unreachable, nothing done: ")
    assert 'EndpointConnectionError: Could not connect to the endpoint URL: "https://' in line


@pytest.mark.parametrize("error", [no_connection, no_connection_in_time])
def test_an_unreachable_endpoint_in_a_dry_run_or_verbose(error, api, capsys):
    api.network(error)
    assert manager.main(["--dry-run"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and api.attempts == 1 and api.slept == []
    assert "--event-id" not in one_line(err) and "AWS unreachable" in err
    assert creator.main(["--verbose"]) == 1  # the log too, its summary line last
    *log, line = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("ebs_snapshot_creator.py: AWS unreachable, nothing done: ")
    summary = json.loads(log[-1])
    assert summary["action"] == "summary" and summary["failures"] == 1
    assert "--event-id" not in line  # nothing done: a new run is as good


def test_once_aws_has_answered_a_connection_error_is_retried_as_ever(api, capsys):
    launch({"Backup": "Yes"})
    api.network(no_connection, "CreateSnapshot", times=2)
    assert creator.main([]) == 0
    assert len(api.ops("CreateSnapshot")) == 1 and len(api.slept) == 2  # two retries
    assert "created (1):" in capsys.readouterr().out


def test_lambda_keeps_its_retries_and_its_summary_line_when_aws_is_unreachable(api, capsys):
    """Nobody waits on a scheduled run: a network blip at its start is retried, and the
    run's summary line and metrics are written whatever happened."""

    class Context:
        aws_request_id = "req-1"

        def get_remaining_time_in_millis(self):
            return 900_000

    api.network(no_connection)
    with pytest.raises(manager.JobFailed, match="EndpointConnectionError"):
        manager.lambda_handler({}, Context())
    assert api.attempts > 10  # each step's first call, each with botocore's 10 attempts
    (summary,) = [
        r for r in map(json.loads, capsys.readouterr().out.splitlines()) if r["action"] == "summary"
    ]
    assert summary["failures"] >= 1 and summary["Failures"] == summary["failures"]


def test_a_closed_port_as_aws_endpoint_url_is_one_line_within_seconds(bare_env):
    with socket.socket() as sock:  # a port nobody listens on: the connection is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = bare_env | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_REGION": REGION,
    }
    started = time.monotonic()
    done = script("manager", env=env)
    assert time.monotonic() - started < 10  # the interpreter's start included; 55 s before
    assert done.returncode == 1 and done.stdout == ""
    url = f"http://127.0.0.1:{port}/"
    assert one_line(done.stderr) == (
        "ebs_snapshot_manager.py: AWS unreachable, nothing done: EndpointConnectionError: "
        f'Could not connect to the endpoint URL: "{url}"'
    )
