"""Retention beyond days: weekly, monthly and yearly tiers, copies with their own retention
and KMS key. Each still becomes one DeleteOn per snapshot."""

from datetime import UTC, date, datetime, timedelta

import pytest
from conftest import DEST, DEST2, NOW, launch, make_snapshot, moto_snapshot, snapshots
from test_reporting import copy_of
from test_reporting import primary as aged

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

D = date.fromisoformat
KEY_ARN = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
MRK = "mrk-1234abcd12ab34cd56ef1234567890ab"

# ---- the date arithmetic ----


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        ("2027-01-31", 1, "2027-02-28"),  # the last day of February
        ("2028-01-31", 1, "2028-02-29"),  # a leap year
        ("2027-03-31", 1, "2027-04-30"),
        ("2026-12-31", 2, "2027-02-28"),  # across a year
        ("2026-12-01", 1, "2027-01-01"),
        ("2028-02-29", 12, "2029-02-28"),  # a year after a 29 February
        ("2028-02-29", 48, "2032-02-29"),
        ("2026-11-26", 1200, "2126-11-26"),  # the cap: a hundred years
        ("2027-05-15", 0, "2027-05-15"),
    ],
)
def test_calendar_months(day, months, expected):
    assert creator.add_months(D(day), months) == D(expected)


# 2026-11-26 is a Thursday; 2026-11-29 a Sunday; 2027-01-01 a Friday; 2028-02-29 a Tuesday.
@pytest.mark.parametrize(
    ("today", "tags", "delete_on", "tier"),
    [
        ("2026-11-26", {}, "2026-12-03", "daily"),
        ("2026-11-26", {"Retention": "3"}, "2026-11-29", "daily"),
        ("2026-11-26", {"Retention_Weekly": "4"}, "2026-12-03", "daily"),  # not Sunday
        ("2026-11-29", {"Retention_Weekly": "4"}, "2026-12-27", "weekly"),  # Sunday
        ("2026-11-29", {"Retention": "60", "Retention_Weekly": "2"}, "2027-01-28", "daily"),
        ("2026-11-29", {"Retention_Weekly": "1"}, "2026-12-06", "weekly"),  # a tie: the longer
        ("2026-11-26", {"Retention_Weekly": "2", "Weekly_Day": "Thu"}, "2026-12-10", "weekly"),
        ("2026-11-26", {"Retention_Weekly": "2", "Weekly_Day": "thursday"}, "2026-12-10", "weekly"),
        ("2026-11-26", {"Retention_Weekly": "2", "Weekly_Day": " THU "}, "2026-12-10", "weekly"),
        ("2026-11-29", {"Retention_Weekly": "2", "Weekly_Day": "Thu"}, "2026-12-06", "daily"),
        ("2026-12-01", {"Retention_Monthly": "12"}, "2027-12-01", "monthly"),
        ("2026-12-02", {"Retention_Monthly": "12"}, "2026-12-09", "daily"),  # not the 1st
        ("2028-02-01", {"Retention_Monthly": "1"}, "2028-03-01", "monthly"),
        (
            "2027-01-01",
            {"Retention_Monthly": "12", "Retention_Yearly": "7"},
            "2034-01-01",
            "yearly",
        ),
        (
            "2027-01-01",
            {"Retention_Monthly": "36", "Retention_Yearly": "2"},
            "2030-01-01",
            "monthly",
        ),
        (
            "2027-01-01",
            {"Retention_Monthly": "12", "Retention_Yearly": "1"},
            "2028-01-01",
            "yearly",
        ),
        ("2027-02-01", {"Retention_Yearly": "7"}, "2027-02-08", "daily"),  # not 1 January
        (
            "2028-02-29",
            {"Retention_Weekly": "1", "Weekly_Day": "Tue", "Retention_Monthly": "1"},
            "2028-03-07",
            "weekly",
        ),
        (
            "2026-11-01",  # a Sunday and the 1st: every tier applies, the longest wins
            {"Retention_Weekly": "52", "Retention_Monthly": "6", "Retention_Yearly": "5"},
            "2027-10-31",
            "weekly",
        ),
    ],
)
def test_the_latest_date_among_the_tiers_that_apply_today(today, tags, delete_on, tier):
    assert creator.retention_plan(tags, D(today)) == (D(delete_on), tier, [])


