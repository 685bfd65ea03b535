"""Copy_State (issue 16, goal 4): the creator tags each primary that asks for copies
Copy_State=pending; the copier marks it done once nothing is left to do for it, and its
scheduled sweeps read only the pending ones, except the day's first, which reads them all."""

from datetime import timedelta

import boto3
import pytest
from conftest import DEST, DEST2, NOW, REGION, launch, make_snapshot, set_snapshot_state, snapshots
from test_vault import VAULT, set_vault_state, shared_with, vault_snapshots

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator

LATER = "2026-12-03"


def scheduled(hour, minute=0):
    when = NOW.replace(hour=hour, minute=minute, second=0)
    return {
        "version": "0",
        "id": f"sweep-{hour}-{minute}",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {},
    }


PENDING_SWEEP, FULL_SWEEP = scheduled(10, 15), scheduled(0, 0)


def sweep(event=PENDING_SWEEP):
    return copier.run(event, None, region=REGION, now=NOW)


def primary(state="pending", dests=DEST, **extra):
    tags = {"Type": "Automated", "DeleteOn": LATER, "Copy_Dest": dests, **extra}
    return make_snapshot(tags | ({"Copy_State": state} if state else {}))


def state_of(sid):
    return snapshots()[sid].get("Copy_State")


def copies_of(source, region=DEST):
    return [s for s, t in snapshots(region).items() if t.get("Source_SnapshotId") == source]


@pytest.mark.parametrize(
    "hour, minute, scope",
    [(0, 0, "full"), (0, 14, "full"), (0, 15, "pending"), (13, 0, "pending"), (23, 59, "pending")],
)
def test_only_the_days_first_scheduled_sweep_reads_every_primary(hour, minute, scope):
    assert copier.sweep_scope(scheduled(hour, minute)) == scope


@pytest.mark.parametrize(
    "event",
    [
        {},
        {"dry_run": True},
        {**PENDING_SWEEP, "time": "yesterday"},
        {**PENDING_SWEEP, "time": None},
        {**PENDING_SWEEP, "time": "2026-11-26T10:15:00"},  # no zone: not trusted
    ],
)
def test_a_run_by_hand_or_with_an_unreadable_time_is_a_full_sweep(event):
    assert copier.sweep_scope(event) == "full"


def test_the_creator_marks_pending_exactly_the_snapshots_to_be_copied(monkeypatch):
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, VAULT)
    launch({"Backup": "Yes", "Copy_Dest": DEST})
    launch({"Backup": "Yes", "Vault_Account": VAULT})
    launch({"Backup": "Yes"})
    creator.run({}, None, region=REGION, now=NOW)
    states = sorted(str(tags.get("Copy_State")) for tags in snapshots().values())
    assert states == ["None", "pending", "pending"]


def test_a_primary_is_pending_until_its_copy_completes_then_done(api):
    src = primary()
    sweep()
    (cid,) = copies_of(src)
    set_snapshot_state(cid, "pending", DEST)
    sweep()
    assert state_of(src) == "pending"  # still copying
    set_snapshot_state(cid, "completed", DEST)
    sweep()
    assert state_of(src) == "done"
    api.calls.clear()
    result = sweep()  # nothing pending: one listing of this region, nothing else
    assert [(c[0], c[1]) for c in api.calls] == [(REGION, "DescribeSnapshots")]
    assert result["counts"] == {} and copies_of(src) == [cid]


def test_a_pending_sweep_leaves_older_primaries_to_the_days_full_sweep():
    legacy = primary(state=None)  # made before Copy_State existed
    sweep()
    assert copies_of(legacy) == []
    sweep(FULL_SWEEP)
    (cid,) = copies_of(legacy)
    assert state_of(legacy) == "pending"  # its copy started: the pending sweeps follow it
    sweep()
    assert state_of(legacy) == "done" and copies_of(legacy) == [cid]


def test_a_copied_primary_from_before_copy_state_is_left_untagged():
    done_already = primary(state=None)
    make_snapshot(
        {
            "Type": "Automated",
            "DeleteOn": LATER,
            "Source_SnapshotId": done_already,
            "Source_Region": REGION,
        },
        region=DEST,
    )
    sweep(FULL_SWEEP)
    assert state_of(done_already) is None  # nothing to do: no tag written


