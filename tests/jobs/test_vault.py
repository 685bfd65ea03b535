"""Vault copies (issue 17): the copier shares each primary (or a staging copy of it) with
the vault account, copies it there through the writer role, and unshares once the vault
copy is completed; the vault's own manager expires it; the source's coverage check reads it.

Two accounts in one moto: SOURCE (moto's default) and VAULT. moto's STS AssumeRole hands out
credentials of the role's account, and testkit/moto_gaps.py lets CopySnapshot in one account
read a snapshot of another when, and only when, that one shares it (createVolumePermission).
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import (
    DEST,
    NOW,
    REGION,
    client_as,
    clock,
    launch,
    make_snapshot,
    moto_snapshot,
    snapshot_details,
    snapshot_of,
    snapshots,
    tag_list,
)
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from testkit.moto_gaps import locks

SOURCE, VAULT, OTHER = DEFAULT_ACCOUNT_ID, "222233334444", "555566667777"
LATER = "2026-12-03"


@pytest.fixture(autouse=True)
def vault_allowed(monkeypatch):
    """The stack's VaultAccountIds: VAULT (and OTHER, for the tests of a shared vault)."""
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, f"{VAULT},{OTHER}")


def vault_ec2(region=REGION, account=VAULT):
    """An EC2 client of ``account``, through the writer role, as the copier gets one."""
    return client_as(f"arn:aws:iam::{account}:role/ebs-snapshot-vault-writer", "ec2", region)


def vault_snapshots(region=REGION, account=VAULT):
    """{snapshot id: snapshot (with a "tags" dict)} the vault holds in ``region``."""
    snaps = vault_ec2(region, account).describe_snapshots(OwnerIds=["self"])["Snapshots"]
    return {
        s["SnapshotId"]: {**s, "tags": {t["Key"]: t["Value"] for t in s.get("Tags", [])}}
        for s in snaps
    }


def set_vault_state(snapshot_id, state, region=REGION, account=VAULT):
    ec2_backends[account][region].snapshots[snapshot_id].status = state


def shared_with(snapshot_id, region=REGION):
    attr = boto3.client("ec2", region_name=region).describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return [p.get("UserId") for p in attr["CreateVolumePermissions"]]


def primary(encrypted=False, **extra):
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT, "Copy_State": "pending"}
    tags |= extra
    return make_snapshot(tags, description="web (i-1) - vol-1 (/dev/sda1)", encrypted=encrypted)


def run(now=NOW, event=None):
    return copier.run(event or {}, None, region=REGION, now=now)


def run_failing(now=NOW):
    with pytest.raises(copier.JobFailed) as failed:
        run(now)
    return failed.value.summary


# ---- the moto extension itself ----------------------------------------------------------


def test_another_account_copies_a_snapshot_only_once_it_is_shared_with_it():
    src = make_snapshot({"Type": "Automated"})
    with pytest.raises(ClientError) as refused:
        vault_ec2().copy_snapshot(SourceRegion=REGION, SourceSnapshotId=src)
    assert refused.value.response["Error"]["Code"] == "InvalidSnapshot.NotFound"
    boto3.client("ec2", region_name=REGION).modify_snapshot_attribute(
        SnapshotId=src, Attribute="createVolumePermission", OperationType="add", UserIds=[OTHER]
    )
    with pytest.raises(ClientError):  # shared with someone else: still not found
        vault_ec2().copy_snapshot(SourceRegion=REGION, SourceSnapshotId=src)
    boto3.client("ec2", region_name=REGION).modify_snapshot_attribute(
        SnapshotId=src, Attribute="createVolumePermission", OperationType="add", UserIds=[VAULT]
    )
    copy = vault_ec2(DEST).copy_snapshot(SourceRegion=REGION, SourceSnapshotId=src, Encrypted=True)
    (made,) = vault_snapshots(DEST).values()
    assert made["SnapshotId"] == copy["SnapshotId"] and made["OwnerId"] == VAULT
    assert made["Encrypted"] and ":222233334444:key/" in made["KmsKeyId"]  # the vault's own key
    assert copy["SnapshotId"] not in snapshot_details(DEST)  # nothing in the source account


