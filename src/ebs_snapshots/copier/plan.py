"""What to copy where: primaries, their copies in each destination, Copy_State."""

from datetime import UTC

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import (
    automated_snapshots,
    batches,
    describe_error,
    enabled_regions,
    error_code,
    make_client,
    paginate,
)
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.events import scheduled_time
from ebs_snapshots.common.keys import key_refusal
from ebs_snapshots.common.locking import lock_request, probe_lock, unlocked
from ebs_snapshots.common.locks import TAG_LOCK, TAG_LOCK_COOL_OFF, lock_mode, locks_in_force
from ebs_snapshots.common.reporting import log
from ebs_snapshots.common.tags import (
    AUTOMATED,
    COPY_DONE,
    COPY_PENDING,
    TAG_ARCHIVE,
    TAG_COPY_DEST,
    TAG_COPY_KMS_KEY,
    TAG_COPY_RETENTION,
    TAG_COPY_STATE,
    TAG_DELETE_ON,
    TAG_KEEP_FOREVER,
    TAG_NAME,
    TAG_RETENTION_TIER,
    TAG_SOURCE_REGION,
    TAG_SOURCE_SNAPSHOT,
    TAG_SOURCE_VOLUME,
    TAG_TYPE,
    clean_regions,
    copy_delete_on,
    copy_until,
    is_kept_forever,
    keep_forever_key,
    parse_date,
    tag_map,
)
from ebs_snapshots.copier import JOB

COPIES_IN_FLIGHT = 20  # concurrent copies AWS allows into one destination region
# A notified snapshot's run starts its copy only while at most this many copies are in
# flight there: with more, older primaries may be waiting for a slot, and the sweeps start
# those first (oldest first); the notified one waits its turn in the next sweep.
NOTIFIED_MAX_IN_FLIGHT = COPIES_IN_FLIGHT // 2
NOTIFICATION = "EBS Snapshot Notification"  # EventBridge detail-type when a snapshot is done
# Which primaries a run reads. "notified": the one snapshot of a completion event. "pending":
# those tagged Copy_State=pending, in every scheduled sweep but the day's first, so that a
# sweep's cost follows the copies still to make, not the snapshots kept. "full": every
# primary, in the sweep scheduled for 00:00-00:14 UTC (FULL_SWEEP_HOUR) and in any run not
# scheduled (by hand, the command line): it catches primaries without Copy_State (older
# than this version), copies deleted or regions added since, and KeepForever set later.
FULL_SWEEP_HOUR, FULL_SWEEP_MINUTES = 0, 15
# Beyond MAX_LOOKUP primaries, one listing of a destination's copies costs fewer calls than
# lookups by id, LOOKUP_BATCH at a time.
MAX_LOOKUP = 1000
# The creator's run (EventId) and how it was taken (Consistency), carried onto copies so that
# a copy region's restore points group as the source's do (manager/restore_points.py).
RUN_TAGS = ("EventId", "Consistency", "Backup_Slot")
CARRIED = "copies_started"  # in a handed-over event: the copies started before it, by region


def primary_record(snapshot, enabled, region, today):
    """(primary or None, tag errors as (tag, why)) for one listed snapshot.

    A primary is dict(id, tags, description, dests, delete_on, copy_delete_on, own_date,
    kms_key, copy) where ``copy`` says whether missing copies may be made.
    """
    sid, tags = snapshot["SnapshotId"], tag_map(snapshot)
    if TAG_SOURCE_SNAPSHOT in tags:  # a copy: copying it again would loop between regions
        return None, []  # (written on a primary, it stops its copies: the coverage check says)
    dests, dropped = clean_regions(tags.get(TAG_COPY_DEST, ""), enabled, region)
    warnings = [(TAG_COPY_DEST, f"Copy_Dest entry {r!r} {why}; dropped") for r, why in dropped]
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        raw = tags.get(TAG_DELETE_ON)
        warnings.append((TAG_DELETE_ON, f"DeleteOn {raw!r} is not a YYYY-MM-DD date; not copied"))
    created = snapshot["StartTime"].astimezone(UTC).date()
    own_date, kms_key, more = copy_options(tags, created, lambda: snapshot.get("OwnerId"))
    until = copy_until(tags, created, TAG_COPY_RETENTION)
    more += [(TAG_LOCK, p) for p in [lock_mode(tags.get(TAG_LOCK))[1]] if p]
    record = {
        "id": sid,
        "tags": tags,
        "start": snapshot["StartTime"],
        "volume_id": snapshot.get("VolumeId"),
        "description": snapshot.get("Description", ""),
        "dests": dests,
        "copy": until is not None and until > today,
        "delete_on": delete_on,
        "copy_delete_on": until,
        "own_date": own_date is not None,
        "kms_key": kms_key,
        "lock": lock_request(tags, until, today),  # the copy's, until its own DeleteOn
    }
    return record, warnings + more


