"""What the jobs tell an operator: JSON log lines, the summary line with its Embedded Metric
Format metrics, and the manager's coverage check (volumes that should be backed up and are
not)."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DEST, NOW, REGION, ec2, launch, make_snapshot, moto_snapshot, tag_list

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

JOBS = {"creator": creator, "copier": copier, "manager": manager}
ROOT = Path(__file__).resolve().parents[2]
LATER = "2099-01-01"  # a DeleteOn that has not come


def log_lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def summary_line(capsys):
    (line,) = [r for r in log_lines(capsys) if r["action"] == "summary"]
    return line


# ---- log lines and the summary line ----


def test_every_item_is_one_json_line_with_level_job_region_action_ids_and_reason(capsys):
    iid, vols = launch({"Backup": "Yes", "Copy_Dest": "mars-east-1"})
    creator.run({}, None, now=NOW)
    records = log_lines(capsys)
    warning, created, summary = records
    assert warning == {
        "level": "WARN",
        "job": "creator",
        "region": REGION,
        "action": "warnings",
        "id": iid,
        "reason": "Copy_Dest entry 'mars-east-1' is not an enabled region of this account; dropped",
        "tag": "Copy_Dest",
        "value": "mars-east-1",
    }
    assert created["level"] == "INFO" and created["action"] == "created"
    assert created["volume_id"] == vols["/dev/sda1"] and created["instance_id"] == iid
    assert created["snapshot_id"].startswith("snap-")
    assert summary["action"] == "summary" and summary["level"] == "WARN"
    assert summary["tag_errors"] == summary["TagErrors"] == 1


@pytest.mark.parametrize("job", list(JOBS))
def test_the_run_ends_with_one_summary_line_of_counts_and_duration(job, capsys):
    launch({"Backup": "Yes"})
    JOBS[job].run({"id": "ev-1"}, None, now=NOW)
    line = log_lines(capsys)[-1]
    assert line["action"] == "summary" and line["job"] == job and line["region"] == REGION
    named = ("created", "copied", "deferred", "deleted", "kept", "skipped", "warnings", "failures")
    assert all(isinstance(line[count], int) for count in named)
    assert line["created"] == (1 if job == "creator" else 0)
    assert line["event_id"] == "ev-1" and line["dry_run"] is False
    assert 0 <= line["duration_s"] < 60


def test_summary_counts_what_the_run_did(capsys):
    for delete_on in ("2026-11-01", "2026-11-20", LATER):
        make_snapshot({"Type": "Automated", "DeleteOn": delete_on})
    make_snapshot({"Type": "Automated", "DeleteOn": "someday"})
    manager.run({}, None, now=NOW)
    line = summary_line(capsys)
    assert (line["deleted"], line["kept"], line["warnings"], line["failures"]) == (2, 1, 1, 0)
    assert line["SnapshotsDeleted"] == 2 and line["Warnings"] == 1


def test_a_failed_run_still_writes_its_summary_line_at_error_level(api, capsys):
    launch({"Backup": "Yes"})
    api.fail("CreateSnapshot", "IncorrectState")
    with pytest.raises(creator.JobFailed):
        creator.run({}, None, now=NOW)
    line = summary_line(capsys)
    assert line["level"] == "ERROR" and line["failures"] == 1 and line["Failures"] == 1


# ---- Embedded Metric Format ----

EXPECTED_METRICS = {
    "creator": ["SnapshotsCreated", "Warnings", "TagErrors", "Failures"],
    "copier": ["SnapshotsCopied", "CopiesDeferred", "Warnings", "TagErrors", "Failures"],
    "manager": [
        "SnapshotsDeleted",
        "Warnings",
        "TagErrors",
        "Failures",
        "UnprotectedVolumes",
        "StoppedEarly",
        "LastBackupsKept",
        "LocksMissing",
        "RestoreDrillsPassed",
        "RestoreDrillsFailed",
        "SnapshotsArchived",
        "SnapshotsRestoring",
    ],
}


@pytest.mark.parametrize("job", list(JOBS))
def test_summary_line_is_embedded_metric_format(job, capsys):
    """The EMF specification: _aws.Timestamp (ms), one directive with the namespace,
    dimension sets naming root members, metrics whose values are root members."""
    launch({"Backup": "Yes", "Copy_Dest": DEST})
    before = datetime.now(UTC).timestamp() * 1000
    JOBS[job].run({}, None, now=NOW)
    line = summary_line(capsys)
    meta = line["_aws"]
    assert before - 1000 <= meta["Timestamp"] <= datetime.now(UTC).timestamp() * 1000 + 1000
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == "EBSSnapshots"
    assert directive["Dimensions"] == [["job", "region"]]
    assert (line["job"], line["region"]) == (job, REGION)
    names = [m["Name"] for m in directive["Metrics"]]
    assert names == EXPECTED_METRICS[job]
    assert all(m["Unit"] == "Count" for m in directive["Metrics"])
    assert all(isinstance(line[name], int) and line[name] >= 0 for name in names)


def test_metric_values_are_the_runs_counts(capsys):
    launch({"Backup": "Yes", "Copy_Dest": DEST}, devices=("/dev/sda1", "/dev/sdf"))
    creator.run({}, None, now=NOW)
    assert summary_line(capsys)["SnapshotsCreated"] == 2
    copier.run({}, None, now=NOW)
    line = summary_line(capsys)
    assert (line["SnapshotsCopied"], line["CopiesDeferred"], line["Failures"]) == (2, 0, 0)


def test_copies_deferred_is_counted(monkeypatch, capsys):
    monkeypatch.setattr(copier, "COPIES_IN_FLIGHT", 1)
    launch({"Backup": "Yes", "Copy_Dest": DEST}, devices=("/dev/sda1", "/dev/sdf", "/dev/sdg"))
    creator.run({}, None, now=NOW)
    capsys.readouterr()
    copier.run({}, None, now=NOW)
    line = summary_line(capsys)
    assert (line["SnapshotsCopied"], line["CopiesDeferred"]) == (1, 2)


def test_a_dry_run_writes_its_summary_without_metrics(capsys):
    launch({"Backup": "Yes"})
    creator.run({"dry_run": True}, None, now=NOW)
    line = summary_line(capsys)
    assert line["dry_run"] is True and "_aws" not in line and "SnapshotsCreated" not in line


# ---- coverage: volumes that should be backed up and are not ----


def real_now():
    """Coverage compares with moto's own clock (volume attach times), so tests use it."""
    return datetime.now(UTC) + timedelta(days=5)