def test_a_snapshot_under_the_aws_managed_key_cannot_be_shared():
    src = make_snapshot({"Type": "Automated"}, encrypted=True)
    with pytest.raises(ClientError) as refused:
        boto3.client("ec2", region_name=REGION).modify_snapshot_attribute(
            SnapshotId=src, Attribute="createVolumePermission", OperationType="add", UserIds=[VAULT]
        )
    assert refused.value.response["Error"]["Code"] == "OperationNotPermitted"
    key = snapshot_details()[src]["KmsKeyId"]
    assert (
        boto3.client("kms", region_name=REGION).describe_key(KeyId=key)["KeyMetadata"]["KeyManager"]
        == "AWS"
    )


def test_restorable_by_user_ids_lists_only_what_is_shared_with_them():
    shared, kept = make_snapshot({"A": "1"}), make_snapshot({"A": "2"})
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.modify_snapshot_attribute(
        SnapshotId=shared, Attribute="createVolumePermission", OperationType="add", UserIds=[VAULT]
    )
    listed = ec2.describe_snapshots(OwnerIds=["self"], RestorableByUserIds=[VAULT])["Snapshots"]
    assert [s["SnapshotId"] for s in listed] == [shared] and kept != shared


# ---- share, copy, unshare -----------------------------------------------------------------


def test_share_copy_then_unshare_once_the_vault_copy_is_completed():
    src = primary(Name="web")
    result = run()
    assert shared_with(src) == [VAULT]
    ((cid, copy),) = vault_snapshots().items()
    assert copy["tags"] == {
        "Type": "Automated",
        "DeleteOn": LATER,
        "Source_SnapshotId": src,
        "Source_Region": REGION,
        "Source_Account": SOURCE,
        "Source_VolumeId": snapshot_details()[src]["VolumeId"],
    }
    assert copy["Encrypted"] and copy["Description"] == snapshot_details()[src]["Description"]
    assert [c["vault_account"] for c in result["copied"]] == [VAULT]
    assert result["shared"][0]["snapshot_id"] == src
    set_vault_state(cid, "pending")  # still copying: the share stays
    run()
    assert shared_with(src) == [VAULT] and len(vault_snapshots()) == 1
    set_vault_state(cid, "completed")
    result = run()
    assert shared_with(src) == []
    assert result["unshared"] == [{"snapshot_id": src, "vault_account": VAULT}]
    assert len(vault_snapshots()) == 1  # and nothing copied again
    assert "unshared" not in run()  # nothing left to unshare


def test_vault_regions_and_retention_and_the_regional_copies_alike():
    src = primary(Vault_Region=f"{REGION},{DEST}", Vault_Retention="30", Copy_Dest=DEST)
    run()
    created = snapshot_details()[src]["StartTime"].date()
    for region in (REGION, DEST):
        (copy,) = vault_snapshots(region).values()
        assert copy["tags"]["DeleteOn"] == (created + timedelta(days=30)).isoformat()
    assert len([t for t in snapshots(DEST).values() if t.get("Source_SnapshotId") == src]) == 1


@pytest.mark.dates  # also run a year ahead (make test)
def test_a_locked_primary_has_its_vault_copy_locked_in_the_vault():
    primary(Lock="compliance", Lock_CoolOffHours="2")
    run()
    ((cid, copy),) = vault_snapshots().items()
    assert copy["tags"]["Lock"] == "compliance" and copy["tags"]["Lock_CoolOffHours"] == "2"
    lock = locks(VAULT, REGION)[cid]
    assert lock.mode == "compliance"


def test_running_again_copies_nothing_twice_pending_or_completed():
    primary()
    run()
    (cid,) = vault_snapshots()
    set_vault_state(cid, "pending")
    assert "copied" not in run()
    set_vault_state(cid, "completed")
    assert "copied" not in run()
    assert len(vault_snapshots()) == 1


