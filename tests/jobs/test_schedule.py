"""The creator's hourly schedule on moto: slots of Backup_Every hours, catch-up, retries,
late events, the run's hour, copies and tiers between dailies, coverage, EC2's limits."""

import json
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import DEST, REGION, clock, ec2, launch, snapshot_details, snapshots
from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

import ebs_snapshot_creator as creator

DAILY_HOUR = 2
MONDAY = datetime(2026, 11, 23, DAILY_HOUR, tzinfo=UTC)  # a daily run's hour


@pytest.fixture(autouse=True)
def hourly(monkeypatch):
    monkeypatch.setenv("BACKUP_DAILY_HOUR", str(DAILY_HOUR))
    monkeypatch.setattr(TaggedEC2Resource, "get_tags", tags_by_id)


def tags_by_id(self):
    """moto's get_tags, as a lookup: moto scans every tag of the region for each resource
    a filter looks at, and a week of hourly snapshots made that minutes."""
    if not self.id:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [
        {"resource_id": self.id, "key": k, "value": v, "resource_type": kind}
        for k, v in self.ec2_backend.tags.get(self.id, {}).items()
    ]


def event(hour, id=None):
    """The scheduled event of ``hour`` (EventBridge's shape)."""
    return {
        "version": "0",
        "id": id or f"hourly-{hour:%Y%m%dT%H}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": f"{hour:%Y-%m-%dT%H:%M:%SZ}",
        "region": REGION,
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/hourly"],
        "detail": {},
    }


def run_at(hour, late=timedelta(minutes=1), id=None):
    """The run of ``hour``'s event, ``late`` after it (moto's clock too)."""
    now = hour + late
    with clock(now):
        try:
            return creator.run(event(hour, id), None, now=now)
        except creator.JobFailed as failed:
            return failed.summary


def slots_of(volume_id):
    """Counter of the Backup_Slot tags of a volume's snapshots."""
    details = snapshot_details()
    return Counter(
        t.get("Backup_Slot")
        for sid, t in snapshots().items()
        if details[sid]["VolumeId"] == volume_id
    )


def by_slot(volume_id):
    """{slot: tags} of a volume's snapshots."""
    details = snapshot_details()
    return {
        t["Backup_Slot"]: t
        for sid, t in snapshots().items()
        if details[sid]["VolumeId"] == volume_id
    }


def test_a_week_of_hourly_runs_gives_one_snapshot_a_slot_despite_missed_retried_late_runs():
    _, daily = launch({"Backup": "Yes", "Name": "daily"})
    _, four = launch(
        {
            "Backup": "Yes",
            "Name": "four",
            "Backup_Every": "4",
            "Retention": "14",
            "Retention_Weekly": "4",
            "Retention_Hourly": "48",
            "Copy_Dest": DEST,
        }
    )
    _, every_hour = launch(
        {"Backup": "Yes", "Backup_Every": "1", "Consistency": "instance", "Retention_Hourly": "24"},
        devices=("/dev/sda1", "/dev/sdb"),
    )
    missed = {4, 26, 48}  # four's 06:00 slot; an idle hour; Wednesday's daily run
    retried = {0, 8, 50}  # delivered twice, the second 3 minutes on
    held = {12: timedelta(hours=1, minutes=10)}  # 14:00's event again, after 15:00's run
    for n in range(7 * 24):
        hour = MONDAY + timedelta(hours=n)
        if n not in missed:
            run_at(hour)
        if n in retried:
            run_at(hour, late=timedelta(minutes=3))
        if n in held:
            late = run_at(hour, late=held[n], id="held-in-the-queue")
            assert "after its hour" in late["warnings"][0]["reason"]
            assert late["counts"].get("created", 0) == 0

    hours = [MONDAY + timedelta(hours=n) for n in range(7 * 24)]
    tag = "{:%Y-%m-%dT%H:%MZ}".format
    assert slots_of(daily["/dev/sda1"]) == Counter(tag(h) for h in hours if h.hour == DAILY_HOUR)
    assert slots_of(four["/dev/sda1"]) == Counter(tag(h) for h in hours if h.hour % 4 == 2)
    expected = Counter(tag(h) for n, h in enumerate(hours) if n not in missed)  # 1 h: no catch-up
    for volume in every_hour.values():
        assert slots_of(volume) == expected

    kept = by_slot(four["/dev/sda1"])
    assert kept["2026-11-25T02:00Z"]["Retention_Tier"] == "daily"  # caught up at 03:00
    assert kept["2026-11-23T06:00Z"]["Retention_Tier"] == "hourly"  # caught up at 07:00
    assert kept["2026-11-29T02:00Z"]["Retention_Tier"] == "weekly"  # Sunday
    assert kept["2026-11-23T10:00Z"]["DeleteOn"] == "2026-11-26"  # 48 h on, rounded up
    assert kept["2026-11-23T02:00Z"]["DeleteOn"] == "2026-12-07"  # 14 days
    copied = {slot for slot, tags in kept.items() if "Copy_Dest" in tags}
    assert copied == {tag(h) for h in hours if h.hour == DAILY_HOUR}


