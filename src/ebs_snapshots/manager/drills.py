"""Restore drills: a volume made from a backup, timed, then deleted."""

import hashlib
import os
import time
from datetime import UTC, date, datetime, timedelta

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import (
    LOOKUP_BATCH,
    describe_error,
    error_code,
    from_botocore,
    paginate,
)
from ebs_snapshots.common.budget import ATTEMPT_S, STOP_MARGIN_S, OutOfTime
from ebs_snapshots.common.events import clock_of, utc_today
from ebs_snapshots.common.runtime import in_parallel
from ebs_snapshots.common.tags import (
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    TAG_TYPE,
    count_or,
    parse_bool,
    parse_date,
    tag_map,
)

# Restore drills: once a week each protected volume's newest completed snapshot, and each
# source volume's newest completed copy, is restored to a new volume, which is deleted as
# soon as it is available (or not). The snapshot's RestoreDrill tag keeps the result.
DRILL_ENV, DRILL_CAP_ENV, DRILLS_PER_RUN = "RESTORE_DRILL", "RESTORE_DRILL_PER_RUN", 50
TAG_DRILL, DRILL_TYPE, TAG_DELETE_AFTER = "RestoreDrill", "RestoreDrill", "DeleteAfter"
DRILL_LIFE = timedelta(hours=2)  # a drill volume left by a run that died goes after this
# A volume tagged Type=RestoreDrill is deleted only if it is recognisably a drill: made from
# the snapshot its Source_SnapshotId names, not attached, a gp3 volume, and created within
# this of DRILL_LIFE before its DeleteAfter (clock skew, the CreateVolume call's retries).
DRILL_TAG_SLACK = timedelta(minutes=15)  # a Lambda's longest run, retries and pacing in it
DRILL_WAIT_S = 300  # the longest wait for a drill volume to become available
DRILL_POLL_S = 5
DRILL_MIN_S = 60  # with less time for the wait than this, no drill starts this run
DRILL_FINISH_S = 0.5  # a drill's DeleteVolume and CreateTags, at EC2's pace
DRILL_GONE_POLLS = 3  # a drill volume absent from this many polls in a row has vanished
MAX_DRILLS_PER_RUN = 200  # the most one run can create, watch and delete in its time
# Not the snapshot's fault: the drill is not run (a warning), and it is not a failed restore.
DRILL_NOT_TRIED = frozenset(
    {"RequestLimitExceeded", "VolumeLimitExceeded", "InsufficientVolumeCapacity", "Unavailable"}
)


def drill_settings(summary):
    """(drills on?, drills a run may start) from RESTORE_DRILL (off/no/false/0 turns them
    off; anything unreadable warns and leaves them on) and RESTORE_DRILL_PER_RUN."""
    raw, on = os.environ.get(DRILL_ENV), True
    if raw is not None and raw.strip():
        on = parse_bool(raw)
        if on is None:
            summary.warn(DRILL_ENV, f"{DRILL_ENV} {raw!r} is not on/off; drills stay on")
            on = True
    per_run = os.environ.get(DRILL_CAP_ENV)
    per_run = per_run if per_run and per_run.strip() else None  # empty: as if unset
    cap, problem = count_or(per_run, DRILL_CAP_ENV, MAX_DRILLS_PER_RUN, DRILLS_PER_RUN)
    if problem:
        summary.warn(DRILL_CAP_ENV, problem)
    return on, cap


def drill_day(key):
    """The day of the week (0-6, by the date's ordinal) a volume is drilled: a stable hash
    of its id spreads the region's volumes over the seven days, each once a week."""
    return int(hashlib.sha256(key.encode()).hexdigest(), 16) % 7


