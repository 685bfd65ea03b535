"""A tag that someone else writes may keep a snapshot, never delete one before its
DeleteOn, release a volume's last backup, or delete a volume the jobs did not make
(issue 26). What makes a snapshot a copy, a staging copy or a drill volume is read from what
EC2 sets and nobody can change afterwards: its VolumeId (a copy's is arbitrary), its
description, the snapshot a volume was made from, its creation time. Drill volumes: see
tests/test_drills.py."""

from datetime import timedelta

import boto3
import pytest
from conftest import (
    DEST,
    NOW,
    REGION,
    clock,
    ec2,
    launch,
    snapshot_details,
    snapshot_of,
    snapshots,
    tag_list,
)

import ebs_snapshot_copier as copier
import ebs_snapshot_manager as manager

VAULT = "222233334444"
LATER = "2027-03-01"  # months away
GONE = "2026-11-20"  # already due


@pytest.fixture(autouse=True)
def settings(monkeypatch):
    monkeypatch.setenv("RESTORE_DRILL", "off")
    monkeypatch.setenv(copier.VAULT_ACCOUNTS_ENV, VAULT)


def share_key():
    return boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]


def backed_up_volume():
    """The volume of an instance tagged Backup=Yes."""
    _, volumes = launch({"Backup": "Yes"})
    return volumes["/dev/sda1"]


def vault_primary(volume, encrypted=True):
    """A primary asking for a vault copy, encrypted with the AWS managed key (so it goes
    through a staging copy) unless said otherwise."""
    client = ec2()
    if encrypted:
        volume = client.create_volume(AvailabilityZone=REGION + "a", Size=8, Encrypted=True)
        volume = volume["VolumeId"]
    tags = {"Type": "Automated", "DeleteOn": LATER, "Vault_Account": VAULT}
    return snapshot_of(volume, tags | {"Copy_State": "pending"})


def shared_with(snapshot_id):
    attr = ec2().describe_snapshot_attribute(
        SnapshotId=snapshot_id, Attribute="createVolumePermission"
    )
    return [p.get("UserId") for p in attr["CreateVolumePermissions"]]


def run_copier():
    try:
        return copier.run({}, None, region=REGION, now=NOW)
    except copier.JobFailed as failed:
        return failed.summary


# ---- Vault_StagingOf: the copier ---------------------------------------------------------


def test_a_backup_tagged_vault_staging_of_is_neither_deleted_nor_shared(monkeypatch):
    """The issue's case: the newest backup of a Backup=Yes volume, DeleteOn months away,
    tagged Vault_StagingOf=<a vault primary>. The copier's full sweep left it alone before
    only if the tag said nothing: it deleted it "as no longer needed"."""
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", share_key())
    volume = backed_up_volume()
    primary = vault_primary(volume)
    backup = snapshot_of(volume, {"Type": "Automated", "DeleteOn": LATER})
    ec2().create_tags(Resources=[backup], Tags=tag_list({"Vault_StagingOf": primary}))
    deleted = []
    for _ in range(3):  # stage, share and copy, then clean up: every step of the vault copy
        result = run_copier()
        assert backup in snapshots() and shared_with(backup) == [], result
        said = [w["reason"] for w in result["warnings"] if w["id"] == backup]
        assert said and "not a staging copy, left alone" in said[0]
        deleted += result.get("deleted", [])
    # The primary got a real staging copy of its own, and its vault copy through it.
    assert [d["reason"] for d in deleted] == [f"staging copy of {primary}, no longer needed"]
    assert set(snapshots()) == {primary, backup}


def staged_impostor(kind, primary, volume):
    """A snapshot tagged Vault_StagingOf=<primary> that the copier did not make as one."""
    client, description = ec2(), f"vault staging copy of {primary}"
    tags = tag_list({"Type": "Automated", "DeleteOn": LATER, "Vault_StagingOf": primary})
    spec = [{"ResourceType": "snapshot", "Tags": tags}]
    if kind == "a snapshot of the primary's volume":  # the description, but no copy
        made = client.create_snapshot(
            VolumeId=volume, Description=description, TagSpecifications=spec
        )
        return made["SnapshotId"]
    if kind == "another description":
        return client.copy_snapshot(
            SourceRegion=REGION, SourceSnapshotId=primary, Encrypted=True, TagSpecifications=spec
        )["SnapshotId"]
    if kind == "not encrypted":
        other = client.create_volume(AvailabilityZone=REGION + "a", Size=8)["VolumeId"]
        made = client.create_snapshot(
            VolumeId=other, Description=description, TagSpecifications=spec
        )
        return made["SnapshotId"]
    other = client.create_volume(AvailabilityZone=REGION + "a", Size=3, Encrypted=True)
    made = client.create_snapshot(
        VolumeId=other["VolumeId"], Description=description, TagSpecifications=spec
    )
    return made["SnapshotId"]  # "another size": encrypted, described, but not the primary's