def primary(volume_id, now, age_hours, copy_dest=None, delete_on=LATER, state="completed", **more):
    """An automated snapshot of that volume, made ``age_hours`` before ``now``."""
    tags = {"Type": "Automated", "DeleteOn": delete_on}
    if copy_dest:
        tags["Copy_Dest"] = copy_dest
    if "copy_retention" in more:
        tags["Copy_Retention"] = more["copy_retention"]
    sid = ec2().create_snapshot(
        VolumeId=volume_id, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}]
    )["SnapshotId"]
    snap = moto_snapshot(sid)
    snap.start_time = (now - timedelta(hours=age_hours)).replace(tzinfo=None)
    snap.status = state
    return sid


def copy_of(source_id, state="completed", region=DEST, source_region=REGION):
    tags = {
        "Type": "Automated",
        "DeleteOn": LATER,
        "Source_SnapshotId": source_id,
        "Source_Region": source_region,
    }
    sid = make_snapshot(tags, region=region)
    moto_snapshot(sid, region).status = state
    return sid


def fleet(now):
    """Volumes in every coverage situation; returns {name: volume id}."""
    vols = {}
    _, v = launch({"Backup": "Yes", "Copy_Dest": DEST})
    vols["covered"] = v["/dev/sda1"]
    primary(vols["covered"], now, 2, DEST)  # fresh: no copy needed yet
    copy_of(primary(vols["covered"], now, 45, DEST))  # older: copied; within the copy window
    primary(vols["covered"], now, 70, DEST, delete_on="2000-01-01")  # due: never copied
    twice = primary(vols["covered"], now, 55, DEST)
    copy_of(twice, state="pending")  # a copy still pending...
    copy_of(twice)  # ...and a completed one: the completed one counts
    _, v = launch({"Backup": "Yes"})
    vols["stale"] = v["/dev/sda1"]
    primary(vols["stale"], now, 30)
    _, v = launch({"Backup": "Yes", "Copy_Dest": DEST})
    vols["copy_missing"] = v["/dev/sda1"]
    primary(vols["copy_missing"], now, 1, DEST)
    primary(vols["copy_missing"], now, 45, DEST)
    _, v = launch({"Backup": "Yes", "Copy_Dest": DEST})
    vols["copy_pending"] = v["/dev/sda1"]
    primary(vols["copy_pending"], now, 1, DEST)
    copy_of(primary(vols["copy_pending"], now, 45, DEST), state="pending")
    _, v = launch({"Backup": "Yes"})
    vols["snapshot_pending"] = v["/dev/sda1"]
    primary(vols["snapshot_pending"], now, 1, state="pending")
    _, v = launch(
        {"Backup": "Yes"},
        devices=("/dev/sda1", "/dev/sdf"),
        volume_tags={"/dev/sdf": {"Backup": "No"}},
    )
    vols["never"] = v["/dev/sda1"]  # its opted-out /dev/sdf is not expected
    launch({"Backup": "No"})
    launch({})
    launch({"Backup": "Yse"})  # unreadable: the creator skips it, so coverage does too
    # A copy from another region, and a snapshot made by a person, are none of its business.
    copy_of(make_snapshot({"Type": "Automated"}, region=DEST), region=REGION, source_region=DEST)
    make_snapshot({"Name": "manual"})
    return vols