def copy_options(tags, created, own):
    """(the copies' own DeleteOn or None, KMS key or None, tag errors) from a primary's
    Copy_Retention and Copy_KmsKeyId; unreadable values fall back, with a warning, and so
    does a key of another account (key_refusal; ``own()``: this account's id)."""
    own_date, problem = copy_delete_on(tags, created, TAG_COPY_RETENTION)
    warnings = [(TAG_COPY_RETENTION, problem)] if problem else []
    kms_key = tags.get(TAG_COPY_KMS_KEY, "").strip() or None
    refused = key_refusal(kms_key, own) if kms_key else None
    if refused:
        warnings.append((TAG_COPY_KMS_KEY, f"{refused}; copied with the default EBS key"))
        kms_key = None
    return own_date, kms_key, warnings


def copy_tags(primary, region):
    """A copy's tags: where it came from (the source volume, so that the manager of its
    region keeps each volume's newest copy), its own DeleteOn, and what it inherits."""
    tags = {
        TAG_TYPE: AUTOMATED,
        TAG_DELETE_ON: primary["copy_delete_on"].isoformat(),
        TAG_SOURCE_SNAPSHOT: primary["id"],
        TAG_SOURCE_REGION: region,
    }
    if primary["volume_id"]:
        tags[TAG_SOURCE_VOLUME] = primary["volume_id"]
    carried = (TAG_NAME, TAG_ARCHIVE, *RUN_TAGS)
    carried += () if primary["own_date"] else (TAG_RETENTION_TIER,)
    tags |= {key: primary["tags"][key] for key in carried if key in primary["tags"]}
    kept = keep_forever_key(primary["tags"])
    if kept:  # a near-miss key (keepforever) arrives as KeepForever
        tags[TAG_KEEP_FOREVER] = primary["tags"][kept]
    if primary["lock"]:  # locked as its primary is, in the same mode
        tags[TAG_LOCK] = primary["lock"]["LockMode"]
        if "CoolOffPeriod" in primary["lock"]:
            tags[TAG_LOCK_COOL_OFF] = str(primary["lock"]["CoolOffPeriod"])
    return tags


def sweep_scope(event):
    """ "pending" for a scheduled sweep, except the day's first; "full" for that one, and for
    any run not scheduled, or whose time cannot be read (a full sweep is always safe)."""
    when = scheduled_time(event)
    if when is None:
        return "full"
    when = when.astimezone(UTC)
    first = when.hour == FULL_SWEEP_HOUR and when.minute < FULL_SWEEP_MINUTES
    return "full" if first else "pending"


def copy_state_marks(tracked, unsettled, scope):
    """{Copy_State value: [primary ids to tag so]}. ``tracked`` maps the primaries a sweep
    read to their Copy_State now; ``unsettled``: those with something left to do (a copy to
    make, in flight or failed, a tag or a lock to carry, a vault share to take back, or a
    place that could not be read). A settled pending primary becomes done; a full sweep also
    marks pending any other unsettled one (older than Copy_State, or reopened)."""
    marks = {COPY_DONE: [], COPY_PENDING: []}
    for sid, state in sorted(tracked.items()):
        if sid not in unsettled and state == COPY_PENDING:
            marks[COPY_DONE].append(sid)
        elif sid in unsettled and state != COPY_PENDING and scope == "full":
            marks[COPY_PENDING].append(sid)
    return marks