def test_a_daily_instance_gets_the_snapshot_it_got_before_at_the_daily_hour_only():
    launch({"Backup": "Yes", "Retention": "5", "Retention_Monthly": "2", "Copy_Dest": DEST})
    first = datetime(2026, 12, 1, DAILY_HOUR, tzinfo=UTC)  # the 1st: the monthly tier
    for n in range(-3, 21):
        run_at(first + timedelta(hours=n))
    (tags,) = snapshots().values()
    slot = tags.pop("Backup_Slot")
    assert slot == "2026-12-01T02:00Z"
    (old,) = [t for t in before_slots(first) if "Backup_Slot" not in t]
    assert tags == old


def before_slots(now):
    """What the creator made before slots (no BACKUP_DAILY_HOUR, a run at ``now``): the
    tags of a fresh instance's snapshot, EventId set to this module's scheduled one."""
    import os

    del os.environ["BACKUP_DAILY_HOUR"]
    ec2().delete_snapshot(SnapshotId=next(iter(snapshots())))
    with clock(now + timedelta(minutes=1)):
        creator.run(event(now), None, now=now + timedelta(minutes=1))
    return list(snapshots().values())


def test_an_idle_hour_costs_one_listing_of_the_tagged_instances(api):
    launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb"))
    launch({"Backup": "Yes", "Backup_Every": "8"})
    api.calls.clear()
    result = run_at(MONDAY + timedelta(hours=5))  # 07:00: no slot starts, none to catch up
    assert api.names() == ["DescribeInstances"]
    assert snapshots() == {}
    assert result["counts"] == {"peak_hour_calls": 3, "over_limits": 0}


def test_a_catch_up_hour_reads_only_its_slots_snapshots_and_makes_none(api):
    launch({"Backup": "Yes", "Backup_Every": "4"})
    run_at(MONDAY)
    api.calls.clear()
    result = run_at(MONDAY + timedelta(hours=1))
    (read,) = api.ops("DescribeSnapshots")
    assert read["Filters"] == [{"Name": "tag:Backup_Slot", "Values": ["2026-11-23T02:00Z"]}]
    assert "CreateSnapshot" not in api.names()
    assert result["skipped"][-1]["reason"] == "1 volume already snapshotted in their slot"
    assert len(snapshots()) == 1


def test_a_run_stops_starting_snapshots_at_the_end_of_its_hour_and_the_next_catches_up(
    api, monkeypatch
):
    volumes = [launch({"Backup": "Yes", "Backup_Every": "2"})[1]["/dev/sda1"] for _ in range(6)]
    fake = [time.monotonic()]
    monkeypatch.setattr(time, "monotonic", lambda: fake[0])

    def slow(operation, region):  # each snapshot call takes 30 s of the run's clock
        fake[0] += 30 if operation == "CreateSnapshot" else 0

    api.on_attempt = slow
    result = run_at(MONDAY, late=timedelta(minutes=54))  # a minute of its hour left
    assert 0 < result["counts"]["created"] < 6
    assert "the next hourly runs catch them up" in result["warnings"][-1]["reason"]
    assert "handed_off" not in result["counts"]
    api.on_attempt = None
    run_at(MONDAY + timedelta(hours=1))
    assert [sum(slots_of(v).values()) for v in volumes] == [1] * 6


