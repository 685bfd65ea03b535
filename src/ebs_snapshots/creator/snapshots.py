"""Taking snapshots once: the create calls, lost answers, busy volumes, new locks."""

import time
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import automated_snapshots, describe_error, error_code
from ebs_snapshots.common.budget import STOP_MARGIN_S, OutOfTime
from ebs_snapshots.common.locking import RELOCK, lock_snapshot, probe_lock, unlocked
from ebs_snapshots.common.locks import TAG_LOCK, locks_in_force
from ebs_snapshots.common.made_once import Lookup, made_once, tagged
from ebs_snapshots.common.runtime import in_parallel
from ebs_snapshots.common.tags import (
    AUTOMATED,
    COPY_PENDING,
    TAG_COPY_DEST,
    TAG_COPY_STATE,
    TAG_DELETE_ON,
    TAG_RETENTION_TIER,
    TAG_SOURCE_SNAPSHOT,
    TAG_TYPE,
    TAG_VAULT_ACCOUNT,
    tag_map,
)
from ebs_snapshots.creator.plan import TAG_CONSISTENCY, TAG_EVENT_ID

# A volume that is already being snapshotted too often is refused with this code; AWS asks
# for at least 15 s before that volume is tried again. Other volumes go on meanwhile.
PER_VOLUME_RATE_CODE = "SnapshotCreationPerVolumeRateExceeded"
PER_VOLUME_WAIT_S = 15
PER_VOLUME_TRIES = 3
# What a snapshot call whose answer was lost may have made started since this long before
# the look (a run with no EventId: a command-line run without --event-id in the tests).
LOST_SINCE = timedelta(minutes=5)


def written_tags(tags, consistency):
    """A snapshot's tags as written: with its Consistency, and Copy_State=pending when it is
    to be copied (into a region or a vault), so that the copier's sweeps find it."""
    tags = {**tags, TAG_CONSISTENCY: consistency}
    if TAG_COPY_DEST in tags or TAG_VAULT_ACCOUNT in tags:
        tags[TAG_COPY_STATE] = COPY_PENDING
    return tags


