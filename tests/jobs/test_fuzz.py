"""Property-based tests: random fleets and tag values, on moto, reset for each example."""

import re
from datetime import date, timedelta

from conftest import DEST, NOW, REGION, ec2, launch, make_snapshot, snapshots
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager

TODAY = NOW.date()
NO_WORDS = {"no", "false", "0", "off"}
YES_WORDS = {"yes", "true", "1", "on"}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Text AWS would accept as a tag value: any printable Unicode, up to 256 characters.
free_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=256)
day = st.integers(-400, 400).map(lambda n: (TODAY + timedelta(days=n)).isoformat())
wrong_dates = st.sampled_from(
    [
        "",
        " ",
        "2026/11/01",
        "01-11-2026",
        "2026-11-1",
        "20261101",
        "2026-02-30",
        "2026-13-01",
        "2026-11-01T00:00:00Z",
        " 2026-11-01",
        "2026-11-01 ",
        "next week",
        "-1",
        "٢٠٢٦-١١-٠١",
    ]
)
absent = st.none()


def tags_of(**values):
    return {k: v for k, v in values.items() if v is not None}


def should_delete(tags):
    """The manager's one rule, written out from the contract."""
    if tags.get("Type") != "Automated":
        return False
    if "KeepForever" in tags and tags["KeepForever"].strip().lower() not in NO_WORDS:
        return False
    raw = tags.get("DeleteOn", "")
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", raw):
        return False
    try:
        return date.fromisoformat(raw) <= TODAY
    except ValueError:
        return False


snapshot_tags = st.builds(
    tags_of,
    Type=st.one_of(absent, st.sampled_from(["Automated", "automated", "Manual", ""]), free_text),
    DeleteOn=st.one_of(absent, day, wrong_dates, free_text),
    KeepForever=st.one_of(
        absent, st.sampled_from(["yes", "No", "false", "0", "off", "OFF", "", "n"]), free_text
    ),
)


@FUZZ
@given(st.lists(snapshot_tags, max_size=8))
def test_manager_deletes_exactly_the_automated_expired_not_kept_snapshots(fleet):
    mock_aws().reset()
    made = {make_snapshot(tags): tags for tags in fleet}
    result = manager.run({}, None, now=NOW)
    expected = {sid for sid, tags in made.items() if not should_delete(tags)}
    assert set(snapshots()) == expected
    assert {d["snapshot_id"] for d in result.get("deleted", [])} == set(made) - expected
    for sid, tags in made.items():  # each unreadable DeleteOn of ours is named
        unreadable = tags.get("Type") == "Automated" and "KeepForever" not in tags
        if unreadable and manager.parse_date(tags.get("DeleteOn")) is None:
            assert any(
                w["id"] == sid and repr(tags.get("DeleteOn")) in w["reason"]
                for w in result["warnings"]
            )


instance_value = st.one_of(
    st.sampled_from(["", "-3", "0", "7", "1.5", "99999999999", "٣", "🙂", "x" * 256]), free_text
)
backup_value = st.one_of(st.sampled_from(["Yes", "YES", "true", "1", "on"]), instance_value)
copy_dest_value = st.one_of(
    st.lists(st.sampled_from([DEST, REGION, "nowhere-1", "US-WEST-2", "eu-west-1", "", "🙂"])).map(
        " ,".join
    ),
    free_text,
)


def named(warnings, value):
    return any(repr(value) in w["reason"] for w in warnings)