def test_snapshots_between_dailies_are_copied_only_when_copy_hourly_says_so():
    base = {"Backup": "Yes", "Backup_Every": "12", "Copy_Dest": DEST}
    _, plain = launch(base)
    _, copied = launch({**base, "Copy_Hourly": "Yes"})
    run_at(MONDAY)
    run_at(MONDAY + timedelta(hours=12))
    plain, copied = by_slot(plain["/dev/sda1"]), by_slot(copied["/dev/sda1"])
    assert plain["2026-11-23T02:00Z"]["Copy_Dest"] == DEST
    assert "Copy_Dest" not in plain["2026-11-23T14:00Z"]
    assert "Copy_State" not in plain["2026-11-23T14:00Z"]  # the copier never reads it
    assert copied["2026-11-23T14:00Z"]["Copy_Dest"] == DEST
    assert copied["2026-11-23T14:00Z"]["Copy_State"] == "pending"


def test_tiers_and_archive_only_on_the_daily_locks_and_keep_on_every_snapshot():
    tags = {
        "Backup": "Yes",
        "Backup_Every": "6",
        "Retention_Monthly": "3",
        "Archive": "monthly",
        "Lock": "governance",
    }
    _, volumes = launch(tags)
    first = datetime(2026, 12, 1, DAILY_HOUR, tzinfo=UTC)
    run_at(first)
    run_at(first + timedelta(hours=6))
    kept = by_slot(volumes["/dev/sda1"])
    daily, between = kept["2026-12-01T02:00Z"], kept["2026-12-01T08:00Z"]
    assert (daily["Retention_Tier"], daily.get("Archive")) == ("monthly", "Yes")
    assert (between["Retention_Tier"], between.get("Archive")) == ("hourly", None)
    assert daily["Lock"] == between["Lock"] == "governance"
    locked = {s["SnapshotId"] for s in ec2().describe_locked_snapshots()["Snapshots"]}
    assert locked == set(snapshots())


def test_a_consistent_set_is_taken_in_every_slot(api):
    _, volumes = launch(
        {"Backup": "Yes", "Backup_Every": "3", "Consistency": "instance"},
        devices=("/dev/sda1", "/dev/sdb"),
    )
    for n in (0, 3, 6):
        run_at(MONDAY + timedelta(hours=n))
    assert len(api.ops("CreateSnapshots")) == 3
    assert "CreateSnapshot" not in api.names()
    for volume in volumes.values():
        assert sorted(slots_of(volume)) == [
            "2026-11-23T02:00Z",
            "2026-11-23T05:00Z",
            "2026-11-23T08:00Z",
        ]


def test_a_bad_interval_is_a_tag_error_and_the_instance_is_taken_daily():
    iid, volumes = launch({"Backup": "Yes", "Backup_Every": "5"})
    result = run_at(MONDAY)
    assert result["tag_errors"][0]["id"] == iid
    assert result["tag_errors"][0]["tag"] == "Backup_Every"
    run_at(MONDAY + timedelta(hours=5))
    assert list(slots_of(volumes["/dev/sda1"])) == ["2026-11-23T02:00Z"]


def test_a_bad_daily_hour_warns_and_every_instance_is_taken(monkeypatch):
    monkeypatch.setenv("BACKUP_DAILY_HOUR", "25")
    launch({"Backup": "Yes"})
    result = run_at(MONDAY + timedelta(hours=5))
    assert result["warnings"][0]["id"] == "BACKUP_DAILY_HOUR"
    assert result["counts"]["created"] == 1


def test_a_sub_daily_volume_without_its_slots_snapshot_is_unprotected_when_no_run_is_left(api):
    _, hourly = launch({"Backup": "Yes", "Backup_Every": "1"})
    _, four = launch({"Backup": "Yes", "Backup_Every": "4"})
    api.fail("CreateSnapshot", "InternalError", times=None)
    first = run_at(MONDAY + timedelta(hours=4))  # 06:00: both slots start
    assert [u["volume_id"] for u in first["unprotected"]] == [hourly["/dev/sda1"]]
    assert "1-hour slot of 2026-11-23 06:00" in first["unprotected"][0]["reason"]
    run_at(MONDAY + timedelta(hours=5))
    last = run_at(MONDAY + timedelta(hours=6))  # 08:00: four's last try of 06:00
    assert {u["volume_id"] for u in last["unprotected"]} == {hourly["/dev/sda1"], four["/dev/sda1"]}
    api.faults.clear()
    fine = run_at(MONDAY + timedelta(hours=7))
    assert fine["counts"]["unprotected"] == 0  # the metric says 0 too
    dry = {**event(MONDAY + timedelta(hours=8)), "dry_run": True}  # makes nothing: no report
    with clock(MONDAY + timedelta(hours=8, minutes=1)):
        result = creator.run(dry, None, now=MONDAY + timedelta(hours=8, minutes=1))
    assert result["counts"]["would_create"] == 2 and "unprotected" not in result["counts"]