class DrillTargets:
    """While the sweep lists the region: each volume's newest completed snapshot (primaries)
    and each source volume's newest completed copy, the snapshots drills restore. An
    archived snapshot cannot be restored quickly: it is not one."""

    def __init__(self):
        self.primaries, self.copies = {}, {}  # volume id (a copy's source volume): snapshot
        self.last = {}  # volume id: the date of its last drill (RestoreDrill tags)

    def see(self, snapshot):
        tags = tag_map(snapshot)
        if TAG_SOURCE_SNAPSHOT in tags:
            found, key = self.copies, tags.get(TAG_SOURCE_VOLUME)
        else:
            found, key = self.primaries, snapshot.get("VolumeId")
        drilled = parse_date(tags.get(TAG_DRILL, "")[:10])
        if key and drilled:
            self.last[key] = max(drilled, self.last.get(key, drilled))
        if snapshot.get("State") != "completed" or snapshot.get("StorageTier") == "archive":
            return
        newest = found.get(key)
        mark = (snapshot["StartTime"], snapshot["SnapshotId"])
        if key and (newest is None or mark > (newest["StartTime"], newest["SnapshotId"])):
            found[key] = snapshot

    def today(self, protected, today, gone):
        """[(volume id, snapshot, zone or None)] due today, the least recently drilled first:
        the protected volumes' newest snapshots (in their instance's zone) and the newest
        copies, none the sweep deleted."""
        due = [
            (vid, self.primaries[vid], who.get("zone"))
            for vid, who in sorted(protected.items())
            if vid in self.primaries
        ]
        due += [(vid, snap, None) for vid, snap in sorted(self.copies.items())]
        weekday = today.toordinal() % 7
        due = [
            (vid, snap, zone)
            for vid, snap, zone in due
            if drill_day(vid) == weekday and snap["SnapshotId"] not in gone
        ]
        return sorted(due, key=lambda d: (self.last.get(d[0], date.min), d[0]))


def drill_result(day, seconds=None, reason=None):
    """The RestoreDrill tag a drill leaves on its snapshot."""
    text = f"{day} ok {seconds}s" if reason is None else f"{day} failed: {reason}"
    return text[:256]


def clean_drill_volumes(ec2, summary, now):
    """Delete the drill volumes a run that died left behind (or one that could not delete
    them), once their DeleteAfter has passed, and only those that are recognisably drills
    (not_a_drill). Each one is a warning, counted (drill_volumes_deleted); any other volume
    tagged Type=RestoreDrill, or one without a readable DeleteAfter, is a tag error, left."""
    drills = [{"Name": "tag:" + TAG_TYPE, "Values": [DRILL_TYPE]}]
    try:
        volumes = list(paginate(ec2, "describe_volumes", "Volumes", Filters=drills))
    except OutOfTime:
        raise
    except Exception as exc:
        why = f"leftover drill volumes not looked for: {describe_error(exc)}"
        summary.warn(summary.region, why)
        return
    for volume in volumes:
        vid, after = volume["VolumeId"], tag_map(volume).get(TAG_DELETE_AFTER)
        when = parse_timestamp(after)
        if when is None:
            why = f"tagged Type={DRILL_TYPE}, but {TAG_DELETE_AFTER} {after!r} is not a time: left"
            summary.tag_error(vid, TAG_DELETE_AFTER, after, why)
        elif when <= now and not_a_drill(volume, when):
            # a tag is not enough: anyone who can tag could name their own volume
            why = f"{not_a_drill(volume, when)}: not a restore drill, left"
            summary.tag_error(vid, TAG_TYPE, DRILL_TYPE, f"tagged Type={DRILL_TYPE}, but {why}")
        elif when <= now and delete_drill_volume(ec2, vid, summary):
            summary.warn(vid, f"drill volume left by an earlier run ({after}): deleted")
            summary.count("drill_volumes_deleted")


def not_a_drill(volume, delete_after):
    """Why a volume tagged Type=RestoreDrill is not one the manager made (start_drill), or
    None. Read from what EC2 sets and nobody can change: the snapshot it was made from, its
    attachments, its type, its creation time (DRILL_LIFE before its DeleteAfter)."""
    source = tag_map(volume).get(TAG_SOURCE_SNAPSHOT)
    if not source or volume.get("SnapshotId") != source:
        made_from = volume.get("SnapshotId") or "no snapshot"
        return f"it was made from {made_from}, not from its {TAG_SOURCE_SNAPSHOT} {source}"
    if volume.get("Attachments") or volume.get("State") == "in-use":
        return "it is attached to an instance"
    if volume.get("VolumeType") != "gp3":
        return f"it is {volume.get('VolumeType')}, and drills are gp3"
    created, expected = volume.get("CreateTime"), delete_after - DRILL_LIFE
    if created is None:
        return "its creation time is unknown"
    if abs(created - expected) > DRILL_TAG_SLACK:
        hours = f"{DRILL_LIFE.total_seconds() / 3600:g} h"
        return f"it was created at {created:%Y-%m-%d %H:%M} UTC, not {hours} before it"
    return None


