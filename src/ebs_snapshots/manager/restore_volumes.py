"""Restored volumes: their attributes, the checks before any is made, made once, waited for."""

import hashlib
import time
from datetime import UTC, datetime

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import describe_error, error_code, paginate
from ebs_snapshots.common.budget import CONNECT_TIMEOUT_S, READ_TIMEOUT_S
from ebs_snapshots.common.tags import TAG_NAME
from ebs_snapshots.manager.restore_points import TAG_RESTORE_DEVICE, TAG_RESTORE_INSTANCE

# The restored volumes' tags: where each came from, and (in place) what it replaced.
TAG_RESTORE_POINT, TAG_RESTORE_PURPOSE = "Restore_Point", "Restore_Purpose"
TAG_RESTORE_SNAPSHOT, TAG_RESTORE_SOURCE = "Restore_Snapshot", "Restore_SourceVolume"
SIDE_BY_SIDE, IN_PLACE = "side-by-side", "in-place"
# A volume of a snapshot whose source volume cannot be read (deleted, or its region
# unreachable: a copy) gets the snapshot's size and key and this type, unless overridden.
FALLBACK_TYPE = "gp3"
WITH_IOPS, WITH_THROUGHPUT = ("io1", "io2", "gp3"), ("gp3",)
# EC2 API reference, CreateVolume: VolumeInitializationRate "Valid range: 100 - 300 MiB/s";
# ClientToken: at most 64 ASCII characters ("Ensuring idempotency in Amazon EC2 API requests").
INIT_RATE_MIN, INIT_RATE_MAX = 100, 300
POLL_S, WAIT_POLLS = 5, 360  # up to 30 minutes for a volume or an instance to settle
ARCHIVE_RESTORE_HOURS = 72  # EBS user guide, "Archive Amazon EBS snapshots": up to 72 hours


class RestoreError(Exception):
    """A restore that cannot go on: one line saying why and what to do."""


def client_token(region, iid, point, device, purpose, day):
    """CreateVolume's ClientToken: the same for a rerun of the same restore on the same day
    (a lost answer or Ctrl-C makes no second volume); a restore asked again another day
    after its volume was deleted gets a new one."""
    text = "|".join((region, iid, point, device, purpose, day))
    return "ebs-restore-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def volume_spec(entry, source, options):
    """CreateVolume's attributes: the source volume's type, size, IOPS, throughput and key
    (else the snapshot's size and key, FALLBACK_TYPE), then the options' overrides."""
    spec = {"SnapshotId": entry["snapshot_id"]}
    if source:
        spec["VolumeType"] = source["VolumeType"]
        spec["Size"] = max(source["Size"], entry["size"] or 0)
        spec |= {"Iops": source["Iops"]} if source.get("Iops") else {}
        spec |= {"Throughput": source["Throughput"]} if source.get("Throughput") else {}
        key = source.get("KmsKeyId") if source.get("Encrypted") else None
    else:
        spec |= {"VolumeType": FALLBACK_TYPE, "Size": entry["size"]}
        key = entry["kms_key_id"] if entry["encrypted"] else None
    if options.get("type"):
        spec["VolumeType"] = options["type"]
    spec |= {
        k: options[o] for k, o in (("Iops", "iops"), ("Throughput", "throughput")) if options.get(o)
    }
    key = options.get("kms_key") or key
    spec |= {"Encrypted": True, "KmsKeyId": key} if key else {}
    if spec["VolumeType"] not in WITH_IOPS:
        spec.pop("Iops", None)
    if spec["VolumeType"] not in WITH_THROUGHPUT:
        spec.pop("Throughput", None)
    if options.get("init_rate"):
        spec["VolumeInitializationRate"] = options["init_rate"]
    return spec


def restore_tags(point, entry, iid, purpose, name):
    tags = {
        TAG_NAME: f"{name or iid} {entry['device']} restored from {point['id']}"[:256],
        TAG_RESTORE_INSTANCE: iid,
        TAG_RESTORE_DEVICE: entry["device"],
        TAG_RESTORE_POINT: point["id"],
        TAG_RESTORE_PURPOSE: purpose,
        TAG_RESTORE_SNAPSHOT: entry["snapshot_id"],
    }
    return tags | ({TAG_RESTORE_SOURCE: entry["volume_id"]} if entry["volume_id"] else {})


def init_rate(rate):
    """The --init-rate, checked against the API reference's range and this botocore's
    model (a botocore older than the parameter would refuse it only at the call)."""
    if rate is None:
        return None
    if not INIT_RATE_MIN <= rate <= INIT_RATE_MAX:
        raise RestoreError(
            f"--init-rate {rate}: CreateVolume takes {INIT_RATE_MIN} to {INIT_RATE_MAX} MiB/s"
        )
    model = boto3.session.Session()._session.get_service_model("ec2")
    if "VolumeInitializationRate" not in model.operation_model("CreateVolume").input_shape.members:
        raise RestoreError("this botocore has no VolumeInitializationRate: upgrade boto3")
    return rate


def init_minutes(size_gib, rate):
    """The expected time to read a whole volume at a provisioned initialisation rate."""
    return round(size_gib * 1024 / rate / 60, 1)