def test_a_notified_snapshot_is_shared_and_copied_at_once():
    src = primary()
    event = {
        "detail-type": "EBS Snapshot Notification",
        "detail": {"event": "createSnapshot", "result": "succeeded", "snapshot_id": src},
    }
    result = run(event=event)
    assert [c["source_snapshot_id"] for c in result["copied"]] == [src]
    assert shared_with(src) == [VAULT]  # unshared by a later sweep, not by this run


@pytest.mark.dates  # also run a year ahead (make test)
def test_no_copy_once_its_vault_delete_on_has_come():
    src = primary(Vault_Retention="1")
    result = run(NOW + timedelta(days=2))
    assert vault_snapshots() == {}
    assert any(s["id"] == src for s in result["skipped"])
    assert shared_with(src) == []


# ---- the AWS managed key: a staging copy ----------------------------------------------


def test_default_key_primary_goes_through_a_staging_copy(monkeypatch):
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", key)
    src = primary(encrypted=True)
    first = run()
    ((staging, tags),) = [(s, t) for s, t in snapshots().items() if s != src]
    assert tags == {"Type": "Automated", "DeleteOn": "2026-12-03", "Vault_StagingOf": src}
    assert snapshot_details()[staging]["KmsKeyId"] == key
    assert first["copied"][0]["staging"] is True and vault_snapshots() == {}
    second = run()  # the staging copy completed: shared and copied from it
    assert shared_with(staging) == [VAULT] and shared_with(src) == []
    ((_, copy),) = vault_snapshots().items()
    assert copy["tags"]["Source_SnapshotId"] == src  # named after the primary, not the stand-in
    assert [c["source_snapshot_id"] for c in second["copied"]] == [src]
    third = run()  # the vault copy completed: unshared, and the staging copy deleted
    assert staging not in snapshots() and src in snapshots()
    assert [d["snapshot_id"] for d in third["deleted"]] == [staging]
    assert third["unshared"][0]["snapshot_id"] == staging


def test_staging_copies_refused_a_slot_wait_for_the_next_sweep(monkeypatch, api):
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", key)
    sources = [primary(encrypted=True) for _ in range(2)]
    api.fail("CopySnapshot", "ResourceLimitExceeded", when=lambda params, region: region == REGION)
    api.calls.clear()
    result = run()
    assert len(api.ops("CopySnapshot")) == 1  # the second waits without asking
    assert result["deferred"] == [
        {"id": REGION, "count": 2, "reason": result["deferred"][0]["reason"]}
    ]
    assert set(snapshots()) == set(sources)


def test_the_manager_never_keeps_a_staging_copy_as_a_volume_last_backup(monkeypatch):
    monkeypatch.setenv("RESTORE_DRILL", "off")
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    _, volumes = launch({"Backup": "yes"})
    backup = snapshot_of(volumes["/dev/sda1"], {"Type": "Automated", "DeleteOn": LATER})
    tags = {"Type": "Automated", "DeleteOn": "2026-11-20", "Vault_StagingOf": backup}
    staging = boto3.client("ec2", region_name=REGION).copy_snapshot(
        SourceRegion=REGION,
        SourceSnapshotId=backup,
        Encrypted=True,
        KmsKeyId=key,
        Description=f"vault staging copy of {backup}",
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
    )["SnapshotId"]  # newer than the backup, but a copy: its VolumeId is no volume
    result = manager.run({}, None, region=REGION, now=NOW)
    assert [d["snapshot_id"] for d in result["deleted"]] == [staging]


def test_default_key_primary_without_a_share_key_is_a_named_failure(monkeypatch):
    monkeypatch.delenv("VAULT_SHARE_KMS_KEY", raising=False)
    src = primary(encrypted=True)
    summary = run_failing()
    (failure,) = summary["failures"]
    assert failure["id"] == src and "VAULT_SHARE_KMS_KEY" in failure["error"]
    assert "aws/ebs" in failure["error"] and vault_snapshots() == {}
    assert len(snapshots()) == 1  # no staging copy