def parse_timestamp(value):
    """A DeleteAfter tag (ISO 8601, UTC) as an aware datetime, or None."""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def delete_drill_volume(ec2, vid, summary):
    """Delete a drill volume; False, with a warning, when it cannot be (EC2 deletes only an
    available volume: one still creating is deleted by a later run, once its DeleteAfter
    has passed). A dry run deletes nothing."""
    if summary.dry_run:
        return False
    try:
        ec2.delete_volume(VolumeId=vid)
    except ClientError as exc:
        if error_code(exc) == "InvalidVolume.NotFound":
            return True
        summary.warn(vid, f"drill volume not deleted ({describe_error(exc)}); a later run will")
        return False
    except Exception as exc:  # the network, or out of time: the same
        summary.warn(vid, f"drill volume not deleted ({describe_error(exc)}); a later run will")
        return False
    return True


def drill_all(ec2, coverage, drills, summary, budget, now, cap):
    """Today's drills, at most ``cap`` (the least recently drilled first), side by side:
    every volume is created first, then all are watched together until each is available
    (or not), and deleted at once."""
    gone = {d["snapshot_id"] for d in summary.data.get("deleted", [])}
    protected = coverage.protected if coverage else {}
    due = drills.today(protected, utc_today(now), gone)
    weekly = len(protected) + len(drills.copies)
    if weekly > 7 * cap:
        summary.warn(
            DRILL_CAP_ENV,
            f"{weekly} volumes to drill each week, at most {cap} a run: the weekly round "
            f"cannot complete; raise {DRILL_CAP_ENV}",
        )
    if len(due) > cap:
        summary.warn(
            summary.region,
            f"{len(due) - cap} drills due today over {DRILL_CAP_ENV}={cap}: they wait a "
            "week (the least recently drilled go first)",
        )
        summary.count("drills_overdue", len(due) - cap)
    due = due[:cap]
    left = budget.left() - STOP_MARGIN_S - 2 * ATTEMPT_S - len(due) * DRILL_FINISH_S
    wait = min(DRILL_WAIT_S, left)  # time kept back to delete and tag them all
    if due and wait < DRILL_MIN_S:
        summary.warn(summary.region, f"restore drills not run: {budget.left():.0f} s left")
        return
    if due:
        watch_drills(ec2, start_drills(ec2, due, summary, budget, now), summary, budget, wait, now)


def start_drills(ec2, due, summary, budget, now):
    """CreateVolume for each drill, WORKERS at a time; [(target, drill volume id, start)]."""
    zone = None
    if any(z is None for _, _, z in due):  # copies: the region's first zone (not a Local Zone)
        filters = [
            {"Name": "zone-type", "Values": ["availability-zone"]},
            {"Name": "state", "Values": ["available"]},
        ]
        zones = ec2.describe_availability_zones(Filters=filters)["AvailabilityZones"]
        zone = min(z["ZoneName"] for z in zones)
    started = []
    in_parallel(
        due,
        lambda target: started.append(start_drill(ec2, target, zone, summary, now)),
        budget,
        lambda target, exc: summary.error(target[1]["SnapshotId"], exc, "restore drill not run"),
    )
    return [drill for drill in started if drill]