@pytest.mark.parametrize(
    ("tags", "delete_on", "tier", "warning"),
    [
        ({"Retention_Weekly": "abc"}, "2026-12-06", "daily", "Retention_Weekly 'abc' is not"),
        ({"Retention_Weekly": "0"}, "2026-12-06", "daily", "; no weekly tier"),
        ({"Retention_Weekly": "1.5"}, "2026-12-06", "daily", "no weekly tier"),
        ({"Retention_Weekly": "-2"}, "2026-12-06", "daily", "no weekly tier"),
        ({"Retention_Weekly": ""}, "2026-12-06", "daily", "no weekly tier"),
        ({"Retention_Weekly": "99999"}, "2126-07-28", "weekly", "too large; using 5200"),
        ({"Retention_Weekly": "2", "Weekly_Day": "Funday"}, "2026-12-13", "weekly", "using Sun"),
        ({"Retention_Weekly": "2", "Weekly_Day": "S"}, "2026-12-13", "weekly", "not a weekday"),
        ({"Retention": "x", "Retention_Weekly": "2"}, "2026-12-13", "weekly", "using 7"),
    ],
)
def test_bad_tier_values_warn_and_fall_back(tags, delete_on, tier, warning):
    found, got_tier, warnings = creator.retention_plan(tags, D("2026-11-29"))
    assert (found, got_tier) == (D(delete_on), tier)
    ((tag, why),) = warnings
    assert warning in why and tag in tags and why.startswith(tag)


@pytest.mark.parametrize(
    ("tags", "created", "expected", "warned"),
    [
        ({}, "2026-11-20", None, False),
        ({"Copy_Retention": "30"}, "2026-11-20", "2026-12-20", False),
        ({"Copy_Retention": " 1 "}, "2026-12-31", "2027-01-01", False),
        ({"Copy_Retention": "0"}, "2026-11-20", None, True),
        ({"Copy_Retention": "a month"}, "2026-11-20", None, True),
        ({"Copy_Retention": "999999"}, "2026-11-20", "2126-10-27", True),  # capped, 36500 days
    ],
)
def test_a_copys_delete_on_counts_from_the_primarys_creation(tags, created, expected, warned):
    got, warning = copier.copy_delete_on(tags, D(created), "Copy_Retention")
    assert got == (D(expected) if expected else None)
    assert (warning is not None) == warned


@pytest.mark.parametrize(
    "key",
    [
        "alias/backup",
        "alias/aws/ebs",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        MRK,
        KEY_ARN,
        "arn:aws:kms:eu-west-1:123456789012:alias/dr-key",
        "arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/" + MRK,
    ],
)
def test_kms_key_forms_copy_snapshot_takes(key):
    assert creator.KMS_KEY.fullmatch(key)


@pytest.mark.parametrize(
    "key", ["backup", "alias/", "key/123", "arn:aws:kms:us-east-1:1:key/x", "alias/a b", "12345"]
)
def test_what_is_not_a_kms_key(key):
    assert not creator.KMS_KEY.fullmatch(key)


# ---- the creator ----


def run_creator(now=NOW, event=None):
    return creator.run(event or {}, None, now=now)


def only_snapshot_tags():
    (tags,) = snapshots().values()
    return tags


def test_each_snapshot_records_its_tier():
    launch({"Backup": "Yes", "Retention_Weekly": "4"})
    sunday = datetime(2026, 11, 29, 2, tzinfo=UTC)
    result = run_creator(now=sunday)
    tags = only_snapshot_tags()
    assert (tags["DeleteOn"], tags["Retention_Tier"]) == ("2026-12-27", "weekly")
    assert result["created"][0]["tier"] == "weekly"


SUNDAY = datetime(2026, 11, 29, 2, tzinfo=UTC)
FIRST = datetime(2026, 12, 1, 2, tzinfo=UTC)
NEW_YEAR = datetime(2027, 1, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("tags", "now", "delete_on", "tier", "warned"),
    [
        ({"Retention_Weekly": "2"}, SUNDAY, "2026-12-13", "weekly", False),
        ({"Retention_Weekly": "2", "Weekly_Day": "Thu"}, NOW, "2026-12-10", "weekly", False),
        ({"Retention_Monthly": "3"}, FIRST, "2027-03-01", "monthly", False),
        ({"Retention_Yearly": "2"}, NEW_YEAR, "2029-01-01", "yearly", False),
        ({"Retention_Weekly": "x"}, SUNDAY, "2026-12-06", "daily", True),
        ({"Retention_Weekly": "2", "Weekly_Day": "Caturday"}, SUNDAY, "2026-12-13", "weekly", True),
        ({"Retention_Monthly": "0"}, FIRST, "2026-12-08", "daily", True),
        ({"Retention_Yearly": "many"}, NEW_YEAR, "2027-01-08", "daily", True),
        ({"Retention_Yearly": "1000"}, NEW_YEAR, "2127-01-01", "yearly", True),  # capped: 100
    ],
)
def test_each_tier_tag_on_a_real_run(tags, now, delete_on, tier, warned):
    iid, _ = launch({"Backup": "Yes"} | tags)
    result = run_creator(now=now)
    written = only_snapshot_tags()
    assert (written["DeleteOn"], written["Retention_Tier"]) == (delete_on, tier)
    assert [w["id"] for w in result["warnings"]] == ([iid] if warned else [])