def test_every_destination_and_the_vault_must_be_done(monkeypatch):
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, VAULT)
    src = primary(dests=f"{DEST},{DEST2}", Vault_Account=VAULT)
    sweep()
    (vault_copy,) = vault_snapshots()
    set_vault_state(vault_copy, "pending")
    sweep()
    assert state_of(src) == "pending" and shared_with(src) == [VAULT]
    set_vault_state(vault_copy, "completed")
    sweep()
    assert shared_with(src) == [] and state_of(src) == "done"
    assert len(copies_of(src)) == len(copies_of(src, DEST2)) == 1


def test_a_copy_in_error_keeps_its_primary_pending_and_fails_each_sweep():
    src = primary()
    sweep()
    set_snapshot_state(copies_of(src)[0], "error", DEST)
    for _ in range(2):
        with pytest.raises(copier.JobFailed):
            sweep()
        assert state_of(src) == "pending"


def test_a_destination_that_cannot_be_read_keeps_its_primaries_pending(api):
    src = primary(dests=f"{DEST},{DEST2}")
    sweep()
    api.fail("DescribeSnapshots", "UnauthorizedOperation", when=lambda p, region: region == DEST2)
    with pytest.raises(copier.JobFailed):
        sweep()
    assert state_of(src) == "pending"


def test_a_refused_mark_is_a_warning_and_the_next_sweep_marks_it(api):
    src = primary()
    sweep()
    api.fail("CreateTags", "UnauthorizedOperation", times=1)
    result = sweep()
    assert state_of(src) == "pending" and result["failures"] == []
    assert "not marked Copy_State=done" in result["warnings"][0]["reason"]
    sweep()
    assert state_of(src) == "done"


def test_keep_forever_set_later_and_a_lost_copy_wait_for_the_full_sweep():
    kept, lost = primary(), primary()
    sweep()
    sweep()
    assert state_of(kept) == state_of(lost) == "done"
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_tags(Resources=[kept], Tags=[{"Key": "KeepForever", "Value": "yes"}])
    boto3.client("ec2", region_name=DEST).delete_snapshot(SnapshotId=copies_of(lost)[0])
    sweep()
    assert copies_of(lost) == []
    sweep(FULL_SWEEP)
    (kept_copy,) = copies_of(kept)
    assert snapshots(DEST)[kept_copy]["KeepForever"] == "yes"
    assert len(copies_of(lost)) == 1 and state_of(lost) == "pending"


def test_a_dry_run_writes_no_copy_state(api):
    src = primary()
    sweep()
    copier.run({**PENDING_SWEEP, "dry_run": True}, None, region=REGION, now=NOW)
    assert state_of(src) == "pending"
    assert [p["DryRun"] for p in api.ops("CreateTags")] == [True]


def test_pending_primaries_are_looked_up_two_hundred_ids_at_a_time(api, monkeypatch):
    monkeypatch.setattr(copier, "LOOKUP_BATCH", 2)  # 200 in production: 5 primaries, 3 lookups
    sources = [primary() for _ in range(5)]
    sweep()
    api.calls.clear()
    sweep()
    lookups = [
        f["Values"]
        for p in api.ops("DescribeSnapshots", region=DEST)
        for f in p.get("Filters", [])
        if f["Name"] == "tag:Source_SnapshotId"
    ]
    assert sorted(len(v) for v in lookups) == [1, 2, 2]
    assert sorted(v for values in lookups for v in values) == sorted(sources)
    tagged = [p["Resources"] for p in api.ops("CreateTags", region=REGION)]
    assert sorted(len(r) for r in tagged) == [1, 2, 2]
    assert {state_of(s) for s in sources} == {"done"}


def test_beyond_max_lookup_a_destination_is_read_whole(api, monkeypatch):
    monkeypatch.setattr(copier, "MAX_LOOKUP", 2)
    sources = [primary() for _ in range(3)]
    sweep()
    api.calls.clear()
    sweep()
    filters = [p.get("Filters", []) for p in api.ops("DescribeSnapshots", region=DEST)]
    assert not any(f["Name"] == "tag:Source_SnapshotId" for fs in filters for f in fs)
    assert {state_of(s) for s in sources} == {"done"}


def test_a_scheduled_sweep_a_day_later_still_finds_a_primary_left_pending():
    src = primary()
    later = NOW + timedelta(days=1)
    copier.run(PENDING_SWEEP, None, region=REGION, now=later)
    assert len(copies_of(src)) == 1