def test_coverage_names_exactly_the_unprotected_volumes(capsys):
    now = real_now()
    vols = fleet(now)
    result = manager.run({}, None, now=now)
    found = {u["volume_id"]: u for u in result["unprotected"]}
    names = {vid: name for name, vid in vols.items()}
    assert sorted(names[vid] for vid in found) == [
        "copy_missing",
        "copy_pending",
        "never",
        "snapshot_pending",
        "stale",
    ]
    stale_since = (now - timedelta(hours=30)).strftime("%Y-%m-%d %H:%M")
    assert found[vols["stale"]]["reason"] == (
        f"no completed snapshot in the last 26 h; newest {stale_since} UTC"
    )
    assert found[vols["never"]]["reason"] == "no completed snapshot in the last 26 h; none at all"
    window = "no completed copy in us-west-2 of a snapshot of the last 50 h"
    assert found[vols["copy_missing"]]["reason"] == f"{window} (no copy at all)"
    assert found[vols["copy_pending"]]["reason"] == f"{window} (a copy still pending)"
    assert found[vols["never"]]["instance_id"].startswith("i-")
    assert result["counts"]["unprotected"] == 5 and result["counts"]["protected"] == 1
    line = summary_line(capsys)
    assert line["UnprotectedVolumes"] == 5 and line["level"] == "WARN"


def test_each_unprotected_volume_is_logged_as_a_warning(capsys):
    now = real_now()
    _, v = launch({"Backup": "Yes"})
    manager.run({}, None, now=now)
    records = [r for r in log_lines(capsys) if r["action"] == "unprotected"]
    assert [(r["level"], r["volume_id"]) for r in records] == [("WARN", v["/dev/sda1"])]