@pytest.mark.parametrize(
    "kind",
    [
        "a snapshot of the primary's volume",
        "another description",
        "not encrypted",
        "another size",
    ],
)
def test_a_staging_copy_is_recognised_by_more_than_its_tag(kind, monkeypatch):
    monkeypatch.setenv("VAULT_SHARE_KMS_KEY", share_key())
    volume = ec2().create_volume(AvailabilityZone=REGION + "a", Size=8, Encrypted=True)
    primary = vault_primary(volume["VolumeId"], encrypted=False)
    impostor = staged_impostor(kind, primary, volume["VolumeId"])
    for _ in range(4):
        result = run_copier()
        assert impostor in snapshots() and shared_with(impostor) == [], kind
    assert any(w["id"] == impostor for w in result["warnings"])
    copies = [s for s, t in snapshots().items() if s not in (primary, impostor)]
    assert copies == []  # its real staging copy came and went


def test_copier_describes_its_staging_copies_as_it_recognises_them():
    primary = {"id": "snap-1", "copy_delete_on": NOW.date() + timedelta(days=30)}
    params, _ = copier.staging_request(primary, REGION, "alias/share", NOW.date())
    fake = {
        "Description": params["Description"],
        "Encrypted": True,
        "Tags": params["TagSpecifications"][0]["Tags"],
    }
    assert copier.staging_of(fake) == "snap-1"
    assert copier.staging_of(fake | {"Encrypted": False}) is None


# ---- the manager: a volume's last backup -------------------------------------------------


@pytest.mark.parametrize(
    "tags",
    [
        {"Vault_StagingOf": "snap-0123456789abcdef0"},
        {"Source_SnapshotId": "snap-0123456789abcdef0"},
        {"Source_SnapshotId": "snap-0", "Source_Region": DEST, "Source_VolumeId": "vol-0"},
    ],
)
def test_no_tag_releases_a_volumes_last_backup(tags):
    volume = backed_up_volume()  # attached at NOW
    with clock(NOW + timedelta(hours=30)):
        older = snapshot_of(volume, {"Type": "Automated", "DeleteOn": GONE})
    with clock(NOW + timedelta(hours=31)):
        newest = snapshot_of(volume, {"Type": "Automated", "DeleteOn": GONE} | tags)
    result = manager.run({}, None, region=REGION, now=NOW + timedelta(hours=32))
    assert set(snapshots()) == {newest}
    assert [d["snapshot_id"] for d in result["deleted"]] == [older]
    kept = [s for s in result["skipped"] if s["id"] == newest]
    assert kept and f"the newest snapshot of {volume}" in kept[0]["reason"]
    assert result["counts"]["protected"] == 1  # and it counts as the volume's backup


def test_a_copy_tagged_so_is_still_its_source_volumes_newest_copy():
    """The other way round: a real copy (CopySnapshot: an arbitrary VolumeId) is kept as its
    source volume's newest copy, by its Source_ tags, within the grace days."""
    volume = ec2(DEST).create_volume(AvailabilityZone=DEST + "a", Size=1)["VolumeId"]
    source = ec2(DEST).create_snapshot(VolumeId=volume)["SnapshotId"]
    tags = {"Type": "Automated", "DeleteOn": GONE, "Source_SnapshotId": source}
    tags |= {"Source_Region": DEST, "Source_VolumeId": volume}
    copy = ec2().copy_snapshot(
        SourceRegion=DEST,
        SourceSnapshotId=source,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
    )["SnapshotId"]
    assert snapshot_details()[copy]["VolumeId"] == "vol-ffffffff"  # as EC2 shows a copy's
    result = manager.run({}, None, region=REGION, now=NOW)
    assert copy in snapshots() and result.get("deleted", []) == []
