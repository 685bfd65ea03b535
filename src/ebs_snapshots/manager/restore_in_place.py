"""Restore in place and its undo: stop, detach, attach, start, each step's state in tags."""

import time

from ebs_snapshots.common.aws import paginate
from ebs_snapshots.common.tags import tag_map
from ebs_snapshots.manager.restore_points import (
    TAG_RESTORE_DEVICE,
    TAG_RESTORE_INSTANCE,
    attached_devices,
)
from ebs_snapshots.manager.restore_volumes import (
    POLL_S,
    WAIT_POLLS,
    RestoreError,
    now_text,
    wait_volume,
)

# On a volume taken off an instance: the volume put in its place, and when. Volumes are
# never deleted; undo puts back, at each device, the volume most recently replaced there.
TAG_REPLACED_BY, TAG_REPLACED_ON = "Replaced_By", "Replaced_On"
TAG_UNDONE_ON = "Restore_UndoneOn"  # on a restored volume that an undo took off again
SWAPPABLE = ("running", "pending", "stopping", "stopped")


def describe_instance(ec2, iid):
    return ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]


def check_instance(instance, iid):
    """The instance an in-place restore or undo may work on: here, in a state it can stop."""
    if instance is None:
        raise RestoreError(f"{iid} is not in this region: only a side-by-side restore is possible")
    state = instance["State"]["Name"]
    if state not in SWAPPABLE:
        raise RestoreError(f"{iid} is {state}: an in-place restore needs it running or stopped")


def replaced_by(ec2, iid, new_ids):
    """{volume id put in: the volume it replaced}, from Replaced_By tags."""
    if not new_ids:
        return {}
    filters = [
        {"Name": "tag:" + TAG_RESTORE_INSTANCE, "Values": [iid]},
        {"Name": "tag:" + TAG_REPLACED_BY, "Values": sorted(new_ids)},
    ]
    volumes = paginate(ec2, "describe_volumes", "Volumes", Filters=filters)
    return {tag_map(v)[TAG_REPLACED_BY]: v["VolumeId"] for v in volumes}


def restore_swaps(ec2, instance, wanted):
    """[(device, volume to take off or None, volume to put on)] for ``wanted`` {device:
    restored volume}: what is at the device now, or what a run before took off for it."""
    current = attached_devices(instance)
    before = replaced_by(ec2, instance["InstanceId"], set(wanted.values()))
    swaps = []
    for device, new in sorted(wanted.items()):
        now = current.get(device)
        swaps.append((device, now if now and now != new else before.get(new), new))
    return swaps


def undo_swaps(ec2, iid):
    """[(device, the restored volume, the volume it replaced)]: at each device, the volume
    most recently replaced there goes back."""
    filters = [
        {"Name": "tag:" + TAG_RESTORE_INSTANCE, "Values": [iid]},
        {"Name": "tag-key", "Values": [TAG_REPLACED_BY]},
    ]
    newest = {}
    for volume in paginate(ec2, "describe_volumes", "Volumes", Filters=filters):
        tags = tag_map(volume)
        device, mark = tags.get(TAG_RESTORE_DEVICE), tags.get(TAG_REPLACED_ON, "")
        if device and (device not in newest or mark > newest[device][0]):
            newest[device] = (mark, tags[TAG_REPLACED_BY], volume["VolumeId"])
    if not newest:
        raise RestoreError(f"nothing to undo: no volume of {iid} was replaced by a restore")
    return [(device, out, back) for device, (_, out, back) in sorted(newest.items())]


def record_restore(ec2, iid, device, out, new):
    """Before a volume is taken off: what replaces it, and when (undo reads these)."""
    tags = {
        TAG_REPLACED_BY: new,
        TAG_REPLACED_ON: now_text(),
        TAG_RESTORE_DEVICE: device,
        TAG_RESTORE_INSTANCE: iid,
    }
    ec2.create_tags(Resources=[out], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def record_undo(ec2, iid, device, out, new):
    ec2.create_tags(Resources=[out], Tags=[{"Key": TAG_UNDONE_ON, "Value": now_text()}])


def swap(ec2, iid, swaps, record, say):
    """Put each swap's volume on at its device: record, stop, detach, attach, start. Each
    step looks first, so a run again after an interruption goes on where it stopped."""
    instance = describe_instance(ec2, iid)
    todo = [s for s in swaps if attached_devices(instance).get(s[0]) != s[2]]
    for device, out, new in todo:
        if out:
            record(ec2, iid, device, out, new)
    if todo:
        stop(ec2, instance, say)
    for device, out, _ in todo:
        volume = ec2.describe_volumes(VolumeIds=[out])["Volumes"][0] if out else {}
        if any(a["InstanceId"] == iid for a in volume.get("Attachments", [])):
            ec2.detach_volume(VolumeId=out, InstanceId=iid, Device=device)
            wait_volume(ec2, out, ("available",))
            say(f"  {device}: {out} detached")
    for device, _, new in todo:
        volume = ec2.describe_volumes(VolumeIds=[new])["Volumes"][0]
        if not any(a["InstanceId"] == iid for a in volume.get("Attachments", [])):
            ec2.attach_volume(VolumeId=new, InstanceId=iid, Device=device)
            wait_volume(ec2, new, ("in-use",))
            say(f"  {device}: {new} attached")
    start(ec2, iid, say)


def stop(ec2, instance, say):
    iid, state = instance["InstanceId"], instance["State"]["Name"]
    if state in ("running", "pending"):
        ec2.stop_instances(InstanceIds=[iid])
        say(f"  {iid}: stopping")
    if state != "stopped":
        wait_instance(ec2, iid, "stopped")
        say(f"  {iid}: stopped")


def start(ec2, iid, say):
    state = describe_instance(ec2, iid)["State"]["Name"]
    if state == "running":
        return
    if state in ("stopped", "stopping"):
        wait_instance(ec2, iid, "stopped")
        ec2.start_instances(InstanceIds=[iid])
        say(f"  {iid}: starting")
    wait_instance(ec2, iid, "running")
    say(f"  {iid}: running")


def wait_instance(ec2, iid, wanted):
    for _ in range(WAIT_POLLS):
        state = describe_instance(ec2, iid)["State"]["Name"]
        if state == wanted:
            return
        if state in ("shutting-down", "terminated"):
            raise RestoreError(f"{iid} is {state}")
        time.sleep(POLL_S)
    raise RestoreError(f"{iid} is still {state}, not {wanted}; run the same command again")
