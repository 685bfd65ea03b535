"""Making each copy once: CopySnapshot, a lost answer, KeepForever, locks on copies."""

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import error_code
from ebs_snapshots.common.locking import lock_snapshot
from ebs_snapshots.common.made_once import Lookup, made_once, tagged
from ebs_snapshots.common.tags import (
    TAG_DELETE_ON,
    TAG_KEEP_FOREVER,
    TAG_SOURCE_ACCOUNT,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_VAULT_STAGING,
    keep_forever_key,
)
from ebs_snapshots.copier.plan import copy_tags, tag_pairs

COPY_LIMIT_CODE = "ResourceLimitExceeded"  # too many copies in flight into one region
# The tags of a copy that say where it comes from: what finds one whose call lost its answer.
ORIGIN_TAGS = (TAG_SOURCE_SNAPSHOT, TAG_SOURCE_REGION, TAG_SOURCE_ACCOUNT, TAG_VAULT_STAGING)


def copy_snapshot(dest_ec2, dest, primary, summary):
    """Start one copy; returns False when the destination refuses more concurrent copies."""
    tags = copy_tags(primary, summary.region)
    item = {
        "source_snapshot_id": primary["id"],
        "dest_region": dest,
        "delete_on": tags[TAG_DELETE_ON],
    }
    params = {
        "SourceRegion": summary.region,
        "SourceSnapshotId": primary["id"],
        "TagSpecifications": [{"ResourceType": "snapshot", "Tags": tag_pairs(tags)}],
    }
    if primary["description"]:
        params["Description"] = primary["description"]
    if primary["kms_key"]:
        params |= {"Encrypted": True, "KmsKeyId": primary["kms_key"]}
        item["kms_key_id"] = primary["kms_key"]
    if summary.dry_run:
        summary.probe("ec2:CopySnapshot", dest, dest_ec2.copy_snapshot, **params)
        summary.did("copy", **item)
        copy = {"SnapshotId": None}
    else:
        try:  # its Lookup kept on the primary: a hand-off names a copy in doubt
            copy = copy_once(dest_ec2, params, primary.setdefault("lookups", {}))
        except ClientError as exc:
            if error_code(exc) == COPY_LIMIT_CODE:
                return False
            summary.error(primary["id"], exc, dest_region=dest)
            return True
        summary.did("copy", snapshot_id=copy["SnapshotId"], **item)
    if primary["lock"]:  # at once: a pending copy can be locked
        lock_snapshot(dest_ec2, copy["SnapshotId"], primary["lock"], summary, dest_region=dest)
    return True


def copy_once(ec2, params, lookups=None, check=None):
    """CopySnapshot through made_once: what a call whose answer was lost made is found by the
    tags in it that say where a copy comes from (ORIGIN_TAGS), in any state, and that
    ``check`` accepts. ``lookups`` keeps the Lookup, by region, for a later look."""
    tags = {t["Key"]: t["Value"] for t in params["TagSpecifications"][0]["Tags"]}
    origin = {k: v for k, v in tags.items() if k in ORIGIN_TAGS}

    def find(final):
        made = [s for s in tagged(ec2, origin) if check is None or check(s)]
        return {"SnapshotId": made[0]["SnapshotId"]} if made else None

    lookups = {} if lookups is None else lookups
    lookup = lookups.setdefault(ec2.meta.region_name, Lookup(find))
    return made_once(ec2.copy_snapshot, params, lookup)


def keep_forever(dest_ec2, dest, primary, copy_id, summary):
    value = primary["tags"][keep_forever_key(primary["tags"])]
    item = {
        "snapshot_id": copy_id,
        "dest_region": dest,
        "source_snapshot_id": primary["id"],
        "tag": f"{TAG_KEEP_FOREVER}={value}",
    }
    params = {"Resources": [copy_id], "Tags": [{"Key": TAG_KEEP_FOREVER, "Value": value}]}
    if summary.dry_run:
        summary.probe("ec2:CreateTags", dest, dest_ec2.create_tags, **params)
    else:
        try:
            dest_ec2.create_tags(**params)
        except ClientError as exc:
            summary.error(copy_id, exc, dest_region=dest)
            return
    summary.did("tag", **item)