def test_every_run_on_the_weekly_day_gets_the_weekly_tier():
    launch({"Backup": "Yes", "Retention_Weekly": "4"})
    for hour, event in ((2, "morning"), (14, "afternoon")):
        run_creator(now=datetime(2026, 11, 29, hour, tzinfo=UTC), event={"id": event})
    assert [(t["DeleteOn"], t["Retention_Tier"]) for t in snapshots().values()] == [
        ("2026-12-27", "weekly")
    ] * 2


def test_a_bad_tier_tag_warns_and_still_backs_up():
    iid, _ = launch({"Backup": "Yes", "Retention_Monthly": "forever"})
    result = run_creator(now=datetime(2026, 12, 1, 2, tzinfo=UTC))
    assert only_snapshot_tags()["Retention_Tier"] == "daily"
    assert [w["id"] for w in result["warnings"]] == [iid]
    assert "Retention_Monthly 'forever'" in result["warnings"][0]["reason"]


def test_copy_retention_and_key_travel_on_the_primary():
    launch(
        {"Backup": "Yes", "Copy_Dest": DEST, "Copy_Retention": "30", "Copy_KmsKeyId": "alias/dr"}
    )
    run_creator()
    tags = only_snapshot_tags()
    assert (tags["Copy_Retention"], tags["Copy_KmsKeyId"]) == ("30", "alias/dr")


def test_copy_settings_are_not_written_without_copy_dest():
    launch({"Backup": "Yes", "Copy_Retention": "30", "Copy_KmsKeyId": "alias/dr"})
    result = run_creator()
    assert "Copy_Retention" not in only_snapshot_tags()
    assert "Copy_KmsKeyId" not in only_snapshot_tags()
    assert result["warnings"] == []


@pytest.mark.parametrize(
    ("tags", "warning"),
    [
        ({"Copy_Retention": "soon"}, "copies keep the primary's DeleteOn"),
        ({"Copy_KmsKeyId": "my-key"}, "copies use each region's default EBS key"),
    ],
)
def test_bad_copy_settings_warn_and_are_left_out(tags, warning):
    iid, _ = launch({"Backup": "Yes", "Copy_Dest": DEST} | tags)
    result = run_creator()
    written = only_snapshot_tags()
    assert not set(tags) & set(written)
    assert written["Copy_Dest"] == DEST  # the copies are still made
    assert [(w["id"], warning in w["reason"]) for w in result["warnings"]] == [(iid, True)]


# ---- the copier ----


def primary(created="2026-11-20", delete_on="2026-12-31", dests=DEST, **extra):
    tags = {"Type": "Automated", "DeleteOn": delete_on, "Copy_Dest": dests, **extra}
    sid = make_snapshot(tags)
    moto_snapshot(sid).start_time = datetime.fromisoformat(created + "T02:00:00")
    return sid


def run_copier():
    return copier.run({}, None, now=NOW)


def copy_tags(source, region=DEST):
    (tags,) = [t for t in snapshots(region).values() if t.get("Source_SnapshotId") == source]
    return tags


def test_a_copy_gets_its_own_delete_on_from_copy_retention():
    src = primary(Copy_Retention="30")
    result = run_copier()
    assert copy_tags(src)["DeleteOn"] == "2026-12-20"  # 20 November + 30 days
    assert result["copied"][0]["delete_on"] == "2026-12-20"


def test_a_copy_may_outlive_its_primary():
    src = primary(delete_on="2026-11-27", Copy_Retention="90")
    run_copier()
    assert copy_tags(src)["DeleteOn"] == "2027-02-18"


def test_no_copy_is_made_whose_own_delete_on_has_come():
    src = primary(created="2026-11-20", Copy_Retention="6")  # the copy's date: 26 November
    result = run_copier()
    assert [t for t in snapshots(DEST).values()] == []
    (skipped,) = result["skipped"]
    assert skipped["id"] == src and "the copy's DeleteOn 2026-11-26 has come" in skipped["reason"]
    assert result["failures"] == []