@FUZZ
@given(
    backup=backup_value,
    retention=st.one_of(absent, instance_value),
    copy_dest=st.one_of(absent, copy_dest_value),
    name=st.one_of(absent, free_text),
    volume_backup=st.one_of(absent, backup_value, st.sampled_from(["No", "off"])),
    keep=st.one_of(absent, free_text),
)
def test_fuzzed_tags_never_crash_never_lose_a_kept_snapshot_and_are_named(
    backup, retention, copy_dest, name, volume_backup, keep
):
    mock_aws().reset()
    tags = tags_of(Backup=backup, Retention=retention, Copy_Dest=copy_dest, Name=name)
    vtags = {"/dev/sdb": {"Backup": volume_backup}} if volume_backup is not None else {}
    launch(tags, devices=("/dev/sda1", "/dev/sdb"), volume_tags=vtags)
    mine = make_snapshot(tags_of(DeleteOn="2020-01-01", KeepForever=keep))  # a person's
    old = make_snapshot(tags_of(Type="Automated", DeleteOn="2020-01-01", KeepForever=keep))

    made = creator.run({}, None, now=NOW)  # raises JobFailed on any failure
    copier.run({}, None, now=NOW)
    manager.run({}, None, now=NOW)

    after = snapshots()
    assert mine in after  # never a snapshot without Type=Automated
    assert (old in after) == (keep is not None and keep.strip().lower() not in NO_WORDS)
    for tags_after in after.values():
        if tags_after.get("Type") == "Automated" and "DeleteOn" in tags_after:
            assert creator.parse_date(tags_after["DeleteOn"]) is not None
    warnings = made["warnings"]
    enabled = backup.strip().lower() in YES_WORDS
    if not enabled and backup.strip().lower() not in NO_WORDS:
        assert named(warnings, backup)
    if enabled and retention is not None:
        good = re.fullmatch(r"[0-9]+", retention.strip()) and 1 <= int(retention) <= 36500
        assert good or named(warnings, retention)
    if enabled and copy_dest is not None:
        regions = {r["RegionName"] for r in ec2().describe_regions()["Regions"]}
        for entry in re.split(r"[\s,]+", copy_dest.strip()):
            if entry and (entry == REGION or entry not in regions):
                assert any(repr(entry) in w["reason"] for w in warnings)
    if enabled and volume_backup is not None:
        word = volume_backup.strip().lower()
        assert word in YES_WORDS | NO_WORDS or named(warnings, volume_backup)
    for copy in snapshots(DEST).values():
        assert copy["Type"] == "Automated" and copy["Source_Region"] == REGION


# ---- the last backup: in any listing order, with duplicates, equal times ----------------

stamp = st.integers(0, 5).map(lambda h: NOW - timedelta(hours=h))  # equal times are likely
COPY_TAGS = {"Source_SnapshotId": "snap-x", "Source_Region": DEST, "Source_VolumeId": "vol-z"}
listed = st.lists(
    st.tuples(
        st.sampled_from(["vol-a", "vol-b"]),
        stamp,
        st.sampled_from(["completed", "pending", "error"]),
        st.booleans(),
        # tags anyone could write: none of them may release a volume's newest snapshot
        st.sampled_from([{}, {"Vault_StagingOf": "snap-x"}, COPY_TAGS]),
    ),
    min_size=1,
    max_size=12,
)


@FUZZ
@given(listed, st.randoms(use_true_random=False), st.booleans())
def test_the_newest_completed_snapshot_is_never_released_whatever_the_order(made, rnd, twice):
    """LastBackups over a listing in any order, pages read twice or not: each backed-up
    volume's newest completed snapshot is never released; every other due one is."""
    snaps = [
        {
            "SnapshotId": f"snap-{n:04d}",
            "VolumeId": vid,
            "StartTime": start,
            "State": state,
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
        }
        for n, (vid, start, state, _, tags) in enumerate(made)
    ]
    due = {s["SnapshotId"] for s, m in zip(snaps, made, strict=True) if m[3]}
    order = snaps + (snaps if twice else [])
    rnd.shuffle(order)
    last = manager.LastBackups({"vol-a"}, TODAY, 14)  # vol-b is no longer backed up
    released = []
    for s in order:
        for snap, _ in last.offer(s, "due" if s["SnapshotId"] in due else None):
            released.append(snap["SnapshotId"])

    def newest(which):
        done = [s for s, m in zip(snaps, made, strict=True) if which(s, m)]
        done = [s for s in done if s["State"] == "completed"]
        return (
            {max(done, key=lambda s: (s["StartTime"], s["SnapshotId"]))["SnapshotId"]}
            if done
            else set()
        )

    volume = newest(lambda s, m: s["VolumeId"] == "vol-a")  # whatever its tags
    copy = newest(lambda s, m: m[4] == COPY_TAGS)  # vol-z's newest copy (no DeleteOn: in grace)
    assert not volume & set(released)
    kept = {snap["SnapshotId"] for snap, _ in last.held.values()}
    assert kept == (volume | copy) & due
    assert set(released) == due - kept