def test_coverage_costs_a_few_listings_whatever_the_fleet_size(api):
    now = real_now()
    fleet(now)
    api.page_size = 2  # many pages: the count of listings, not of pages, is what is fixed
    api.calls.clear()
    manager.run({}, None, now=now)
    listings = {(region, op) for region, op, _ in api.calls if op.startswith("Describe")}
    assert listings == {
        (REGION, "DescribeRegions"),
        (REGION, "DescribeInstances"),
        (REGION, "DescribeVolumes"),
        (REGION, "DescribeSnapshots"),
        (REGION, "DescribeLockedSnapshots"),
        (DEST, "DescribeSnapshots"),
    }
    (dest_listing,) = [p for p in api.ops("DescribeSnapshots", DEST) if "NextToken" not in p]
    assert dest_listing["OwnerIds"] == ["self"]
    assert {"Name": "tag:Source_Region", "Values": [REGION]} in dest_listing["Filters"]
    (instances,) = [p for p in api.ops("DescribeInstances") if "NextToken" not in p]
    assert {"Name": "tag-key", "Values": ["Backup"]} in instances["Filters"]


def test_a_volume_attached_within_the_threshold_is_not_yet_expected():
    launch({"Backup": "Yes"})  # attached moments ago: the creator has not had its turn
    result = manager.run({}, None, now=datetime.now(UTC))
    assert result["counts"]["unprotected"] == 0 and result["counts"]["protected"] == 0


def test_a_stopped_instance_is_expected_to_be_backed_up():
    iid, v = launch({"Backup": "Yes"})
    ec2().stop_instances(InstanceIds=[iid])
    result = manager.run({}, None, now=real_now())
    assert [u["volume_id"] for u in result["unprotected"]] == [v["/dev/sda1"]]


def test_the_threshold_comes_from_coverage_max_age_hours(monkeypatch):
    now = real_now()
    vols = fleet(now)
    monkeypatch.setenv("COVERAGE_MAX_AGE_HOURS", "48")
    result = manager.run({}, None, now=now)
    found = {u["volume_id"] for u in result["unprotected"]}
    assert vols["stale"] not in found  # 30 hours old is within 48
    assert {vols["copy_missing"], vols["copy_pending"]} <= found  # 45 hours old, no copy


@pytest.mark.parametrize("value", ["abc", "0", "-5", "nan", "inf", "100000"])
def test_a_bad_threshold_warns_and_uses_26_hours(value, monkeypatch):
    now = real_now()
    _, vols = launch({"Backup": "Yes"})
    primary(vols["/dev/sda1"], now, 27)  # unprotected at 26 hours, not at 100000
    monkeypatch.setenv("COVERAGE_MAX_AGE_HOURS", value)
    result = manager.run({}, None, now=now)
    assert [w["id"] for w in result["warnings"]] == ["COVERAGE_MAX_AGE_HOURS"]
    assert [u["volume_id"] for u in result["unprotected"]] == [vols["/dev/sda1"]]


def test_a_refused_coverage_read_fails_the_run_but_not_the_deletes(api):
    """Without the instances, any volume may still be backed up: each keeps its newest."""
    _, vols = launch({"Backup": "Yes"})
    older, newest = (
        primary(vols["/dev/sda1"], NOW, hours, delete_on="2026-11-01") for hours in (48, 24)
    )
    api.fail("DescribeInstances", "UnauthorizedOperation")
    with pytest.raises(manager.JobFailed, match="coverage not checked") as failed:
        manager.run({}, None, now=NOW)
    remaining = {s["SnapshotId"] for s in ec2().describe_snapshots()["Snapshots"]}
    assert older not in remaining and newest in remaining
    assert any("every volume's newest" in w["reason"] for w in failed.value.summary["warnings"])


def test_a_refused_destination_listing_fails_the_run_and_the_rest_is_still_checked(api, capsys):
    now = real_now()
    vols = fleet(now)
    api.fail("DescribeSnapshots", "UnauthorizedOperation", when=lambda p, region: region == DEST)
    with pytest.raises(manager.JobFailed, match="copies there not checked") as failed:
        manager.run({}, None, now=now)
    found = {u["volume_id"] for u in failed.value.summary["unprotected"]}
    # Its copies are not judged: no false "no copy"; the local findings stand.
    assert found == {vols[n] for n in ("never", "snapshot_pending", "stale")}
    line = summary_line(capsys)
    assert line["UnprotectedVolumes"] == 3 and line["Failures"] == 1