def test_a_customer_managed_key_primary_is_shared_itself():
    kms = boto3.client("kms", region_name=REGION)
    key = kms.create_key()["KeyMetadata"]["Arn"]
    ec2 = boto3.client("ec2", region_name=REGION)
    volume = ec2.create_volume(AvailabilityZone=REGION + "a", Size=1, Encrypted=True, KmsKeyId=key)
    src = ec2.create_snapshot(
        VolumeId=volume["VolumeId"],
        TagSpecifications=[
            {
                "ResourceType": "snapshot",
                "Tags": tag_list({"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT}),
            }
        ],
    )["SnapshotId"]
    run()
    assert shared_with(src) == [VAULT] and len(snapshots()) == 1
    assert len(vault_snapshots()) == 1


# ---- limits and failures ----------------------------------------------------------------


def fill_vault_slots(count, region=REGION):
    """``count`` copies pending in the vault region (other sources' copies)."""
    vault = vault_ec2(region)
    for n in range(count):
        volume = vault.create_volume(AvailabilityZone=region + "a", Size=1)
        snap = vault.create_snapshot(
            VolumeId=volume["VolumeId"],
            TagSpecifications=[
                {
                    "ResourceType": "snapshot",
                    "Tags": tag_list({"Source_SnapshotId": f"snap-other{n}", "Source_Region": "x"}),
                }
            ],
        )
        set_vault_state(snap["SnapshotId"], "pending", region)


def test_the_vault_regions_20_copy_slots_are_respected():
    fill_vault_slots(18)
    sources = [primary() for _ in range(3)]
    result = run()
    details = snapshot_details()
    oldest = sorted(sources, key=lambda s: (details[s]["StartTime"], s))
    assert {c["source_snapshot_id"] for c in result["copied"]} == set(oldest[:2])
    (deferred,) = result["deferred"]
    assert deferred["id"] == f"{VAULT}/{REGION}" and deferred["count"] == 1


def test_a_vault_that_refuses_a_copy_defers_it(api):
    primary()
    api.fail("CopySnapshot", "ResourceLimitExceeded")
    result = run()
    assert "copied" not in result and result["deferred"][0]["id"] == f"{VAULT}/{REGION}"


def test_a_vault_that_cannot_be_reached_fails_alone(api):
    src = primary(Copy_Dest=DEST)
    api.stub(
        "AssumeRole",
        ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole"),
    )
    summary = run_failing()
    (failure,) = summary["failures"]
    assert failure["id"] == f"{VAULT}/{REGION}" and "AccessDenied" in failure["error"]
    assert [c["dest_region"] for c in summary["copied"]] == [DEST]  # the regional copy is made
    assert shared_with(src) == []


def test_a_vault_copy_in_error_is_a_failure_each_sweep_and_not_made_again():
    src = primary()
    run()
    (cid,) = vault_snapshots()
    set_vault_state(cid, "error")
    summary = run_failing()
    assert [f["id"] for f in summary["failures"]] == [src]
    assert len(vault_snapshots()) == 1 and shared_with(src) == [VAULT]


def test_bad_vault_tags_warn_and_make_no_vault_copy():
    src = primary(Vault_Account="12345")
    result = run()
    assert vault_snapshots() == {} and shared_with(src) == []
    assert any("12-digit" in w["reason"] for w in result["warnings"])


def test_an_account_not_in_vault_account_ids_gets_nothing_shared_or_copied(monkeypatch):
    # whoever can tag an instance must not send its snapshots to an account of their own
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, OTHER)
    src = primary()
    result = run()
    assert vault_snapshots() == {} and shared_with(src) == []
    assert any("VaultAccountIds" in w["reason"] for w in result["warnings"])
    monkeypatch.delenv(creator.VAULT_ACCOUNTS_ENV)  # none listed: no vault copies at all
    run()
    assert vault_snapshots() == {} and shared_with(src) == []


def test_dry_run_changes_nothing():
    src = primary()
    result = run(event={"dry_run": True})
    assert [c["source_snapshot_id"] for c in result["would_copy"]] == [src]
    assert vault_snapshots() == {} and shared_with(src) == []


# ---- the creator passes the tags on -------------------------------------------------------


def test_the_creator_passes_the_vault_tags_on_to_each_snapshot():
    launch(
        {
            "Backup": "yes",
            "Vault_Account": VAULT,
            "Vault_Region": f"{DEST} nowhere-1",
            "Vault_Retention": "90",
        }
    )
    result = creator.run({}, None, region=REGION, now=NOW)
    ((_, tags),) = snapshots().items()
    assert tags["Vault_Account"] == VAULT and tags["Vault_Region"] == DEST
    assert tags["Vault_Retention"] == "90"
    assert any("nowhere-1" in w["reason"] for w in result["warnings"])


def test_the_creator_warns_on_a_bad_vault_account_and_writes_no_vault_tag():
    launch({"Backup": "yes", "Vault_Account": "vault"})
    result = creator.run({}, None, region=REGION, now=NOW)
    ((_, tags),) = snapshots().items()
    assert "Vault_Account" not in tags
    assert any("12-digit" in w["reason"] for w in result["warnings"])


def test_the_creator_writes_no_vault_tag_for_an_unlisted_account(monkeypatch):
    monkeypatch.setenv(creator.VAULT_ACCOUNTS_ENV, f"{OTHER} 999988887777")
    launch({"Backup": "yes", "Vault_Account": VAULT})
    result = creator.run({}, None, region=REGION, now=NOW)
    ((_, tags),) = snapshots().items()
    assert "Vault_Account" not in tags
    assert any("VaultAccountIds" in w["reason"] for w in result["warnings"])


def test_vault_region_defaults_to_this_region():
    assert creator.vault_target({"Vault_Account": VAULT}, [REGION, DEST], REGION) == (
        VAULT,
        [REGION],
        [],
    )


# ---- the vault's manager, and the source's coverage check --------------------------------


@pytest.mark.dates  # also run a year ahead (make test)
def test_the_vaults_own_manager_expires_the_vault_copy_on_its_delete_on(monkeypatch):
    primary()
    run()
    (cid,) = vault_snapshots()
    monkeypatch.setenv("MOTO_ACCOUNT_ID", VAULT)  # the vault account's own manager
    monkeypatch.setenv("RESTORE_DRILL", "off")
    before = manager.run({}, None, region=REGION, now=NOW)
    assert "deleted" not in before
    # the newest copy of its source volume: kept LAST_COPY_GRACE_DAYS past its DeleteOn
    # (the source may have stopped sending), as any copy is; then deleted
    held = manager.run({}, None, region=REGION, now=NOW + timedelta(days=7))
    assert "deleted" not in held and held["counts"]["last_kept"] == 1
    after = manager.run({}, None, region=REGION, now=NOW + timedelta(days=7 + 15))
    assert [d["snapshot_id"] for d in after["deleted"]] == [cid]
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    assert vault_snapshots() == {}


def coverage(now):
    return manager.run({}, None, region=REGION, now=now)


@pytest.mark.dates  # also run a year ahead (make test)
def test_coverage_counts_a_volume_without_a_completed_vault_copy_as_unprotected(monkeypatch):
    monkeypatch.setenv("RESTORE_DRILL", "off")
    now = datetime.now(UTC) + timedelta(days=5)  # coverage reads moto's clock (attach times)
    _, volumes = launch({"Backup": "yes", "Vault_Account": VAULT})
    vid = volumes["/dev/sda1"]
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT, "Vault_Region": REGION}
    sid = snapshot_of(vid, tags)
    moto_snapshot(sid).start_time = (now - timedelta(hours=25)).replace(tzinfo=None)
    (gap,) = coverage(now)["unprotected"]  # the copy allowance (24 h) has passed
    window = f"no completed copy in {VAULT}/{REGION} of a snapshot of the last 50 h"
    assert gap["volume_id"] == vid and gap["reason"] == f"{window} (no copy at all)"
    run(now)
    assert "unprotected" not in coverage(now)
    (cid,) = vault_snapshots()
    set_vault_state(cid, "pending")
    (gap,) = coverage(now)["unprotected"]
    assert gap["reason"] == f"{window} (a copy still pending)"