def plan_destination(primaries, existing, free_slots):
    """Actions for one destination, oldest primary first.

    ``existing`` maps primary ids to the copies the destination already holds, as
    {copy id: already KeepForever?}; ``free_slots`` is how many more copies AWS will
    let run into it at once. Actions: ("copy", primary); ("defer", primary) when no slot is
    left; ("keep", primary, copy id) to carry KeepForever onto a copy; ("skip", primary,
    reason).
    """
    actions = []
    for primary in primaries:
        copies = existing.get(primary["id"], {})
        if not copies and primary["copy"]:
            actions.append(("copy" if free_slots > 0 else "defer", primary))
            free_slots -= 1
        elif not copies and primary["delete_on"] is not None:
            when = primary["copy_delete_on"]
            actions.append(("skip", primary, f"the copy's DeleteOn {when} has come; not copied"))
        elif is_kept_forever(primary["tags"]):
            actions += [("keep", primary, cid) for cid, kept in copies.items() if not kept]
    return actions


def list_primaries(ec2, scope, only, seen):
    """Completed automated snapshots of this account that ask for copies, oldest first: in
    a full sweep all of them; in a pending sweep those tagged Copy_State=pending; for a
    notified snapshot (``only``) just that one (one call by id). What those two read is
    added to ``seen`` (the vault primaries among it too); a full sweep keeps nothing more
    than the primary records, so that its memory stays what it was."""
    completed = {"Name": "status", "Values": ["completed"]}
    if scope == "notified":
        try:
            snaps = ec2.describe_snapshots(SnapshotIds=[only])["Snapshots"]
        except ClientError as exc:
            if error_code(exc) != "InvalidSnapshot.NotFound":  # deleted since: nothing to do
                raise
            snaps = []
        snaps = [s for s in snaps if tag_map(s).get(TAG_TYPE) == AUTOMATED]
    elif scope == "pending":
        pending = {"Name": "tag:" + TAG_COPY_STATE, "Values": [COPY_PENDING]}
        snaps = list(automated_snapshots(ec2, pending, completed))
    else:
        asking = {"Name": "tag-key", "Values": [TAG_COPY_DEST]}
        snaps = list(automated_snapshots(ec2, asking, completed))
    seen += snaps if scope != "full" else []
    wanted = (s for s in snaps if s["State"] == "completed" and TAG_COPY_DEST in tag_map(s))
    return sorted(wanted, key=lambda s: (s["StartTime"], s["SnapshotId"]))


def existing_copies(dest_ec2, region, only=None):
    """({primary id: {copy id: kept forever?}} for the copies of this region's snapshots,
    in any state; how many of this account's copies, from any region, are in flight; the
    copies of this region's snapshots that failed, as (copy id, primary id, message); those
    tagged Lock; and the primaries with a copy there not completed yet, or failed).

    A full sweep reads every copy in the destination once. For ``only`` (primary ids: a
    notified snapshot, a pending sweep's, a stay's next copies), small reads: their copies,
    LOOKUP_BATCH ids at a time, and the copies still pending."""
    copy_filter = {"Name": "tag-key", "Values": [TAG_SOURCE_SNAPSHOT]}
    if only:
        listings = [
            [{"Name": "tag:" + TAG_SOURCE_SNAPSHOT, "Values": ids}] for ids in batches(only)
        ]
        listings.append([copy_filter, {"Name": "status", "Values": ["pending"]}])
    else:
        listings = [[copy_filter]]
    found, in_flight, broken, lockable, unfinished = {}, set(), [], [], set()
    for filters in listings:
        for snap in paginate(
            dest_ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=filters
        ):
            tags = tag_map(snap)
            if snap["State"] == "pending":
                in_flight.add(snap["SnapshotId"])
            if tags.get(TAG_SOURCE_REGION) == region:
                if TAG_LOCK in tags:
                    lockable.append(snap)
                copies = found.setdefault(tags[TAG_SOURCE_SNAPSHOT], {})
                copies[snap["SnapshotId"]] = is_kept_forever(tags)
                if snap["State"] != "completed":
                    unfinished.add(tags[TAG_SOURCE_SNAPSHOT])
                # AWS checks a copy's KMS key only once the copy has started: an unusable
                # key shows as a copy in state "error".
                if snap["State"] == "error":
                    message = snap.get("StateMessage") or "no reason given"
                    broken.append((snap["SnapshotId"], tags[TAG_SOURCE_SNAPSHOT], message))
    return found, len(in_flight), broken, lockable, unfinished