def tag_spec(tags, consistency):
    tags = written_tags(tags, consistency)
    return [{"ResourceType": "snapshot", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]


def create_snapshot(ec2, plan, summary, budget):
    """One CreateSnapshot (Consistency=volume)."""
    item = {
        "volume_id": plan["volume_id"],
        "instance_id": plan["instance_id"],
        "delete_on": plan["tags"][TAG_DELETE_ON],
        "tier": plan["tags"][TAG_RETENTION_TIER],
        "copy_dest": plan["copy_dest"],
        "consistency": "volume",
    }
    if "instance_ids" in plan:  # a Multi-Attach volume: taken once for all its instances
        item["instance_ids"] = plan["instance_ids"]
    params = {
        "VolumeId": plan["volume_id"],
        "Description": plan["description"],
        "TagSpecifications": tag_spec(plan["tags"], "volume"),
    }
    if summary.dry_run:
        summary.probe("ec2:CreateSnapshot", summary.region, ec2.create_snapshot, **params)
        summary.did("create", **item)
        lock_new(ec2, None, plan, summary)
        return
    lookup = lookup_of(ec2, plan, [plan["volume_id"]], budget)
    snap = call_busy(
        lambda **p: made_once(ec2.create_snapshot, p, lookup),
        params,
        plan["volume_id"],
        summary,
        budget,
        instance_id=plan["instance_id"],
    )
    if snap:
        summary.did("create", snapshot_id=snap["SnapshotId"], **item)
        lock_new(ec2, snap["SnapshotId"], plan, summary)


def lookup_of(ec2, item, volumes, budget):
    """The item's Lookup (made once, kept on it: a busy volume's retries share it): its
    snapshots of ``volumes``, one each, carrying the tags that identify this run's (its
    EventId, else its DeleteOn) and started at most LOST_SINCE before now. A set's whole,
    but at the last look what part is listed (a set is made whole or not at all)."""
    if "lookup" in item:
        return item["lookup"]
    since, tags = datetime.now(UTC) - LOST_SINCE, item["tags"]
    wanted = {TAG_TYPE: AUTOMATED}
    wanted |= {TAG_EVENT_ID: tags[TAG_EVENT_ID]} if TAG_EVENT_ID in tags else {}
    wanted |= {} if TAG_EVENT_ID in tags else {TAG_DELETE_ON: tags[TAG_DELETE_ON]}

    def find(final):
        volume = {"Name": "volume-id", "Values": volumes}
        made = [s for s in tagged(ec2, wanted, volume) if s["StartTime"] >= since]
        newest = {s["VolumeId"]: s for s in sorted(made, key=lambda s: s["StartTime"])}
        if not newest or (len(newest) < len(volumes) and not final):
            return None
        if "set" not in item:
            return newest[volumes[0]]
        return {
            "Snapshots": [{"SnapshotId": s["SnapshotId"], "VolumeId": v} for v, s in newest.items()]
        }

    item["lookup"] = Lookup(find, budget, lost=item.get("maybe", False))
    return item["lookup"]


def lock_new(ec2, snapshot_id, plan, summary):
    """Lock a snapshot right after its CreateSnapshot (a pending snapshot can be locked)."""
    if plan["lock"]:
        lock_snapshot(ec2, snapshot_id, plan["lock"], summary, volume_id=plan["volume_id"])


def call_busy(call, params, rid, summary, budget, **item):
    """call(**params); a volume refused with PER_VOLUME_RATE_CODE is tried again, at least
    PER_VOLUME_WAIT_S later, in this worker (the other workers go on meanwhile). Returns
    the response, or None once the failure is recorded against ``rid``."""
    for tries in range(PER_VOLUME_TRIES + 1):
        try:
            return call(**params)
        except ClientError as exc:
            if error_code(exc) != PER_VOLUME_RATE_CODE or tries == PER_VOLUME_TRIES:
                summary.error(rid, exc, **item)
                return None
        if budget.left() - PER_VOLUME_WAIT_S < STOP_MARGIN_S:
            raise OutOfTime("no time left to wait for a busy volume")
        time.sleep(PER_VOLUME_WAIT_S)
    return None


def create_set(ec2, item, consistency, summary, budget):
    """One CreateSnapshots: every volume of ``item`` at the same instant, the excluded ones
    left out, the tags (and Consistency) in the same call."""
    spec = {"InstanceId": item["instance_id"], "ExcludeBootVolume": item["exclude_boot"]}
    if item["exclude_data"]:
        spec["ExcludeDataVolumeIds"] = item["exclude_data"]
    params = {
        "InstanceSpecification": spec,
        "Description": item["description"],
        "TagSpecifications": tag_spec(item["tags"], consistency),
    }
    base = set_record(item, consistency)
    if summary.dry_run:
        summary.probe("ec2:CreateSnapshots", summary.region, ec2.create_snapshots, **params)
        for plan in item["plans"]:
            summary.did("create", volume_id=plan["volume_id"], **base)
            lock_new(ec2, None, plan, summary)
        return
    volumes = [plan["volume_id"] for plan in item["plans"]]
    lookup = lookup_of(ec2, item, volumes, budget)
    created = lambda **p: made_once(ec2.create_snapshots, p, lookup)  # noqa: E731
    made = call_busy(created, params, item["instance_id"], summary, budget)
    for snap in (made or {}).get("Snapshots", []):
        summary.did("create", snapshot_id=snap["SnapshotId"], volume_id=snap["VolumeId"], **base)
        lock_new(ec2, snap["SnapshotId"], {**item, "volume_id": snap["VolumeId"]}, summary)
    listed = {snap["VolumeId"] for snap in (made or {}).get("Snapshots", [])}
    for vid in volumes if made and lookup.lost else ():
        if vid not in listed:  # made with the set, but not listed yet
            why = "its set's answer was lost and its snapshot is not listed yet: not reported"
            summary.warn(vid, f"{why} here (a lock it needs: the run's lock sweep)")


def set_record(item, consistency):
    """What the summary says of each snapshot of a set (with its volume_id)."""
    return {
        "instance_id": item["instance_id"],
        "delete_on": item["tags"][TAG_DELETE_ON],
        "tier": item["tags"][TAG_RETENTION_TIER],
        "copy_dest": item["copy_dest"],
        "consistency": consistency,
    }


def lock_sweep(ec2, summary, budget, today):
    """Lock this region's primaries that are tagged for a lock but not locked: a lock that
    failed, on this run or an earlier one (a VSS set's snapshots, made on the instance, are
    locked here too). Copies are the copier's. Not being able to look is a warning: every
    snapshot is made, and the manager reports locks still missing after a day."""
    try:
        snaps = automated_snapshots(
            ec2,
            {"Name": "tag-key", "Values": [TAG_LOCK]},
            {"Name": "status", "Values": ["pending", "completed"]},
        )
        primaries = [s for s in snaps if TAG_SOURCE_SNAPSHOT not in tag_map(s)]
        locked = locks_in_force(ec2) if primaries else {}
    except Exception as exc:  # out of time too: the next run looks again
        summary.warn(summary.region, f"locks not checked: {describe_error(exc)}")
        return
    done = {item.get("snapshot_id") for item in summary.data.get("locked", [])}
    todo = [(sid, req) for sid, req in unlocked(primaries, locked, today) if sid not in done]
    if summary.dry_run:
        probe_lock(ec2, todo, summary)
    in_parallel(
        todo,
        lambda t: lock_snapshot(ec2, t[0], t[1], summary, reason=RELOCK),
        budget,
        lambda t, exc: summary.error(t[0], exc, "not locked"),
    )
