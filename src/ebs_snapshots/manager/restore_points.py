"""Restore points: an instance's snapshots grouped by the run that took them, each matched to
its device, with what a person needs to choose one (tier, lock, drill, copies)."""

import hashlib
import re
from datetime import datetime

from ebs_snapshots.common.aws import error_code, paginate
from ebs_snapshots.common.locks import locks_in_force
from ebs_snapshots.common.tags import (
    AUTOMATED,
    TAG_COPY_DEST,
    TAG_COPY_STATE,
    TAG_DELETE_ON,
    TAG_RETENTION_TIER,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    TAG_TYPE,
    TAG_VAULT_ACCOUNT,
    TAG_VAULT_REGION,
    keep_forever_key,
    opted_out,
    tag_map,
)

# What the creator writes on each snapshot (creator/plan.py): the run's EventId, how it was
# taken (Consistency), and a Description naming the instance, and the volume and device
# ("Name (i-...) - vol-... (/dev/...) - region") or, for a multi-volume set, "all volumes
# (mode)". Newer snapshots may also carry InstanceId and Device: read when present.
TAG_RUN, TAG_HOW, TAG_SLOT = "EventId", "Consistency", "Backup_Slot"
TAG_SNAP_INSTANCE, TAG_SNAP_DEVICE = "InstanceId", "Device"
# On a restored volume, and on a volume an in-place restore took off: instance and device.
TAG_RESTORE_INSTANCE, TAG_RESTORE_DEVICE = "Restore_Instance", "Restore_Device"
TAG_LAST_DRILL = "RestoreDrill"  # manager/drills.py: "<date> ok <n>s" or "<date> failed: ..."
DESCRIBED = re.compile(
    r"^(?:.* \()?(?P<iid>i-[0-9a-f]+)\)? - (?P<what>vol-[0-9a-f]+|all volumes)"
    r" \((?P<detail>[^)]*)\) - "
)
HOW = {
    "volume": "crash-consistent, one volume at a time",
    "instance": "multi-volume set (crash-consistent, one instant)",
    "fsfreeze": "multi-volume set, fsfreeze (application-consistent)",
    "vss": "multi-volume set, VSS (application-consistent)",
    "crash-fallback": "multi-volume set, crash-consistent (the freeze failed)",
}


def parse_description(text):
    """(instance id, volume id or None for a set, device or the set's mode) of a
    description the creator wrote (a copy carries its primary's), or None."""
    found = DESCRIBED.match(text or "")
    if not found:
        return None
    vid = found["what"] if found["what"].startswith("vol-") else None
    return found["iid"], vid, found["detail"]


def point_key(snapshot, tags):
    """The moment a snapshot belongs to: its slot (Backup_Slot: a slot caught up by a later
    run is still one point), else its run (EventId); a copy made before copies carried
    them, its primary's day (the DeleteOn and tier it inherits); else its start minute."""
    if tags.get(TAG_SLOT):
        return "slot:" + tags[TAG_SLOT]
    if tags.get(TAG_RUN):
        return "run:" + tags[TAG_RUN]
    if TAG_SOURCE_SNAPSHOT in tags:
        return f"day:{tags.get(TAG_DELETE_ON)}:{tags.get(TAG_RETENTION_TIER)}"
    return "at:" + snapshot["StartTime"].strftime("%Y-%m-%dT%H:%M")


def point_id(key):
    return "rp-" + hashlib.sha256(key.encode()).hexdigest()[:10]


def snapshot_entry(snapshot, iid, devices):
    """What a point says of one snapshot, or None when it is not of instance ``iid``.
    ``devices``: {volume id: device} from the instance or the volumes' attachments."""
    tags = tag_map(snapshot)
    parsed = parse_description(snapshot.get("Description")) or (None, None, None)
    if tags.get(TAG_SNAP_INSTANCE, parsed[0]) != iid:
        return None
    copy = TAG_SOURCE_SNAPSHOT in tags
    vid = tags.get(TAG_SOURCE_VOLUME) if copy else snapshot.get("VolumeId")
    mode = tags.get(TAG_HOW) or ("volume" if parsed[1] else parsed[2] or "volume")
    device = tags.get(TAG_SNAP_DEVICE) or (parsed[2] if parsed[1] else devices.get(vid))
    return {
        "snapshot_id": snapshot["SnapshotId"],
        "volume_id": vid,
        "device": device or f"? ({vid})",
        "how": HOW.get(mode, mode),
        "time": snapshot["StartTime"],
        "state": snapshot.get("State"),
        "size": snapshot.get("VolumeSize"),
        "encrypted": snapshot.get("Encrypted", False),
        "kms_key_id": snapshot.get("KmsKeyId"),
        "archived": snapshot.get("StorageTier") == "archive",
        "tags": tags,
        "copy_of": tags.get(TAG_SOURCE_SNAPSHOT),
        "source_region": tags.get(TAG_SOURCE_REGION),
    }