def start_drill(ec2, target, zone, summary, now):
    """A gp3 volume from the snapshot (encrypted with the snapshot's own key), never
    attached, tagged at creation so that a later run deletes it should this one die. Its
    ClientToken, new for each drill, makes botocore's retries of the call make no second
    volume; a second drill (another run that day) gets its own, for a token used again
    answers with the first volume, which is deleted by then."""
    vid, snap, own_zone = target
    sid = snap["SnapshotId"]
    after = (clock_of(now, summary) + DRILL_LIFE).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tags = {TAG_TYPE: DRILL_TYPE, TAG_SOURCE_SNAPSHOT: sid, TAG_DELETE_AFTER: after}
    params = {
        "SnapshotId": sid,
        "AvailabilityZone": own_zone or zone,
        "VolumeType": "gp3",
        "ClientToken": f"drill-{sid}-{os.urandom(8).hex()}",  # at most 64 characters
        "TagSpecifications": [
            {"ResourceType": "volume", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    }
    if summary.dry_run:
        summary.probe("ec2:CreateVolume", summary.region, ec2.create_volume, **params)
        summary.did("drill", snapshot_id=sid, volume_id=vid, zone=params["AvailabilityZone"])
        return None
    try:
        return target, ec2.create_volume(**params)["VolumeId"], time.monotonic()
    except ClientError as exc:
        code = error_code(exc)
        if code == "InvalidSnapshot.NotFound":  # deleted since: nothing to prove
            summary.skip(sid, "deleted since it was listed: not drilled")
        elif code in DRILL_NOT_TRIED:
            summary.warn(sid, f"not drilled ({describe_error(exc)}); next week")
        else:  # refused, e.g. a KMS key it cannot use: the backup does not restore
            record_drill(ec2, target, None, summary, now, f"CreateVolume: {describe_error(exc)}")
    except OutOfTime:
        raise
    except Exception as exc:
        if not from_botocore(exc):
            raise  # a bug of ours: in_parallel names it, with its traceback in the log
        summary.warn(sid, f"not drilled ({describe_error(exc)}); next week")
    return None


def watch_drills(ec2, started, summary, budget, wait, now):
    """Poll the drill volumes together until each is available or in error (or has
    vanished: EC2 removes a volume it cannot make, e.g. with a KMS key it cannot use), at
    most ``wait`` seconds and never into the Lambda's last minute; each is then deleted and
    its snapshot tagged with the result."""
    waiting = {volume_id: (target, t0) for target, volume_id, t0 in started}
    missing, polls = dict.fromkeys(waiting, 0), int(wait // DRILL_POLL_S)
    for poll in range(polls + 1):
        try:
            found = {v["VolumeId"]: v["State"] for v in drill_volumes(ec2, list(waiting))}
        except Exception as exc:  # cannot watch: not judged, and nobody's fault
            unwatched(ec2, waiting, summary, exc)
            return
        seen = time.monotonic()
        for volume_id in list(waiting):
            state = found.get(volume_id)
            missing[volume_id] = 0 if state else missing[volume_id] + 1
            reason = DRILL_STATES.get(state)
            if missing[volume_id] >= DRILL_GONE_POLLS:
                reason = "the restored volume vanished (EC2 removes one it cannot make, e.g. "
                reason += "with a KMS key it cannot use)"
            if state == "available" or reason:
                target, t0 = waiting.pop(volume_id)
                finish_drill(ec2, target, volume_id, round(seen - t0), summary, now, reason)
        if not waiting or poll == polls or budget.left() - DRILL_POLL_S < STOP_MARGIN_S + ATTEMPT_S:
            break
        time.sleep(DRILL_POLL_S)
    for volume_id, (target, t0) in waiting.items():
        reason = f"the restored volume was not available within {wait:.0f} s"
        finish_drill(ec2, target, volume_id, round(time.monotonic() - t0), summary, now, reason)


DRILL_STATES = {"error": "the restored volume went to error"}  # others: not done yet


def unwatched(ec2, waiting, summary, exc):
    """The drill volumes could not be described: deleted (or left to a later run), and
    their drills not judged."""
    for volume_id, (target, _) in waiting.items():
        delete_drill_volume(ec2, volume_id, summary)
        sid = target[1]["SnapshotId"]
        summary.warn(
            sid, f"restore drill not judged: its volume could not be read ({describe_error(exc)})"
        )


def drill_volumes(ec2, ids):
    """The drill volumes among ``ids`` as EC2 describes them now (a filter, not VolumeIds:
    one deleted meanwhile is no error)."""
    found = []
    for start in range(0, len(ids), LOOKUP_BATCH):
        batch = ids[start : start + LOOKUP_BATCH]
        filters = [{"Name": "volume-id", "Values": batch}]
        found += paginate(ec2, "describe_volumes", "Volumes", Filters=filters)
    return found


def finish_drill(ec2, target, volume_id, seconds, summary, now, reason):
    """Delete the drill volume (whatever the result), then record the result."""
    delete_drill_volume(ec2, volume_id, summary)
    record_drill(ec2, target, volume_id, summary, now, reason, seconds)


def record_drill(ec2, target, volume_id, summary, now, reason, seconds=None):
    """The result: the snapshot's RestoreDrill tag, and the summary (a failed drill is a
    failure and a warning; a passed one counts its time to "available")."""
    vid, snap, _ = target
    sid = snap["SnapshotId"]
    value = drill_result(utc_today(now), seconds, reason)
    try:
        ec2.create_tags(Resources=[sid], Tags=[{"Key": TAG_DRILL, "Value": value}])
    except Exception as exc:  # the result is still in the summary and the metrics
        summary.warn(sid, f"drill result not tagged on the snapshot: {describe_error(exc)}")
    if reason is not None:
        summary.fail(sid, f"restore drill failed: {reason}", volume_id=vid)
        summary.warn(sid, f"restore drill of {vid} failed: {reason}")
        summary.count("drills_failed")
        return
    summary.did("drill", snapshot_id=sid, volume_id=vid, drill_volume_id=volume_id, seconds=seconds)
    summary.count("drills_passed")
    counts = summary.data["counts"]
    counts["restore_seconds"] = max(counts.get("restore_seconds", 0), seconds)