def test_coverage_is_not_claimed_when_the_sweep_stopped_early(monkeypatch, capsys):
    now = real_now()
    fleet(now)

    class Ending:
        asked = 0

        def get_remaining_time_in_millis(self):
            self.asked += 1  # enough to start, then under the stop margin
            return 200_000 if self.asked == 1 else 30_000

    result = manager.run({}, Ending(), now=now)
    assert "unprotected" not in result["counts"]
    assert any("coverage not checked" in w["reason"] for w in result["warnings"])
    line = summary_line(capsys)
    assert "UnprotectedVolumes" not in line and line["StoppedEarly"] == 1


# ---- the report: its totals in words ----


def totals_of(report):
    return report.split("totals:", 1)[1]


def test_right_after_a_first_backup_the_totals_say_what_was_kept_and_checked(capsys):
    """Issue 28: "totals: 4 kept, 0 unprotected, 0 protected, 4 not yet due" alarmed a
    newcomer; the totals now say what each count is, and no "0 protected"."""
    launch({"Backup": "Yes", "Name": "web"}, devices=("/dev/sda1", "/dev/sdf"))
    creator.run({}, None)
    summary = manager.run({}, None)
    assert summary["counts"] | {"expired_copies_left": 0} == {
        "kept": 2,
        "unprotected": 0,
        "protected": 0,
        "not_yet_due": 2,
        "expired_copies_left": 0,
    }
    assert totals_of(manager.report(summary)).splitlines()[1:] == [
        "  snapshots: 2 kept until their DeleteOn",
        "  volumes: 0 checked, 2 not yet due for a check (see expected by)",
    ]


def test_the_volumes_checked_are_the_protected_and_the_unprotected():
    counts = {"deleted": 1, "kept": 1, "unprotected": 1, "protected": 4, "not_yet_due": 1}
    lines = manager.totals(counts)
    assert lines[0] == "totals:"
    assert lines[1:] == [
        "  snapshots: 1 deleted, 1 kept until its DeleteOn",
        "  volumes: 5 checked: 4 protected, 1 unprotected, 1 not yet due for a check (see "
        "expected by)",
    ]


def report_of(counts):
    summary = {"job": "j", "region": REGION, "date": "2026-12-01", "dry_run": False}
    return totals_of(creator.report(summary | {"counts": counts}))


def test_every_count_of_one_is_singular_and_every_count_of_two_plural():
    kinds = {kind for words in creator.TOTALS.values() for kind in words}
    kinds |= {"protected", "unprotected", "not_yet_due"}  # the volumes' line
    one = report_of(dict.fromkeys(kinds, 1))
    two = report_of(dict.fromkeys(kinds, 2))
    plurals = r"\b1 (copies|snapshots|restores|items|kinds|resources|warnings|failures|volumes)\b"
    assert not re.search(plurals, one), one
    assert not re.search(r"\b1 [a-z ]*\b(their|are)\b", one), one
    for words in ("1 warning", "1 failure", "1 item skipped", "copies: 1 started"):
        assert words in one
    for words in ("2 warnings", "2 failures", "2 items skipped", "copies: 2 started"):
        assert words in two
    assert "1 protected, 1 unprotected, 1 not yet due" in one


def test_a_count_of_zero_is_left_out_and_a_count_without_words_still_shown():
    assert report_of({"expired_copies_left": 0, "warnings": 1}) == "\n  this run: 1 warning"
    assert report_of({"new_kind": 3}) == "\n  other: 3 new kind"
    assert report_of({}) == " nothing to do"


def test_every_count_the_jobs_make_has_its_words_in_the_report():
    source = "\n".join(p.read_text() for p in (ROOT / "src" / "ebs_snapshots").rglob("*.py"))
    made = set(re.findall(r'\.(?:add|count)\(\s*"([a-z_]+)"', source))
    made |= set(re.findall(r'counts\["([a-z_]+)"\] =', source))
    done = {f"would_{action}" for action in creator.DONE} | set(creator.DONE.values())
    worded = {kind for words in creator.TOTALS.values() for kind in words}
    assert made and made | done <= worded | set(creator.SAID_OTHERWISE)