def list_by_destination(region, today, summary, budget, scope, only, seen, unsettled):
    """{destination: [primaries to bring there]}, from one listing of this region (added to
    ``seen``); a primary that cannot be read is added to ``unsettled``."""
    ec2 = make_client("ec2", region, budget)
    primaries = list_primaries(ec2, scope, only, seen)
    enabled = enabled_regions(ec2) if primaries else set()
    by_dest = {}
    for snapshot in primaries:
        try:  # an odd snapshot, or a bug of ours, costs that snapshot only
            primary, warnings = primary_record(snapshot, enabled, region, today)
        except Exception as exc:
            summary.error(snapshot.get("SnapshotId", "?"), exc, "not copied")
            unsettled.add(snapshot.get("SnapshotId"))
            continue
        for tag, why in warnings:
            summary.tag_error(snapshot["SnapshotId"], tag, tag_map(snapshot).get(tag), why)
        for dest in primary["dests"] if primary else ():
            by_dest.setdefault(dest, []).append(primary)
    return by_dest


def plan_all(by_dest, summary, budget, pacer, when, unsettled):
    """([(dest, dest client, action)], {dest: [primaries deferred for want of a slot]}),
    adding to ``unsettled`` the primaries with something left to do in some destination.
    A destination that cannot be read (refused, unreachable) fails alone: the others go on.
    ``when``: (today, the run's scope, the copies the invocations before it started)."""
    today, scope, carried = when
    work, deferred = [], {}
    for dest in sorted(by_dest):
        dest_ec2 = make_client("ec2", dest, budget, pacer)
        found = read_destination(dest_ec2, by_dest[dest], summary, scope, unsettled)
        if found is None:
            continue
        existing, in_flight, lockable = found
        in_flight += carry_over(existing, carried.get(dest, []), unsettled)
        free = (NOTIFIED_MAX_IN_FLIGHT if scope == "notified" else COPIES_IN_FLIGHT) - in_flight
        for action in plan_destination(by_dest[dest], existing, free):
            if action[0] == "skip":
                summary.skip(action[1]["id"], action[2], dest_region=dest)
                continue
            unsettled.add(action[1]["id"])
            if action[0] == "defer":
                deferred.setdefault(dest, []).append(action[1])
            else:
                work.append((dest, dest_ec2, action))
        if scope != "notified":  # a sweep; a notified snapshot's run looks at that one only
            work += lock_work(dest_ec2, by_dest[dest], lockable, summary, today, unsettled)
    return work, deferred


def carry_over(existing, started, unsettled):
    """The copies the invocations that handed this event over started in a destination count
    as there (in flight) even when its listing does not show them yet (Describe calls are
    eventually consistent): no second copy. Returns how many the listing did not show."""
    unseen = [pid for pid in started if pid not in existing]
    for pid in unseen:
        existing[pid] = {f"copy of {pid}, handed over": True}  # True: nothing to tag on it
        unsettled.add(pid)
    return len(unseen)


def copies_started(summary, carried, work):
    """{destination: [primary ids]} of the copies this invocation started, those whose answer
    was lost without a copy found (they may exist), and those it was handed: what the next
    one is told (CARRIED). Only regional copies: the vault's are made by an invocation that
    hands nothing over."""
    started = {dest: list(ids) for dest, ids in carried.items()}
    for item in summary.data.get("copied", []):
        started.setdefault(item["dest_region"], []).append(item["source_snapshot_id"])
    for dest, _, (kind, primary, *_) in work:
        lookup = primary.get("lookups", {}).get(dest) if kind == "copy" else None  # copy_once
        if lookup is not None and lookup.lost:
            started.setdefault(dest, []).append(primary["id"])
    return {dest: sorted(set(ids)) for dest, ids in sorted(started.items())}