def group_points(entries):
    """The points, newest first: each a dict(id, key, time, devices {device: entry})."""
    points = {}
    for entry in entries:
        key = point_key({"StartTime": entry["time"]}, entry["tags"])
        point = points.setdefault(key, {"id": point_id(key), "key": key, "devices": {}})
        held = point["devices"].get(entry["device"])
        if held is None or entry["time"] > held["time"]:  # a rerun's newer one wins
            point["devices"][entry["device"]] = entry
    for point in points.values():
        point["time"] = min(e["time"] for e in point["devices"].values())
    return sorted(points.values(), key=lambda p: (p["time"], p["id"]), reverse=True)


def compare(point, current, volume_tags):
    """(notes, devices with no snapshot in the point): the point against the instance's
    volumes now (``current`` {device: volume id}; None when the instance is gone).
    A volume opted out with its own Backup tag is not missing."""
    if current is None:
        return ["the instance no longer exists"], []
    notes, missing = [], []
    for device, entry in sorted(point["devices"].items()):
        now = current.get(device)
        if now is None:
            notes.append(f"{device}: removed since (no volume at the device now)")
        elif now != entry["volume_id"]:
            notes.append(f"{device}: {entry['volume_id']} replaced since by {now}")
    for device, vid in sorted(current.items()):
        if device not in point["devices"] and not opted_out(volume_tags.get(vid)):
            notes.append(f"{device}: {vid} added since: no snapshot in this point")
            missing.append(device)
    return notes, missing


def instance_of(ec2, iid):
    """The instance (DescribeInstances filtered by id: a gone one is no error), or None."""
    filters = [{"Name": "instance-id", "Values": [iid]}]
    for reservation in paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        for instance in reservation["Instances"]:
            if instance.get("State", {}).get("Name") != "terminated":
                return instance
    return None


def attached_devices(instance):
    """{device: volume id} of an instance's EBS volumes now."""
    return {
        m["DeviceName"]: m["Ebs"]["VolumeId"]
        for m in (instance or {}).get("BlockDeviceMappings", [])
        if "Ebs" in m
    }