def test_coverage_names_a_vault_it_cannot_read(monkeypatch, api):
    monkeypatch.setenv("RESTORE_DRILL", "off")
    now = datetime.now(UTC) + timedelta(days=5)
    _, volumes = launch({"Backup": "yes"})
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT}
    sid = snapshot_of(volumes["/dev/sda1"], tags)
    moto_snapshot(sid).start_time = (now - timedelta(hours=25)).replace(tzinfo=None)
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "AssumeRole")
    api.stub("AssumeRole", denied)
    with pytest.raises(manager.JobFailed) as failed:
        coverage(now)
    (failure,) = failed.value.summary["failures"]
    assert failure["id"] == f"{VAULT}/{REGION}" and "AccessDenied" in failure["error"]
    assert "unprotected" not in failed.value.summary  # not judged without a look


@pytest.mark.dates  # also run a year ahead (make test)
def test_a_vault_copy_whose_lock_failed_is_locked_by_the_next_sweep(api):
    primary(Lock="governance")
    api.fail("LockSnapshot", "IncorrectState", times=1)
    first = run()
    (cid,) = vault_snapshots()
    assert cid not in locks(VAULT, REGION)
    assert any(w["id"] == cid and w["reason"].startswith("not locked") for w in first["warnings"])
    second = run()
    assert locks(VAULT, REGION)[cid].mode == "governance"
    (relocked,) = second["locked"]
    assert relocked["snapshot_id"] == cid and relocked["vault_account"] == VAULT