def carried_copies(event):
    """Refuse an event whose CARRIED cannot be read (run_job's check)."""
    carried = event.get(CARRIED)
    if carried is not None and not (
        isinstance(carried, dict)
        and all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids)
            for ids in carried.values()
        )
    ):
        raise ValueError(f"event {CARRIED} must be {{region: [snapshot ids]}}, not {carried!r}")


def read_destination(dest_ec2, primaries, summary, scope, unsettled):
    """(copies there by primary, copies in flight, copies tagged Lock) for one destination:
    a full sweep reads all its copies, other runs look up those of ``primaries``. Failed
    copies are reported; primaries with a copy not completed are unsettled. None when it
    cannot be read: a failure, and all of ``primaries`` unsettled."""
    dest, ids = dest_ec2.meta.region_name, [p["id"] for p in primaries]
    lookup = None if scope == "full" or len(ids) > MAX_LOOKUP else ids
    try:
        existing, in_flight, broken, lockable, unfinished = existing_copies(
            dest_ec2, summary.region, lookup
        )
    except OutOfTime:
        raise
    except Exception as exc:
        summary.error(dest, exc, "cannot list copies there")
        unsettled.update(ids)
        return None
    for copy_id, source, message in broken:
        reason = f"copy of {source} failed ({message}); not made again while it exists"
        summary.fail(copy_id, reason, dest_region=dest)
    unsettled.update(unfinished)
    return existing, in_flight, lockable


def lock_work(dest_ec2, primaries, lockable, summary, today, unsettled):
    """("lock", copy id, LockSnapshot's parameters) for each copy in this destination that is
    tagged for a lock but not locked (its lock failed when it was made); their primaries are
    unsettled. Not being able to look is a warning (and leaves them unsettled): the manager
    there reports locks still missing after a day."""
    dest = dest_ec2.meta.region_name
    sources = {s["SnapshotId"]: tag_map(s)[TAG_SOURCE_SNAPSHOT] for s in lockable}
    try:
        locked = locked_among(dest_ec2, list(sources))
    except OutOfTime:
        raise
    except Exception as exc:
        summary.warn(dest, f"locks of the copies there not checked: {describe_error(exc)}")
        unsettled.update(sources.values())
        return []
    todo = unlocked(lockable, locked, today)
    if summary.dry_run and any(p["lock"] for p in primaries):
        probe_lock(dest_ec2, todo, summary)
    unsettled.update(sources[sid] for sid, _ in todo)
    return [(dest, dest_ec2, ("lock", sid, req)) for sid, req in todo]


def locked_among(ec2, ids):
    """locks_in_force for these snapshots: by their ids, LOOKUP_BATCH at a time, or (more
    than MAX_LOOKUP) the region's whole list; {} and no call when there are none."""
    if not ids:
        return {}
    if len(ids) > MAX_LOOKUP:
        return locks_in_force(ec2)
    return {sid: lock for batch in batches(ids) for sid, lock in locks_in_force(ec2, batch).items()}


def mark_copy_states(ec2, marks, summary):
    """Tag primaries Copy_State as ``marks`` says, LOOKUP_BATCH at a time. A refusal or a
    network failure is a warning: a primary left pending is read again by the next sweep
    (a little cost, nothing lost), one left unmarked by the next full sweep."""
    for state, ids in marks.items():
        for batch in batches(ids):
            params = {"Resources": batch, "Tags": [{"Key": TAG_COPY_STATE, "Value": state}]}
            if summary.dry_run:
                summary.probe("ec2:CreateTags", summary.region, ec2.create_tags, **params)
            else:
                try:
                    ec2.create_tags(**params)
                except OutOfTime:
                    raise
                except Exception as exc:
                    summary.warn(
                        batch[0],
                        f"{len(batch)} primaries not marked {TAG_COPY_STATE}="
                        f"{state}: {describe_error(exc)}",
                        snapshot_ids=batch,
                    )
                    continue
            log(
                "INFO",
                JOB,
                summary.region,
                "copy_state",
                state=state,
                snapshot_ids=batch,
                dry_run=summary.dry_run,
            )


def tag_pairs(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]
