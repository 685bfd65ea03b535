"""Staging copies: a primary copied here under a key the vault may use, shared in its stead."""

from datetime import timedelta

from ebs_snapshots.common.aws import automated_snapshots, batches
from ebs_snapshots.common.tags import AUTOMATED, TAG_DELETE_ON, TAG_TYPE, TAG_VAULT_STAGING, tag_map
from ebs_snapshots.copier.plan import tag_pairs

# A staging copy's DeleteOn (at most): the manager's backstop should the copier not delete it.
STAGING_DAYS = 7


def staging_request(primary, region, key, today):
    """(CopySnapshot's parameters, the summary item) for a primary's staging copy: here,
    with the share key ``key``, kept STAGING_DAYS at most (never past its vault copies)."""
    delete_on = min(today + timedelta(days=STAGING_DAYS), primary["copy_delete_on"])
    tags = {
        TAG_TYPE: AUTOMATED,
        TAG_DELETE_ON: delete_on.isoformat(),
        TAG_VAULT_STAGING: primary["id"],
    }
    params = {
        "SourceRegion": region,
        "SourceSnapshotId": primary["id"],
        "Encrypted": True,
        "KmsKeyId": key,
        "Description": staging_description(primary["id"]),
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_pairs(tags)}],
    }
    item = {"source_snapshot_id": primary["id"], "staging": True, "delete_on": tags[TAG_DELETE_ON]}
    return params, item


def staging_description(primary_id):
    """A staging copy's description, given in its CopySnapshot call."""
    return f"vault staging copy of {primary_id}"


def staging_of(snapshot):
    """The primary a snapshot is the copier's staging copy of, or None. A Vault_StagingOf tag
    alone proves nothing (anyone who can tag could write it on a backup, which the copier
    would then delete): the copy must also carry the description the copier gave it in its
    CopySnapshot call, which no EC2 call changes later, and be encrypted (it exists to be
    shared under the share key)."""
    primary = tag_map(snapshot).get(TAG_VAULT_STAGING)
    if not primary or not snapshot.get("Encrypted"):
        return None
    return primary if snapshot.get("Description") == staging_description(primary) else None


def not_staging(copy, primary):
    """Why ``copy``, tagged Vault_StagingOf=<primary>, is not the copier's staging copy of
    ``primary`` (a vault record, or None when that primary was not read), or None: it is the
    copier's (staging_of), a copy and not a snapshot of the primary's volume (a copy's
    VolumeId is arbitrary: EC2 API reference, Snapshot), of the primary's size, made after it."""
    named = tag_map(copy)[TAG_VAULT_STAGING]
    if staging_of(copy) != named:
        described = copy.get("Description", "")
        return f"its description {described!r} is not the copier's, or it is not encrypted"
    if primary is None:
        return None
    if copy.get("VolumeId") == primary["volume_id"]:
        return f"it is a snapshot of {primary['volume_id']}, not a copy"
    if primary["size"] is not None and copy.get("VolumeSize") != primary["size"]:
        return f"it is {copy.get('VolumeSize')} GiB, and {named} {primary['size']} GiB"
    if copy["StartTime"] < primary["start"]:
        return f"it is older than {named}"
    return None


def staging_copies(ec2, ids=None):
    """The snapshots tagged Vault_StagingOf of this region, oldest first: of all primaries,
    or of ``ids`` (LOOKUP_BATCH at a time). Candidates only: see not_staging."""
    if ids is None:
        filters = [[{"Name": "tag-key", "Values": [TAG_VAULT_STAGING]}]]
    else:
        filters = [
            [{"Name": "tag:" + TAG_VAULT_STAGING, "Values": batch}] for batch in batches(ids)
        ]
    snaps = [snap for wanted in filters for snap in automated_snapshots(ec2, *wanted)]
    return sorted(snaps, key=lambda s: (s["StartTime"], s["SnapshotId"]))