def test_a_dry_run_asks_aws_whether_each_vault_action_is_permitted(api):
    primary()
    result = run(event={"dry_run": True})
    permitted = {(p["permission"], p["id"]) for p in result["permitted"]}
    assert permitted == {
        ("ec2:ModifySnapshotAttribute", REGION),
        ("ec2:CopySnapshot", f"{VAULT}/{REGION}"),
    }
    assert [p.get("DryRun") for p in api.ops("CopySnapshot")] == [True]


def test_the_docs_quote_the_staging_copies_life():
    page = Path(__file__).resolve().parents[2] / "docs" / "immutable-backups.md"
    readme = " ".join(page.read_text().split())
    assert f"`DeleteOn` at most {copier.STAGING_DAYS} days on" in readme
    assert "`VAULT_ROLE_NAME` changes the name" in readme and copier.VAULT_ROLE in readme


def test_a_multi_attach_volume_goes_to_the_vault_if_any_of_its_instances_asks():
    client = boto3.client("ec2", region_name=REGION)
    long, _ = launch({"Backup": "Yes", "Retention": "30"})
    vaulted, _ = launch({"Backup": "Yes", "Retention": "3", "Vault_Account": VAULT})
    vid = client.create_volume(
        AvailabilityZone=REGION + "a", Size=4, VolumeType="io2", Iops=100, MultiAttachEnabled=True
    )["VolumeId"]
    for iid in (long, vaulted):
        client.attach_volume(VolumeId=vid, InstanceId=iid, Device="/dev/sdf")
    creator.run({}, None, region=REGION, now=NOW)
    (tags,) = [t for s, t in snapshots().items() if snapshot_details()[s]["VolumeId"] == vid]
    assert tags["DeleteOn"] == "2026-12-26"  # the longest retention names it
    assert tags["Vault_Account"] == VAULT and tags["Vault_Region"] == REGION