def snapshots_of(ec2, iid):
    """The automated snapshots (and copies) naming instance ``iid``: by description (what
    every creator wrote), and by an InstanceId tag (what newer ones also write)."""
    base = {"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]}
    found = {}
    for wanted in (
        {"Name": "description", "Values": [f"*{iid}*"]},
        {"Name": "tag:" + TAG_SNAP_INSTANCE, "Values": [iid]},
    ):
        params = {"OwnerIds": ["self"], "Filters": [base, wanted]}
        for snap in paginate(ec2, "describe_snapshots", "Snapshots", **params):
            found[snap["SnapshotId"]] = snap
    return sorted(found.values(), key=lambda s: s["SnapshotId"])


def volumes_by_id(ec2, ids):
    """{volume id: volume} of those that still exist (a filter: a gone one is no error)."""
    if not ids:
        return {}
    filters = [{"Name": "volume-id", "Values": sorted(ids)}]
    return {v["VolumeId"]: v for v in paginate(ec2, "describe_volumes", "Volumes", Filters=filters)}


def read_points(ec2, iid):
    """(points newest first, the instance or None, {volume id: volume} of the volumes the
    points and the instance name that still exist)."""
    instance = instance_of(ec2, iid)
    current = attached_devices(instance)
    snaps = snapshots_of(ec2, iid)
    sources = {tag_map(s).get(TAG_SOURCE_VOLUME) or s.get("VolumeId") for s in snaps}
    volumes = volumes_by_id(ec2, ({v for v in sources if v} | set(current.values())))
    devices = {vid: dev for dev, vid in current.items()}
    for vid, volume in volumes.items():
        for attachment in volume.get("Attachments", []):
            if attachment.get("InstanceId") == iid:
                devices.setdefault(vid, attachment["Device"])
        tags = tag_map(volume)  # taken off by an in-place restore: where it was
        if tags.get(TAG_RESTORE_INSTANCE) == iid and tags.get(TAG_RESTORE_DEVICE):
            devices.setdefault(vid, tags[TAG_RESTORE_DEVICE])
    entries = [e for e in (snapshot_entry(s, iid, devices) for s in snaps) if e]
    return group_points(entries), instance, volumes


def choose_point(points, at):
    """The point ``at`` names: its id, or a time (ISO, UTC unless it says): the newest point
    taken at or before it. Raises ValueError naming what there is."""
    if not points:
        raise ValueError("no restore point: no automated snapshot names this instance here")
    for point in points:
        if point["id"] == at:
            return point
    try:
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--at {at!r} is neither a point id (rp-...) nor a time") from None
    when = when if when.tzinfo else when.replace(tzinfo=points[0]["time"].tzinfo)
    for point in points:
        if point["time"] <= when:
            return point
    raise ValueError(f"no restore point at or before {at} (the oldest: {points[-1]['id']})")


def point_details(ec2, point, client_of):
    """Per snapshot of the point: locks in force, and the Copy_Dest regions holding a copy
    (``client_of(region)``; a region that cannot be read is said, not fatal)."""
    ids = [e["snapshot_id"] for e in point["devices"].values()]
    try:
        locks = locks_in_force(ec2, ids)
    except Exception as exc:  # shown as not known: the listing goes on
        locks = {sid: {"LockExpiresOn": f"unknown ({type(exc).__name__})"} for sid in ids}
    dests = {r for e in point["devices"].values() for r in dest_regions(e["tags"])}
    copies = {}
    for region in sorted(dests):
        try:
            filters = [{"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids}]
            dest = client_of(region)
            params = {"OwnerIds": ["self"], "Filters": filters}
            for snap in paginate(dest, "describe_snapshots", "Snapshots", **params):
                copies.setdefault(tag_map(snap)[TAG_SOURCE_SNAPSHOT], []).append(
                    f"{region} ({snap['State']})"
                )
        except Exception as exc:  # a region that cannot be read is said
            why = error_code(exc) if hasattr(exc, "response") else type(exc).__name__
            for sid in ids:
                copies.setdefault(sid, []).append(f"{region} (not read: {why})")
    return locks, copies


def dest_regions(tags):
    return [r.strip() for r in tags.get(TAG_COPY_DEST, "").split(",") if r.strip()]


def entry_lines(entry, locks, copies):
    """The lines a listing shows of one device of a point."""
    tags, sid = entry["tags"], entry["snapshot_id"]
    tier = (
        "archived (restore it first: see --start-archive-restore)"
        if entry["archived"]
        else ("standard")
    )
    lines = [f"    {entry['device']}: {entry['volume_id']} -> {sid} ({entry['state']}, {tier})"]
    lock = locks.get(sid)
    if lock:
        lines.append(f"      locked until {lock.get('LockExpiresOn')}")
    kept = keep_forever_key(tags)
    if kept:
        lines.append(f"      {kept}={tags[kept]}")
    if tags.get(TAG_LAST_DRILL):
        lines.append(f"      last drill: {tags[TAG_LAST_DRILL]}")
    where = copies.get(sid, [])
    if entry["copy_of"]:
        where = [f"a copy of {entry['copy_of']} from {entry['source_region']}"]
    if tags.get(TAG_VAULT_ACCOUNT):
        where.append(f"vault {tags[TAG_VAULT_ACCOUNT]} in {tags.get(TAG_VAULT_REGION, '?')}")
    if where or tags.get(TAG_COPY_STATE):
        state = f" (Copy_State {tags[TAG_COPY_STATE]})" if tags.get(TAG_COPY_STATE) else ""
        lines.append(f"      copies: {', '.join(where) or 'none yet'}{state}")
    return lines