def source_client(region):
    """A client of the snapshots' source region that gives up after one more attempt: when
    a copy is restored because that region is down, its volumes are only nice to have."""
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 2},
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
    )
    return boto3.client("ec2", region_name=region, config=config)


def source_volumes(ec2, point, volumes, notes):
    """{device: the volume the snapshot was taken of, or None}. A copy's source volume is
    read in its source region; that region not answering is a note, not a failure."""
    found = {}
    for device, entry in point["devices"].items():
        vid, region = entry["volume_id"], entry["source_region"]
        if entry["copy_of"] and region and vid:
            try:
                hits = source_client(region).describe_volumes(
                    Filters=[{"Name": "volume-id", "Values": [vid]}]
                )["Volumes"]
            except Exception as exc:  # the region is down: the snapshot's attributes
                notes.append(f"{device}: {region} not read ({describe_error(exc)})")
                hits = []
            found[device] = hits[0] if hits else None
        else:
            found[device] = volumes.get(vid)
    for device, volume in found.items():
        if volume is None:
            notes.append(f"{device}: source volume not read: snapshot size and key, type gp3")
    return found


def check_point(point, devices, partial):
    """Refuse, before anything is made: a snapshot not completed or archived, or a device
    with no snapshot (unless ``partial``)."""
    entries = [point["devices"][d] for d in devices]
    pending = [e["snapshot_id"] for e in entries if e["state"] != "completed"]
    if pending:
        raise RestoreError(f"not completed yet: {', '.join(pending)}; nothing was made")
    archived = [e["snapshot_id"] for e in entries if e["archived"]]
    if archived:
        raise RestoreError(
            f"archived: {', '.join(archived)}; nothing was made. Run again with "
            f"--start-archive-restore (ready in up to {ARCHIVE_RESTORE_HOURS} hours)"
        )
    if point.get("missing") and not partial:
        raise RestoreError(
            f"incomplete point: no snapshot of {', '.join(point['missing'])}; "
            "--partial restores the rest"
        )


def check_keys(kms, specs):
    """Each KMS key the volumes use must exist, be enabled and visible to the caller."""
    for key in sorted({s["KmsKeyId"] for s in specs.values() if s.get("KmsKeyId")}):
        try:
            state = kms.describe_key(KeyId=key)["KeyMetadata"].get("KeyState", "Enabled")
        except ClientError as exc:
            raise RestoreError(f"KMS key {key} cannot be used: {describe_error(exc)}") from None
        if state != "Enabled":
            raise RestoreError(f"KMS key {key} is {state}: give --kms-key")


def find_restored(ec2, tags):
    """The volume a run of this restore made already (its tags), not deleted, or None."""
    keys = (TAG_RESTORE_INSTANCE, TAG_RESTORE_DEVICE, TAG_RESTORE_POINT, TAG_RESTORE_PURPOSE)
    filters = [{"Name": f"tag:{k}", "Values": [tags[k]]} for k in keys]
    filters.append({"Name": "status", "Values": ["creating", "available", "in-use"]})
    found = sorted(
        paginate(ec2, "describe_volumes", "Volumes", Filters=filters),
        key=lambda v: (v["CreateTime"], v["VolumeId"]),
    )
    return found[0] if found else None


def make_volume(ec2, spec, tags, token, say):
    """The restored volume: found by its tags, else CreateVolume with ``token``; waited for."""
    made = find_restored(ec2, tags)
    if made is None:
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        made = ec2.create_volume(
            **spec,
            ClientToken=token,
            TagSpecifications=[{"ResourceType": "volume", "Tags": pairs}],
        )
        say(f"  {tags[TAG_RESTORE_DEVICE]}: {made['VolumeId']} from {spec['SnapshotId']}: creating")
    else:
        say(f"  {tags[TAG_RESTORE_DEVICE]}: {made['VolumeId']} made already")
    volume = wait_volume(ec2, made["VolumeId"], ("available", "in-use"))
    say(f"  {tags[TAG_RESTORE_DEVICE]}: {made['VolumeId']} {volume['State']}")
    return volume


def wait_volume(ec2, vid, states):
    """The volume once in one of ``states``; a volume in error, or too long, is an error."""
    for _ in range(WAIT_POLLS):
        volume = ec2.describe_volumes(VolumeIds=[vid])["Volumes"][0]
        if volume["State"] in states:
            return volume
        if volume["State"] == "error":
            raise RestoreError(f"{vid} went to state error")
        time.sleep(POLL_S)
    raise RestoreError(f"{vid} is still {volume['State']}; run the same command again")


def probe(call, **params):
    """A DryRun of one call: None when permitted, else AWS's one-line refusal."""
    try:
        call(DryRun=True, **params)
    except ClientError as exc:
        return None if error_code(exc) == "DryRunOperation" else describe_error(exc)
    return None


def volume_in_use(volume, iid):
    """Why a volume cannot be attached to instance ``iid`` now, or None."""
    others = [a["InstanceId"] for a in volume.get("Attachments", []) if a["InstanceId"] != iid]
    return f"{volume['VolumeId']} is in use by {', '.join(others)}" if others else None


def now_text():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