def test_a_primary_is_archived_only_once_its_vault_copy_is_complete():
    """Archived, a snapshot can be neither shared nor copied: the vault copy comes first."""
    src = primary(Archive="Yes", DeleteOn="2027-12-01")
    moto_snapshot(src).start_time = (NOW - timedelta(days=2)).replace(tzinfo=None)
    result = manager.run({}, None, region=REGION, now=NOW)
    assert snapshot_details()[src]["StorageTier"] == "standard"
    reason = [s["reason"] for s in result["skipped"] if s["id"] == src]
    assert reason == [f"archived once its copies in {VAULT}/{REGION} are complete"]
    run()  # shared, copied into the vault
    ((cid, _),) = vault_snapshots().items()
    set_vault_state(cid, "pending")
    manager.run({}, None, region=REGION, now=NOW)
    assert snapshot_details()[src]["StorageTier"] == "standard"
    set_vault_state(cid, "completed")
    run()  # unshared
    manager.run({}, None, region=REGION, now=NOW)
    assert snapshot_details()[src]["StorageTier"] == "archive"


# ---- a vault shared by several sources: only this account's copies count -----------------


def impostor(source_id, state="completed"):
    """A copy another source of the vault made, tagged as if it were ``source_id``'s."""
    ec2 = vault_ec2()
    vid = ec2.create_volume(AvailabilityZone=REGION + "a", Size=1)["VolumeId"]
    tags = {"Type": "Automated", "DeleteOn": LATER, "Source_SnapshotId": source_id}
    tags |= {"Source_Region": REGION, "Source_Account": OTHER}
    sid = ec2.create_snapshot(
        VolumeId=vid, TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}]
    )["SnapshotId"]
    set_vault_state(sid, state)
    return sid


def test_another_sources_copy_tagged_with_our_id_does_not_stop_our_vault_copy():
    src = primary()
    fake = impostor(src)
    run()
    ours = [s for s in vault_snapshots().values() if s["SnapshotId"] != fake]
    assert [(s["tags"]["Source_SnapshotId"], s["tags"]["Source_Account"]) for s in ours] == [
        (src, SOURCE)
    ]


def test_coverage_does_not_count_another_sources_copy_tagged_with_our_id(monkeypatch):
    monkeypatch.setenv("RESTORE_DRILL", "off")
    now = datetime.now(UTC) + timedelta(days=5)
    _, volumes = launch({"Backup": "yes", "Vault_Account": VAULT})
    vid = volumes["/dev/sda1"]
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT, "Vault_Region": REGION}
    sid = snapshot_of(vid, tags)
    moto_snapshot(sid).start_time = (now - timedelta(hours=25)).replace(tzinfo=None)
    impostor(sid)
    (gap,) = coverage(now)["unprotected"]
    assert gap["volume_id"] == vid and "(no copy at all)" in gap["reason"]


def test_another_sources_copy_tagged_with_our_id_does_not_let_the_primary_be_archived():
    src = primary(Archive="Yes", DeleteOn="2027-12-01")
    moto_snapshot(src).start_time = (NOW - timedelta(days=2)).replace(tzinfo=None)
    impostor(src)
    manager.run({}, None, region=REGION, now=NOW)
    assert snapshot_details()[src]["StorageTier"] == "standard"


# ---- the stack's settings reach the vault's calls -----------------------------------------


def test_vault_kms_key_encrypts_the_vault_copy(monkeypatch):
    key = "arn:aws:kms:us-east-1:222233334444:alias/ebs-vault"
    monkeypatch.setenv(copier.VAULT_KEY_ENV, key)
    primary()
    run()
    ((_, copy),) = vault_snapshots().items()
    assert copy["KmsKeyId"] == key


def test_vault_role_name_names_the_role_assumed_in_the_vault(monkeypatch, api):
    monkeypatch.setenv(copier.VAULT_ROLE_ENV, "backup-vault-writer")
    primary()
    run()
    arns = {p["RoleArn"] for _, op, p in api.calls if op == "AssumeRole"}
    assert arns == {f"arn:aws:iam::{VAULT}:role/backup-vault-writer"}
    assert len(vault_snapshots()) == 1


