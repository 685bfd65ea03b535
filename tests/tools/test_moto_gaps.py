"""moto_gaps' EBS Snapshot Lock emulation, through boto3's real request path: LockSnapshot,
UnlockSnapshot, DescribeLockedSnapshots, and DeleteSnapshot refusing a locked snapshot.

Time is moto's clock (``moto.ec2.models.elastic_block_store.utcnow``), which ``clock`` sets.
"""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from conftest import (
    DEST,
    REGION,
    client_as,
    clock,
    ec2,
    make_snapshot,
    set_snapshot_state,
    snapshots,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from testkit.moto_gaps import locks

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOUR, DAY = timedelta(hours=1), timedelta(days=1)
OTHER_ACCOUNT = "111122223333"


def code_of(call, *args, **kwargs):
    with pytest.raises(ClientError) as raised:
        call(*args, **kwargs)
    return raised.value.response["Error"]["Code"]


def lock(snapshot_id, region=REGION, **params):
    return ec2(region).lock_snapshot(SnapshotId=snapshot_id, **params)


def described(region=REGION, **params):
    """{snapshot id: its LockedSnapshotsInfo} of one DescribeLockedSnapshots page."""
    page = ec2(region).describe_locked_snapshots(**params)
    assert "NextToken" not in page
    return {info["SnapshotId"]: info for info in page["Snapshots"]}


def state_of(snapshot_id, region=REGION):
    return described(region, SnapshotIds=[snapshot_id])[snapshot_id]["LockState"]


def snapshot_at(now, region=REGION):
    with clock(now):
        return make_snapshot({"Type": "Automated"}, region=region)


# ---- locking, deleting, expiring ----------------------------------------------------------


def test_a_governance_lock_until_a_date_blocks_delete_until_it_expires():
    sid = snapshot_at(T0)
    with clock(T0):
        answer = lock(sid, LockMode="governance", ExpirationDate=T0 + 3 * DAY)
        assert answer["SnapshotId"] == sid and answer["LockState"] == "governance"
        assert answer["LockCreatedOn"] == answer["LockDurationStartTime"] == T0
        assert answer["LockExpiresOn"] == T0 + 3 * DAY
        assert not {"LockDuration", "CoolOffPeriod", "CoolOffPeriodExpiresOn"} & set(answer)
        info = described()[sid]
        assert info["OwnerId"] == DEFAULT_ACCOUNT_ID and info["LockState"] == "governance"
        assert info["LockExpiresOn"] == T0 + 3 * DAY
        assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "OperationNotPermitted"
        assert sid in snapshots()
    with clock(T0 + 3 * DAY - timedelta(seconds=1)):
        assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "OperationNotPermitted"
    with clock(T0 + 3 * DAY):
        assert state_of(sid) == "expired"  # still listed, as AWS lists expired locks
        assert set(described(Filters=[{"Name": "lock-state", "Values": ["expired"]}])) == {sid}
        ec2().delete_snapshot(SnapshotId=sid)
        assert sid not in snapshots()
        assert described() == {} and locks() == {}  # the deleted snapshot's lock went with it


def test_a_lock_duration_counts_days_from_the_lock():
    sid = snapshot_at(T0)
    with clock(T0 + HOUR):
        answer = lock(sid, LockMode="governance", LockDuration=7)
    assert answer["LockDuration"] == 7
    assert answer["LockDurationStartTime"] == T0 + HOUR
    assert answer["LockExpiresOn"] == T0 + HOUR + 7 * DAY
    with clock(T0 + HOUR + 7 * DAY - timedelta(seconds=1)):
        assert state_of(sid) == "governance"
    with clock(T0 + HOUR + 7 * DAY):
        assert state_of(sid) == "expired"


def test_compliance_with_a_cooling_off_period_unlocks_during_it_and_not_after():
    early, late = snapshot_at(T0), snapshot_at(T0)
    with clock(T0):
        for sid in (early, late):
            answer = lock(sid, LockMode="compliance", CoolOffPeriod=24, LockDuration=30)
            assert answer["LockState"] == "compliance-cooloff"
            assert answer["CoolOffPeriod"] == 24
            assert answer["CoolOffPeriodExpiresOn"] == T0 + 24 * HOUR
        assert code_of(ec2().delete_snapshot, SnapshotId=early) == "OperationNotPermitted"
    with clock(T0 + 23 * HOUR):
        assert ec2().unlock_snapshot(SnapshotId=early)["SnapshotId"] == early
        assert set(described()) == {late}
        ec2().delete_snapshot(SnapshotId=early)
    with clock(T0 + 24 * HOUR):
        assert state_of(late) == "compliance"
        assert code_of(ec2().unlock_snapshot, SnapshotId=late) == "OperationNotPermitted"
        assert code_of(ec2().delete_snapshot, SnapshotId=late) == "OperationNotPermitted"
    with clock(T0 + 30 * DAY):
        assert state_of(late) == "expired"
        ec2().delete_snapshot(SnapshotId=late)
    assert snapshots() == {}


def test_compliance_without_a_cooling_off_period_is_in_force_at_once():
    sid = snapshot_at(T0)
    with clock(T0):
        assert lock(sid, LockMode="compliance", LockDuration=1)["LockState"] == "compliance"
        assert code_of(ec2().unlock_snapshot, SnapshotId=sid) == "OperationNotPermitted"


def test_governance_and_cooling_off_locks_may_change_anything():
    sid = snapshot_at(T0)
    with clock(T0):
        lock(sid, LockMode="governance", LockDuration=30)
    with clock(T0 + DAY):  # shorter, and on to compliance with a cooling-off period
        answer = lock(sid, LockMode="compliance", CoolOffPeriod=2, LockDuration=10)
        assert answer["LockState"] == "compliance-cooloff"
        assert answer["LockCreatedOn"] == answer["LockDurationStartTime"] == T0
        assert answer["LockExpiresOn"] == T0 + 10 * DAY
        assert answer["CoolOffPeriodExpiresOn"] == T0 + DAY + 2 * HOUR
    with clock(T0 + DAY + HOUR):  # still cooling off: back to governance, shorter again
        answer = lock(sid, LockMode="governance", ExpirationDate=T0 + 2 * DAY)
        assert answer["LockState"] == "governance"
        assert answer["LockExpiresOn"] == T0 + 2 * DAY
        assert "CoolOffPeriod" not in answer


def test_after_the_cooling_off_period_a_compliance_lock_can_only_be_extended():
    sid = snapshot_at(T0)
    with clock(T0):
        lock(sid, LockMode="compliance", CoolOffPeriod=1, LockDuration=30)
    with clock(T0 + 2 * HOUR):
        refused = [
            {"LockMode": "compliance", "LockDuration": 29},
            {"LockMode": "compliance", "ExpirationDate": T0 + 20 * DAY},
            {"LockMode": "governance", "LockDuration": 60},
            {"LockMode": "compliance", "LockDuration": 60, "CoolOffPeriod": 5},
        ]
        for params in refused:
            assert code_of(lock, sid, **params) == "OperationNotPermitted", params
        assert described()[sid]["LockExpiresOn"] == T0 + 30 * DAY
        answer = lock(sid, LockMode="compliance", LockDuration=31)
        assert answer["LockState"] == "compliance"
        assert answer["LockExpiresOn"] == T0 + 31 * DAY
        assert answer["CoolOffPeriod"] == 1  # the past cooling-off period stays on record
        answer = lock(sid, LockMode="compliance", ExpirationDate=T0 + 400 * DAY)
        assert answer["LockExpiresOn"] == T0 + 400 * DAY
        assert "LockDuration" not in answer


def test_a_lock_on_a_pending_snapshot_starts_its_duration_when_the_snapshot_completes():
    sid = snapshot_at(T0)
    set_snapshot_state(sid, "pending")
    with clock(T0):
        answer = lock(sid, LockMode="governance", LockDuration=5)
        assert answer["LockState"] == "governance"
        assert "LockExpiresOn" not in answer and "LockDurationStartTime" not in answer
    with clock(T0 + 10 * DAY):  # still pending: the duration has not started
        assert state_of(sid) == "governance"
        assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "OperationNotPermitted"
        set_snapshot_state(sid, "completed")
        info = described()[sid]
        assert info["LockDurationStartTime"] == T0 + 10 * DAY
        assert info["LockExpiresOn"] == T0 + 15 * DAY


def test_a_lock_on_a_pending_snapshot_is_canceled_if_the_snapshot_fails():
    sid = snapshot_at(T0)
    set_snapshot_state(sid, "pending")
    with clock(T0):
        lock(sid, LockMode="compliance", LockDuration=5)
        set_snapshot_state(sid, "error")
        assert described() == {}
        ec2().delete_snapshot(SnapshotId=sid)


# ---- what LockSnapshot refuses ------------------------------------------------------------


@pytest.mark.parametrize(
    "params, code",
    [
        ({"LockMode": "governance", "LockDuration": 3, "ExpirationDate": T0 + DAY}, "Combination"),
        ({"LockMode": "governance"}, "Combination"),
        ({"LockMode": "governance", "CoolOffPeriod": 2, "LockDuration": 3}, "Combination"),
        ({"LockMode": "compliance", "CoolOffPeriod": 73, "LockDuration": 3}, "Value"),
        ({"LockMode": "compliance", "LockDuration": 36501}, "Value"),
        ({"LockMode": "governance", "ExpirationDate": T0 - HOUR}, "Value"),
        ({"LockMode": "governance", "ExpirationDate": T0}, "Value"),
        ({"LockMode": "legal-hold", "LockDuration": 3}, "Value"),
    ],
)
def test_lock_parameters_are_checked(params, code):
    sid = snapshot_at(T0)
    with clock(T0):
        assert code_of(lock, sid, **params) == f"InvalidParameter{code}"
        assert code_of(lock, sid, DryRun=True, **params) == f"InvalidParameter{code}"
    assert described() == {}


def test_the_largest_values_are_allowed():
    sid = snapshot_at(T0)
    with clock(T0):
        answer = lock(sid, LockMode="compliance", CoolOffPeriod=72, LockDuration=36500)
    assert answer["LockExpiresOn"] == T0 + 36500 * DAY


def test_values_under_the_minimum_are_refused_by_botocore_and_by_ec2():
    sid = snapshot_at(T0)
    unchecked = boto3.client("ec2", region_name=REGION, config=Config(parameter_validation=False))
    cases = [
        ("lock_snapshot", {"LockMode": "compliance", "CoolOffPeriod": 0, "LockDuration": 1}),
        ("lock_snapshot", {"LockMode": "governance", "LockDuration": 0}),
        ("describe_locked_snapshots", {"MaxResults": 4}),
    ]
    with clock(T0):
        for operation, params in cases:
            if operation == "lock_snapshot":
                params = {"SnapshotId": sid, **params}
            with pytest.raises(ParamValidationError):
                getattr(ec2(), operation)(**params)
            expected = "InvalidMaxResults" if "MaxResults" in params else "InvalidParameterValue"
            assert code_of(getattr(unchecked, operation), **params) == expected
    assert described() == {}


def test_a_snapshot_that_is_not_there_or_not_lockable():
    failed = snapshot_at(T0)
    set_snapshot_state(failed, "error")
    with clock(T0):
        assert code_of(lock, failed, LockMode="governance", LockDuration=1) == "IncorrectState"
        missing = "snap-0123456789abcdef0"
        for call in (
            lambda: lock(missing, LockMode="governance", LockDuration=1),
            lambda: lock(missing, LockMode="governance", LockDuration=1, DryRun=True),
            lambda: ec2().unlock_snapshot(SnapshotId=missing),
        ):
            assert code_of(call) == "InvalidSnapshot.NotFound"
    assert described() == {}


def test_unlocking_a_snapshot_that_is_not_locked():
    never, expired = snapshot_at(T0), snapshot_at(T0)
    with clock(T0):
        lock(expired, LockMode="governance", LockDuration=1)
    with clock(T0 + DAY):
        for sid in (never, expired):
            assert code_of(ec2().unlock_snapshot, SnapshotId=sid) == "IncorrectState"


# ---- DescribeLockedSnapshots ------------------------------------------------------------------


def test_describe_pages_with_next_token():
    with clock(T0):
        ids = [make_snapshot({"Type": "Automated"}) for _ in range(12)]
        make_snapshot({"Type": "Automated"})  # not locked: never listed
        for sid in ids:
            lock(sid, LockMode="governance", LockDuration=1)
        pages, params = [], {"MaxResults": 5}
        while True:
            page = ec2().describe_locked_snapshots(**params)
            pages.append([info["SnapshotId"] for info in page["Snapshots"]])
            if "NextToken" not in page:
                break
            params["NextToken"] = page["NextToken"]
    assert [len(page) for page in pages] == [5, 5, 2]
    assert sorted(sid for page in pages for sid in page) == sorted(ids)


def test_describe_pages_with_a_cursor_so_unlocking_between_pages_skips_nothing():
    with clock(T0):
        ids = sorted(make_snapshot({"Type": "Automated"}) for _ in range(10))
        for sid in ids:
            lock(sid, LockMode="governance", LockDuration=1)
        first = ec2().describe_locked_snapshots(MaxResults=5)
        assert [info["SnapshotId"] for info in first["Snapshots"]] == ids[:5]
        for sid in ids[:5]:
            ec2().unlock_snapshot(SnapshotId=sid)
        rest = ec2().describe_locked_snapshots(MaxResults=5, NextToken=first["NextToken"])
    assert [info["SnapshotId"] for info in rest["Snapshots"]] == ids[5:]
    assert "NextToken" not in rest


def test_describe_filters_on_the_lock_state_and_the_snapshot_ids():
    governance, cooling, compliance, expired = (snapshot_at(T0) for _ in range(4))
    with clock(T0):
        lock(governance, LockMode="governance", LockDuration=10)
        lock(cooling, LockMode="compliance", CoolOffPeriod=72, LockDuration=10)
        lock(compliance, LockMode="compliance", LockDuration=10)
        lock(expired, LockMode="governance", LockDuration=1)
    with clock(T0 + 2 * DAY):
        states = {sid: info["LockState"] for sid, info in described().items()}
        assert states == {
            governance: "governance",
            cooling: "compliance-cooloff",
            compliance: "compliance",
            expired: "expired",
        }
        in_force = ["governance", "compliance-cooloff", "compliance"]
        by_state = described(Filters=[{"Name": "lock-state", "Values": in_force}])
        assert set(by_state) == {governance, cooling, compliance}
        by_ids = described(SnapshotIds=[cooling, expired, "snap-0123456789abcdef0"])
        assert set(by_ids) == {cooling, expired}
        both = described(
            SnapshotIds=[cooling, expired],
            MaxResults=5,
            Filters=[{"Name": "lock-state", "Values": ["expired"]}],
        )
        assert set(both) == {expired}


@pytest.mark.parametrize(
    "params, code",
    [
        ({"MaxResults": 1001}, "InvalidMaxResults"),
        ({"NextToken": "not-a-token"}, "InvalidNextToken"),
        ({"Filters": [{"Name": "snapshot-id", "Values": ["x"]}]}, "InvalidFilter"),
    ],
)
def test_describe_parameters_are_checked(params, code):
    assert code_of(ec2().describe_locked_snapshots, **params) == code


# ---- DryRun, Regions, accounts, moto's reset ------------------------------------------------


def test_dry_run_answers_dry_run_operation_and_changes_nothing():
    locked, free = snapshot_at(T0), snapshot_at(T0)
    with clock(T0):
        lock(locked, LockMode="governance", LockDuration=3)
        dry = {"DryRun": True}
        assert code_of(lock, free, LockMode="compliance", LockDuration=3, **dry) == (
            "DryRunOperation"
        )
        assert code_of(ec2().unlock_snapshot, SnapshotId=locked, **dry) == "DryRunOperation"
        assert code_of(ec2().describe_locked_snapshots, **dry) == "DryRunOperation"
        assert code_of(ec2().unlock_snapshot, SnapshotId=free, **dry) == "IncorrectState"
        assert set(described()) == {locked}
        assert described()[locked]["LockState"] == "governance"


def test_locks_are_per_region():
    here, there = snapshot_at(T0), snapshot_at(T0, region=DEST)
    with clock(T0):
        lock(here, LockMode="compliance", LockDuration=3)
        assert described(DEST) == {}
        assert set(locks(region=REGION)) == {here} and locks(region=DEST) == {}
        missing = code_of(lock, here, region=DEST, LockMode="governance", LockDuration=1)
        assert missing == "InvalidSnapshot.NotFound"
        ec2(DEST).delete_snapshot(SnapshotId=there)
        assert set(described()) == {here}


def test_locks_are_per_account():
    sid = snapshot_at(T0)
    other = other_client("ec2")
    with clock(T0):
        volume = other.create_volume(AvailabilityZone=REGION + "a", Size=1)["VolumeId"]
        theirs = other.create_snapshot(VolumeId=volume)["SnapshotId"]
        other.lock_snapshot(SnapshotId=theirs, LockMode="governance", LockDuration=3)
        code = code_of(other.lock_snapshot, SnapshotId=sid, LockMode="governance", LockDuration=1)
        assert code == "InvalidSnapshot.NotFound"
        assert described() == {}
        assert set(locks(OTHER_ACCOUNT, REGION)) == {theirs}
        assert locks(DEFAULT_ACCOUNT_ID, REGION) == {}


def test_moto_reset_clears_the_locks():
    sid = snapshot_at(T0)
    with clock(T0):
        lock(sid, LockMode="compliance", LockDuration=3)
    assert set(locks()) == {sid}
    ec2_backends[DEFAULT_ACCOUNT_ID][REGION].reset()  # what mock_aws does between tests
    assert locks() == {} and snapshots() == {}


def test_delete_snapshot_still_behaves_as_moto_for_what_is_not_locked():
    sid = snapshot_at(T0)
    ec2().delete_snapshot(SnapshotId=sid)
    assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "InvalidSnapshot.NotFound"


def test_the_calls_go_through_the_spy_and_its_fault_injection(api):
    sid = snapshot_at(T0)
    api.fail("LockSnapshot", "RequestLimitExceeded", times=1)
    api.fail("DeleteSnapshot", "InvalidSnapshot.NotFound", times=1)
    with clock(T0):
        answer = lock(sid, LockMode="governance", LockDuration=3)  # botocore retries once
        assert answer["LockState"] == "governance"
        assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "InvalidSnapshot.NotFound"
        assert code_of(ec2().delete_snapshot, SnapshotId=sid) == "OperationNotPermitted"
    assert api.ops("LockSnapshot") == [
        {"SnapshotId": sid, "LockMode": "governance", "LockDuration": 3}
    ]
    assert [op for op, _ in api.attempts_of].count("LockSnapshot") == 2
    assert sid in snapshots()


def test_only_a_key_moto_does_not_know_counts_as_not_aws_managed(monkeypatch):
    from moto.kms import kms_backends

    from testkit import moto_gaps

    backend = ec2_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    made_up = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert moto_gaps._aws_managed(backend, made_up) is False
    kms = kms_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]

    def broken(self, key_id):
        raise RuntimeError("a bug, not a missing key")

    monkeypatch.setattr(type(kms), "describe_key", broken)
    with pytest.raises(RuntimeError):
        moto_gaps._aws_managed(backend, made_up)