def test_a_fleet_that_asks_more_than_ec2_allows_is_warned_of_before_snapshots_fail(
    api, monkeypatch
):
    monkeypatch.setattr(creator, "CALLS_PER_HOUR", 3)
    launch({"Backup": "Yes", "Retention": "30"}, devices=("/dev/sda1", "/dev/sdb"))
    launch({"Backup": "Yes", "Backup_Every": "2"}, devices=("/dev/sda1", "/dev/sdb"))
    api.stub("GetServiceQuota", {"Quota": {"QuotaCode": "L-309BACF6", "Value": 100.0}})
    result = run_at(MONDAY)
    said = " ".join(w["reason"] for w in result["warnings"])
    assert "ask for 4 snapshot calls at 02:00 UTC" in said
    assert "keeps about 228 snapshots" in said and "quota of 100" in said
    assert result["counts"]["over_limits"] == 2
    assert result["counts"]["projected_snapshots"] == 2 * 30 + 2 * (7 + 11 * 7)
    (asked,) = api.ops("GetServiceQuota")
    assert asked == {"ServiceCode": "ebs", "QuotaCode": "L-309BACF6"}
    idle = run_at(MONDAY + timedelta(hours=1))  # the quota is read once a day
    assert len(api.ops("GetServiceQuota")) == 1
    assert idle["counts"]["over_limits"] == 1


def test_without_service_quotas_the_documented_default_is_the_quota(monkeypatch):
    monkeypatch.setattr(creator, "DEFAULT_SNAPSHOT_QUOTA", 10)
    launch({"Backup": "Yes"}, devices=("/dev/sda1", "/dev/sdb"))
    result = run_at(MONDAY)  # moto's Service Quotas knows no ebs quota
    assert "quota of 10" in result["warnings"][0]["reason"]


@pytest.mark.dates
def test_a_run_on_demand_takes_every_instance_in_the_slot_it_falls_in():
    _, _volumes = launch({"Backup": "Yes", "Backup_Every": "4"})
    now = MONDAY + timedelta(hours=5)
    with clock(now):
        creator.run({}, None, now=now)
    (tags,) = snapshots().values()
    assert tags["Backup_Slot"] == "2026-11-23T06:00Z"
    assert tags["DeleteOn"] == str(date(2026, 12, 1))  # 7 days of hours, rounded up


def test_a_slot_caught_up_by_a_later_run_is_one_restore_point(api, capsys):
    import ebs_snapshot_manager as manager

    iid, volumes = launch({"Backup": "Yes", "Backup_Every": "4"}, devices=("/dev/sda1", "/dev/sdb"))
    late = volumes["/dev/sdb"]
    api.fail("CreateSnapshot", "IncorrectState", when=lambda p, r: p["VolumeId"] == late, times=1)
    run_at(MONDAY + timedelta(hours=4))  # 06:00: /dev/sdb fails
    run_at(MONDAY + timedelta(hours=5))  # 07:00: caught up, under another EventId
    capsys.readouterr()
    assert manager.main(["restore-points", "--instance", iid]) == 0
    shown = capsys.readouterr().out
    assert shown.count(" rp-") == 1, shown


def test_a_scheduled_run_that_hands_off_leaves_its_slots_to_the_next_invocation(api):
    from test_faults import Context

    volumes = [launch({"Backup": "Yes", "Backup_Every": "1"})[1]["/dev/sda1"] for _ in range(12)]
    api.stub("Invoke", {"StatusCode": 202})
    now = MONDAY + timedelta(minutes=1)
    ctx = Context(api, "creator", start_ms=150_000, per_attempt_ms=10_000)
    with clock(now):
        first = creator.run(event(MONDAY), ctx, now=now)
    assert first["counts"].get("handed_off") == 1, first["counts"]
    assert 0 < first["counts"]["created"] < 12
    assert "unprotected" not in first  # the slot is not over: the next invocation goes on
    (invoke,) = api.ops("Invoke")
    with clock(now):
        second = creator.run(json.loads(invoke["Payload"]), Context(api, "creator"), now=now)
    assert second["counts"]["unprotected"] == 0
    assert [sum(slots_of(v).values()) for v in volumes] == [1] * 12
