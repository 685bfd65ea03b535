"""The tests' one clock (conftest.py): every test starts at NOW, whatever day the machine
says, and make test's second pass (--clock-ahead 365) catches a test that reads the
machine's clock where it should read its own."""

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import NOW, REGION, ec2, make_snapshot

TESTS = Path(__file__).resolve().parents[1]  # conftest.py's folder

# A test written on the day it runs: it reads the machine's clock as its module is imported,
# outside the test's own clock, and compares it with a date fixed in its text.
WRITTEN_TODAY = """
from datetime import UTC, datetime

TODAY = datetime.now(UTC).date()


def test_written_today():
    assert TODAY.isoformat() == "{today}"
"""


@pytest.mark.dates
def test_every_test_starts_at_now_and_moto_stamps_with_the_same_clock():
    assert NOW <= datetime.now(UTC) < NOW + timedelta(minutes=5)
    sid = make_snapshot({"Type": "Automated"})
    (snap,) = ec2(REGION).describe_snapshots(SnapshotIds=[sid])["Snapshots"]
    assert NOW <= snap["StartTime"] < NOW + timedelta(minutes=5)


def pytest_run(tmp_path, *args):
    """pytest on one file of WRITTEN_TODAY, with this suite's conftest, as make test runs it."""
    test = tmp_path / "test_written_today.py"
    real_today = subprocess.run(
        [sys.executable, "-c", "import datetime; print(datetime.date.today())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()  # the machine's day: this process runs at NOW
    test.write_text(WRITTEN_TODAY.format(today=real_today))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider"]
    env = {"PYTHONPATH": f"{TESTS}:{TESTS.parent}", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [*command, *args, str(test)], cwd=tmp_path, env=env, capture_output=True, text=True
    )


def test_the_year_ahead_pass_fails_a_test_that_reads_the_machines_clock(tmp_path):
    assert pytest_run(tmp_path).returncode == 0  # today, it passes
    ahead = pytest_run(tmp_path, "--clock-ahead", "365")
    assert ahead.returncode == 1, ahead.stdout[-2000:]
    assert "test_written_today" in ahead.stdout