def other_client(service, region=REGION):
    return client_as(f"arn:aws:iam::{OTHER_ACCOUNT}:role/other", service, region)


def test_create_volume_from_another_accounts_snapshot_only_once_it_is_shared():
    other = other_client("ec2")
    key = other_client("kms").create_key()["KeyMetadata"]["Arn"]
    volume = other.create_volume(
        AvailabilityZone=REGION + "a", Size=7, Encrypted=True, KmsKeyId=key
    )["VolumeId"]
    theirs = other.create_snapshot(VolumeId=volume)["SnapshotId"]
    zone = REGION + "b"
    code = code_of(ec2().create_volume, AvailabilityZone=zone, SnapshotId=theirs)
    assert code == "InvalidSnapshot.NotFound"  # not shared: as if it did not exist
    other.modify_snapshot_attribute(
        SnapshotId=theirs,
        Attribute="createVolumePermission",
        OperationType="add",
        UserIds=[DEFAULT_ACCOUNT_ID],
    )
    made = ec2().create_volume(AvailabilityZone=zone, SnapshotId=theirs)
    assert made["SnapshotId"] == theirs and made["Size"] == 7 and made["Encrypted"]
    assert theirs not in ec2_backends[DEFAULT_ACCOUNT_ID][REGION].snapshots
    # the other account's key, by its ARN (no key policy is evaluated); an unknown one is not
    kms = boto3.client("kms", region_name=REGION)
    assert kms.describe_key(KeyId=key)["KeyMetadata"]["Arn"] == key
    unknown = key.rsplit("/", 1)[0] + "/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert code_of(kms.describe_key, KeyId=unknown) == "NotFoundException"