@pytest.mark.parametrize("value", ["0", "two", "", "-1"])
def test_a_bad_copy_retention_on_the_primary_warns_and_keeps_its_date(value):
    src = primary(Copy_Retention=value)
    result = run_copier()
    assert copy_tags(src)["DeleteOn"] == "2026-12-31"
    assert [w["id"] for w in result["warnings"]] == [src]


def test_a_copy_with_a_key_is_encrypted_with_it_in_every_destination(api):
    src = primary(dests=f"{DEST},{DEST2}", Copy_KmsKeyId="alias/dr")
    result = run_copier()
    calls = api.ops("CopySnapshot")
    assert len(calls) == 2
    assert all(c["Encrypted"] is True and c["KmsKeyId"] == "alias/dr" for c in calls)
    assert {c["dest_region"] for c in result["copied"]} == {DEST, DEST2}
    assert all(c["kms_key_id"] == "alias/dr" for c in result["copied"])
    assert copy_tags(src, DEST2)["Source_SnapshotId"] == src


def test_without_a_key_copies_use_the_default(api):
    primary()
    run_copier()
    (call,) = api.ops("CopySnapshot")
    assert "KmsKeyId" not in call and "Encrypted" not in call


def test_a_malformed_key_warns_and_copies_with_the_default(api):
    src = primary(Copy_KmsKeyId="not a key")
    result = run_copier()
    (call,) = api.ops("CopySnapshot")
    assert "KmsKeyId" not in call
    assert [w["id"] for w in result["warnings"]] == [src]
    assert copy_tags(src)["Source_SnapshotId"] == src


def test_a_key_refused_by_one_destination_fails_that_copy_only(api):
    src = primary(dests=f"{DEST},{DEST2}", Copy_KmsKeyId=KEY_ARN)  # a us-west-2 key
    api.fail("CopySnapshot", "InvalidParameterValue", when=lambda p, region: region == DEST2)
    with pytest.raises(copier.JobFailed, match="InvalidParameterValue") as failed:
        run_copier()
    summary = failed.value.summary
    assert [(f["id"], f["dest_region"]) for f in summary["failures"]] == [(src, DEST2)]
    assert copy_tags(src, DEST)["Source_SnapshotId"] == src  # the other one is made
    assert snapshots(DEST2) == {}


def test_a_copy_that_failed_later_is_named_and_not_made_again(api):
    src = primary(Copy_KmsKeyId="alias/missing")
    run_copier()
    (copy_id,) = snapshots(DEST)
    moto_snapshot(copy_id, DEST).status = "error"  # AWS checks the key after the copy starts
    api.calls.clear()
    with pytest.raises(copier.JobFailed) as failed:
        run_copier()
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == copy_id and src in failure["error"]
    assert failure["dest_region"] == DEST
    assert api.ops("CopySnapshot") == []  # not another failed copy every sweep


# ---- the manager's coverage check agrees with the copier ----


@pytest.mark.dates  # also run a year ahead (make test)
def test_coverage_expects_a_recent_copy_whatever_the_copy_retention():
    now = datetime.now(UTC) + timedelta(days=5)
    _, vols = launch({"Backup": "Yes", "Copy_Dest": DEST})
    vid = vols["/dev/sda1"]
    aged(vid, now, 72, DEST, copy_retention="30")  # outside the copy window (26 + 24 h)
    copy_of(aged(vid, now, 60, DEST, copy_retention="1"))  # its copy, expired: outside too
    fresh = aged(vid, now, 1, DEST, copy_retention="1")
    aged(vid, now, 30, DEST, copy_retention="1")  # the copier had 24 h for this one
    result = manager.run({}, None, now=now)
    assert [u["volume_id"] for u in result["unprotected"]] == [vid]
    assert f"no completed copy in {DEST}" in result["unprotected"][0]["reason"]
    copy_of(fresh)  # a completed copy of any snapshot of the window will do
    result = manager.run({}, None, now=now)
    assert result["counts"]["unprotected"] == 0 and result["counts"]["protected"] == 1


@pytest.mark.dates  # also run a year ahead (make test)
def test_coverage_names_a_failed_copy():
    now = datetime.now(UTC) + timedelta(days=5)
    _, vols = launch({"Backup": "Yes", "Copy_Dest": DEST})
    aged(vols["/dev/sda1"], now, 1, DEST)
    copy_of(aged(vols["/dev/sda1"], now, 45, DEST), state="error")
    result = manager.run({}, None, now=now)
    reason = result["unprotected"][0]["reason"]
    assert f"no completed copy in {DEST}" in reason and "(a copy failed)" in reason