@pytest.mark.parametrize(
    ("delete_on", "staging_delete_on"),
    [("2027-06-01", "2026-12-03"), ("2026-11-29", "2026-11-29")],  # today + 7, or sooner
)
def test_a_staging_copy_lives_a_week_at_most(monkeypatch, delete_on, staging_delete_on):
    key = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", key)
    src = primary(encrypted=True, DeleteOn=delete_on)
    run()
    ((_, tags),) = [(s, t) for s, t in snapshots().items() if s != src]
    assert tags["DeleteOn"] == staging_delete_on


def test_a_share_is_taken_back_once_no_primary_asks_for_the_vault_any_more():
    src = primary()
    run()
    assert shared_with(src) == [VAULT]
    boto3.client("ec2", region_name=REGION).delete_tags(
        Resources=[src], Tags=[{"Key": "Vault_Account"}]
    )
    result = run()  # no primary with Vault_Account is left in this region
    assert shared_with(src) == []
    assert [u["snapshot_id"] for u in result["unshared"]] == [src]


def test_every_vault_session_is_tagged_with_the_callers_own_account(api, monkeypatch):
    """The writer role's trust policy and CopySnapshot condition bind Source_Account to the
    caller (tests/test_vault_policy.py evaluates them): the jobs tag each session so, and
    each vault copy with the same account."""
    monkeypatch.setenv("RESTORE_DRILL", "off")
    launch({"Backup": "Yes", "Vault_Account": VAULT})
    creator.run({}, None, region=REGION, now=NOW)
    run()  # the copier: share and copy
    manager.run({}, None, region=REGION, now=NOW + timedelta(days=2))  # coverage reads the vault
    sessions = [p for _, op, p in api.calls if op == "AssumeRole"]
    assert {tuple(map(str, p["Tags"])) for p in sessions} == {
        (str({"Key": "Source_Account", "Value": SOURCE}),)
    }
    regions = {r for r, op, _ in api.calls if op == "AssumeRole"}
    assert regions == {REGION} and len(sessions) >= 2  # the copier's and the manager's
    ((_, copy),) = vault_snapshots().items()
    assert copy["tags"]["Source_Account"] == SOURCE


def test_another_sources_copy_cannot_release_this_sources_last_vault_copy(monkeypatch):
    """In a vault shared by two sources, OTHER puts in a copy tagged with our source volume
    and region (the writer role binds only Source_Account): the vault's manager still holds
    our newest copy as our volume's, within its grace days."""
    primary()
    run()
    (ours,) = vault_snapshots()
    ours_tags = vault_snapshots()[ours]["tags"]
    forged = {k: ours_tags[k] for k in ("Source_Region", "Source_VolumeId")}
    forged |= {"Type": "Automated", "DeleteOn": "2027-06-01", "Source_SnapshotId": "snap-0"}
    vault = vault_ec2()  # a snapshot in the vault account, as OTHER's copy would be
    volume = vault.create_volume(AvailabilityZone=REGION + "a", Size=1)["VolumeId"]
    with clock(NOW + timedelta(hours=1)):  # newer than ours
        vault.create_snapshot(
            VolumeId=volume,
            TagSpecifications=[
                {"ResourceType": "snapshot", "Tags": tag_list(forged | {"Source_Account": OTHER})}
            ],
        )
    monkeypatch.setenv("MOTO_ACCOUNT_ID", VAULT)  # the vault account's own manager
    monkeypatch.setenv("RESTORE_DRILL", "off")
    held = manager.run({}, None, region=REGION, now=NOW + timedelta(days=7))
    monkeypatch.delenv("MOTO_ACCOUNT_ID")
    assert ours in vault_snapshots() and "deleted" not in held
    assert held["counts"]["last_kept"] == 1
