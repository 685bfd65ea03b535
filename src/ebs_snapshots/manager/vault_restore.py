"""Restore from the vault: its copies of this account's snapshots, read and shared back to
this account through the vault's restorer role (vault-role.yaml, RestorerRole)."""

from ebs_snapshots.common.aws import paginate
from ebs_snapshots.common.tags import AUTOMATED, TAG_SOURCE_ACCOUNT, TAG_TYPE
from ebs_snapshots.manager.restore_points import (
    attached_devices,
    group_points,
    instance_of,
    snapshot_entry,
)

# The vault's role a person's restore assumes (its session tagged Source_Account=<this
# account>, as the copier's): it reads the vault's copies and shares one back to the
# session's own account, and nothing else (vault-role.yaml).
VAULT_RESTORER = "ebs-snapshot-vault-restorer"
CREATE_VOLUME_PERMISSION = "createVolumePermission"


def vault_snapshots_of(vault, iid, account):
    """The vault's copies of ``account``'s snapshots naming instance ``iid`` (the primary's
    Description, which a vault copy carries)."""
    filters = [
        {"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]},
        {"Name": "tag:" + TAG_SOURCE_ACCOUNT, "Values": [account]},
        {"Name": "description", "Values": [f"*{iid}*"]},
    ]
    found = paginate(vault, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters)
    return sorted(found, key=lambda s: s["SnapshotId"])


def vault_points(ec2, vault, iid, account):
    """(points newest first, the instance here or None, {}): read_points for the vault's
    copies. A copy's device is its Description's, or the instance's volume's here."""
    instance = instance_of(ec2, iid)
    devices = {vid: dev for dev, vid in attached_devices(instance).items()}
    snaps = vault_snapshots_of(vault, iid, account)
    entries = [e for e in (snapshot_entry(s, iid, devices) for s in snaps) if e]
    return group_points(entries), instance, {}


def shared_already(vault, ids, account):
    """The snapshots among ``ids`` that ``account`` may create volumes from already."""
    filters = [{"Name": "snapshot-id", "Values": sorted(ids)}]
    params = {"OwnerIds": ["self"], "RestorableByUserIds": [account], "Filters": filters}
    return {s["SnapshotId"] for s in paginate(vault, "describe_snapshots", "Snapshots", **params)}


def share_back(vault, ids, account, say):
    """Share each vault copy in ``ids`` with ``account`` (only it), once: a rerun finds it
    shared (DescribeSnapshots' RestorableByUserIds) and shares nothing again."""
    done = shared_already(vault, ids, account) if ids else set()
    for sid in sorted(set(ids) - done):
        vault.modify_snapshot_attribute(
            SnapshotId=sid,
            Attribute=CREATE_VOLUME_PERMISSION,
            OperationType="add",
            UserIds=[account],
        )
        say(f"  {sid}: shared with {account}")
    for sid in sorted(done & set(ids)):
        say(f"  {sid}: shared with {account} already")
