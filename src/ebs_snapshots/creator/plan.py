"""What to snapshot: an instance's settings and volumes, the tags each snapshot gets."""

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import NamedTuple

from botocore.exceptions import ClientError
from botocore.parsers import ResponseParserError

from ebs_snapshots.common.aws import (
    describe_error,
    enabled_regions,
    error_code,
    paginate,
    volume_backup_tags,
)
from ebs_snapshots.common.keys import key_refusal
from ebs_snapshots.common.locking import lock_request
from ebs_snapshots.common.locks import TAG_LOCK, TAG_LOCK_COOL_OFF, cool_off_hours, lock_mode
from ebs_snapshots.common.tags import (
    AUTOMATED,
    LIVE_STATES,
    MAX_RETENTION_DAYS,
    MAX_TAG_VALUE,
    TAG_ARCHIVE,
    TAG_BACKUP,
    TAG_COPY_DEST,
    TAG_COPY_KMS_KEY,
    TAG_COPY_RETENTION,
    TAG_DELETE_ON,
    TAG_NAME,
    TAG_RETENTION,
    TAG_RETENTION_TIER,
    TAG_TYPE,
    TAG_VAULT_ACCOUNT,
    TAG_VAULT_REGION,
    TAG_VAULT_RETENTION,
    backup_enabled,
    clean_regions,
    opted_out,
    parse_bool,
    parse_count,
    parse_date,
    tag_map,
)
from ebs_snapshots.common.vault import vault_retention, vault_target
from ebs_snapshots.creator.retention import archive_tiers, parse_retention, retention_plan
from ebs_snapshots.creator.schedule import (
    HOURLY_TIER,
    TAG_BACKUP_EVERY,
    TAG_BACKUP_SLOT,
    TAG_COPY_HOURLY,
    TAG_RETENTION_HOURLY,
    Schedule,
    copies_every_snapshot,
    due_slot,
    hourly_delete_on,
    parse_every,
)

SKIPPED_STATES = ("terminated", "shutting-down")
TAG_CONSISTENCY = "Consistency"  # how to take an instance's snapshots; and how they were taken
MODES = ("volume", "instance", "fsfreeze", "vss")
FALLBACK = "crash-fallback"  # the consistency step failed: a crash-consistent set instead
MAX_DESCRIPTION = 255  # EC2's limit on a snapshot description
TAG_EVENT_ID = "EventId"  # the event a snapshot was made for: a retried event skips it
# Errors that a DescribeVolumes without the multi-attach-enabled filter would meet as well.
NOT_A_FILTER_PROBLEM = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AuthFailure", "RequestLimitExceeded", "Throttling"}
)


def copy_settings(tags, own):
    """({Copy_Retention, Copy_KmsKeyId} to pass on to the copier, tag errors): bad values are
    left out, so copies fall back to the primary's DeleteOn and the default key (a key of
    another account too: key_refusal; ``own()`` gives this account's id)."""
    settings, warnings = {}, []
    if TAG_COPY_RETENTION in tags:
        days, problem = parse_count(
            tags[TAG_COPY_RETENTION], TAG_COPY_RETENTION, MAX_RETENTION_DAYS
        )
        if days:
            settings[TAG_COPY_RETENTION] = str(days)
        if problem:
            why = problem if days else f"{problem}; copies keep the primary's DeleteOn"
            warnings.append((TAG_COPY_RETENTION, why))
    if TAG_COPY_KMS_KEY in tags:
        key = tags[TAG_COPY_KMS_KEY].strip()
        refused = key_refusal(key, own)
        if refused:
            why = f"{refused}; copies use each region's default EBS key"
            warnings.append((TAG_COPY_KMS_KEY, why))
        else:
            settings[TAG_COPY_KMS_KEY] = key
    return settings, warnings


def vault_settings(tags, enabled, region):
    """({Vault_Account, Vault_Region, Vault_Retention} to pass on to the copier, tag errors)."""
    account, regions, warnings = vault_target(tags, enabled, region)
    if account is None:
        return {}, warnings
    settings = {TAG_VAULT_ACCOUNT: account, TAG_VAULT_REGION: ",".join(regions)}
    days, problems = vault_retention(tags)
    settings |= {TAG_VAULT_RETENTION: str(days)} if days else {}
    return settings, warnings + problems


def parse_mode(value):
    """(mode, warning or None) for an instance's Consistency tag (any case)."""
    if value is None:
        return "volume", None
    mode = value.strip().lower()
    if mode in MODES:
        return mode, None
    return "volume", f"{TAG_CONSISTENCY} {value!r} is not one of {', '.join(MODES)}; using volume"


def snapshot_set(plans, ebs):
    """One multi-volume set of an instance: ``plans`` its volumes to snapshot, ``ebs`` all
    its EBS volumes as (volume id, device, is root). The others are excluded."""
    wanted = {p["volume_id"] for p in plans}
    first = plans[0]
    return {
        "set": first["mode"],
        "instance_id": first["instance_id"],
        "plans": plans,
        "tags": first["tags"],
        "copy_dest": first["copy_dest"],
        "lock": first["lock"],
        "description": first["set_description"],
        "exclude_boot": any(root and vid not in wanted for vid, _, root in ebs),
        "exclude_data": [vid for vid, _, root in ebs if not root and vid not in wanted],
        "data": [(vid, dev) for vid, dev, root in ebs if not root and vid in wanted],
    }


def volume_specs(volumes):
    """The freeze document's Volumes parameter: volume-id=device pairs, separated by spaces
    (template.yaml's CreatorFreezeDocument finds each one's mounted filesystems on the instance)."""
    return " ".join(f"{vid}={dev}" for vid, dev in volumes)


def describe(name, instance_id, volume_id, device, region):
    who = f"{name} ({instance_id})" if name else instance_id
    return f"{who} - {volume_id} ({device}) - {region}"[:MAX_DESCRIPTION]


def lock_tags(tags):
    """({Lock, Lock_CoolOffHours} to write on the snapshots, tag errors) from an instance's
    Lock and Lock_CoolOffHours tags."""
    mode, problem = lock_mode(tags.get(TAG_LOCK))
    warnings = [(TAG_LOCK, problem)] if problem else []
    if mode != "compliance":
        return ({TAG_LOCK: mode} if mode else {}), warnings
    hours, problem = cool_off_hours(tags.get(TAG_LOCK_COOL_OFF))
    warnings += [(TAG_LOCK_COOL_OFF, problem)] if problem else []
    return {TAG_LOCK: mode, TAG_LOCK_COOL_OFF: str(hours)}, warnings


def snapshot_tags(name, delete_on, tier, copy_dest, copy_with, key, extra):
    tags = {TAG_TYPE: AUTOMATED, TAG_DELETE_ON: delete_on.isoformat(), TAG_RETENTION_TIER: tier}
    tags |= extra
    if key:
        tags[TAG_EVENT_ID] = key
    if copy_dest:
        tags[TAG_COPY_DEST] = ",".join(copy_dest)
        tags |= copy_with
    if name:
        tags[TAG_NAME] = name[:MAX_TAG_VALUE]
    return tags


def not_backed_up(iid, tags, state):
    """Notes saying why an instance gets no snapshot at all, or [] when it gets them."""
    backup = backup_enabled(tags)
    if backup is None:
        why = f"Backup {tags[TAG_BACKUP]!r} is not yes/no; instance skipped"
        return [tag_note(iid, tags, TAG_BACKUP, why), ("skip", iid, "Backup tag not recognised")]
    if not backup:
        return [("skip", iid, "Backup tag does not enable backups")]
    if state in SKIPPED_STATES:
        return [("skip", iid, f"instance is {state}")]
    return []


def tag_note(rid, tags, tag, why):
    """A note of a tag the creator cannot honour: summary.tag_error's arguments."""
    error = {"tag": tag, "value": tags.get(tag), "reason": why}
    return "tag", rid, error | ({"name": tags[TAG_NAME]} if tags.get(TAG_NAME) else {})


class Where(NamedTuple):
    """What each instance's plan reads of its run: the regions a Copy_Dest may name, this
    region, today, the event's key, this account's id (a function: asked only when a
    Copy_KmsKeyId names an account), and the run's Schedule (None: no slots)."""

    enabled: frozenset
    region: str
    today: date
    key: str | None = None
    own: Callable[[], str | None] = lambda: None
    schedule: Schedule | None = None


def slot_settings(tags, where):
    """(DeleteOn, tier, the Slot or None, copies too?, tag errors) of the instance's
    snapshot in this run: a daily (or any snapshot outside the schedule) takes the tiers
    from its slot's day; one between dailies keeps Retention_Hourly and is copied only
    when Copy_Hourly says so."""
    every, problem = parse_every(tags.get(TAG_BACKUP_EVERY))
    problems = [(TAG_BACKUP_EVERY, problem)] if problem else []
    slot = (where.schedule.due(every) or where.schedule.slot(every)) if where.schedule else None
    delete_on, tier, more = retention_plan(tags, slot.start.date() if slot else where.today)
    copy_all, problem = copies_every_snapshot(tags)
    problems += more + ([(TAG_COPY_HOURLY, problem)] if problem else [])
    start = slot.start if slot else datetime.combine(where.today, datetime.min.time(), UTC)
    hourly, problem = hourly_delete_on(tags, start, parse_retention(tags.get(TAG_RETENTION))[0])
    problems += [(TAG_RETENTION_HOURLY, problem)] if problem else []
    if slot and not slot.daily:
        return hourly, HOURLY_TIER, slot, copy_all, problems
    return delete_on, tier, slot, True, problems


def instance_settings(tags, where):
    """(what each snapshot of the instance gets, tag errors as (tag, why)) from its tags."""
    delete_on, tier, slot, copied, problems = slot_settings(tags, where)
    dests, dropped = clean_regions(tags.get(TAG_COPY_DEST, ""), where.enabled, where.region)
    problems += [(TAG_COPY_DEST, f"Copy_Dest entry {r!r} {why}; dropped") for r, why in dropped]
    dests = dests if copied else []
    copy_with, more = copy_settings(tags, where.own) if dests else ({}, [])
    mode, problem = parse_mode(tags.get(TAG_CONSISTENCY))
    more += [(TAG_CONSISTENCY, problem)] if problem else []
    lock, lock_problems = lock_tags(tags)
    archive, archive_problems = archive_tiers(tags)
    vault, vault_problems = vault_settings(tags, where.enabled, where.region)
    vault = vault if copied else {}
    name = tags.get(TAG_NAME, "")
    extra = lock | ({TAG_ARCHIVE: "Yes"} if tier in archive else {})
    extra |= {TAG_BACKUP_SLOT: slot.tag} if slot else {}
    snap_tags = snapshot_tags(name, delete_on, tier, dests, copy_with, where.key, extra) | vault
    settings = {"name": name, "tags": snap_tags, "copy_dest": dests, "mode": mode, "slot": slot}
    settings["lock"] = lock_request(snap_tags, delete_on, where.today)
    return settings, problems + more + lock_problems + archive_problems + vault_problems


def plan_instance(instance, volume_backup, where):
    """(snapshots to create, notes) for one instance.

    ``volume_backup`` maps volume ids to their own Backup tag values. A snapshot is a
    dict(volume_id, instance_id, description, tags, copy_dest ...); a note is (kind, id,
    detail): "skip" or "warn" with a reason, "tag" with tag_error's arguments (tag_note).
    """
    iid, tags = instance["InstanceId"], tag_map(instance)
    refusal = not_backed_up(iid, tags, instance.get("State", {}).get("Name"))
    if refusal:
        return [], refusal
    settings, problems = instance_settings(tags, where)
    notes = [tag_note(iid, tags, tag, why) for tag, why in problems]
    name, region = settings["name"], where.region
    set_description = describe(name, iid, "all volumes", settings["mode"], region)
    plans = []
    for vid, device, _root in ebs_volumes(instance):
        opted_out, note = volume_opt_out(vid, iid, volume_backup)
        notes += [note] if note else []
        if not opted_out:
            plans.append(
                {
                    "volume_id": vid,
                    "instance_id": iid,
                    "device": device,
                    "description": describe(name, iid, vid, device, region),
                    "set_description": set_description,
                    **{k: settings[k] for k in ("tags", "copy_dest", "mode", "lock", "slot")},
                }
            )
    if not plans and not any(k == "skip" for k, _, _ in notes):
        notes.append(("skip", iid, "no EBS volumes"))
    return plans, notes


def ebs_volumes(instance):
    """(volume id, device, is root) of each EBS volume; instance-store has no snapshot."""
    root = instance.get("RootDeviceName")
    return [
        (m["Ebs"]["VolumeId"], m["DeviceName"], m["DeviceName"] == root)
        for m in instance.get("BlockDeviceMappings", [])
        if "Ebs" in m
    ]


def volume_opt_out(volume_id, instance_id, volume_backup):
    """(opted out?, note or None) from the volume's own Backup tag, if it has one."""
    value = volume_backup.get(volume_id)
    if opted_out(value):
        return True, ("skip", volume_id, f"volume of {instance_id} opted out with Backup={value}")
    if value is not None and parse_bool(value) is None:
        why = f"volume Backup {value!r} is not yes/no; backed up"
        return False, tag_note(volume_id, {TAG_BACKUP: value}, TAG_BACKUP, why)
    return False, None


def list_instances(ec2, ids):
    """Candidate instances. With explicit ids, filter by id (a missing id is not an error
    there, unlike InstanceIds=) so the plan can say which ones were not found."""
    if ids == []:  # asked for no instance: an empty filter must not mean "all"
        return
    if ids is not None:
        filters = [{"Name": "instance-id", "Values": ids}]
    else:
        filters = [
            {"Name": "tag-key", "Values": [TAG_BACKUP]},
            {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
        ]
    for reservation in paginate(ec2, "describe_instances", "Reservations", Filters=filters):
        yield from reservation["Instances"]


def multi_attach_volumes(ec2, summary):
    """Ids of this region's Multi-Attach volumes: one may belong to several instances. An
    endpoint that does not implement DescribeVolumes' multi-attach-enabled filter (moto
    server and LocalStack answer HTTP 500) is asked for every volume instead, and the flag
    read from each (MultiAttachEnabled), with one warning. Refusals that would refuse that
    too (permissions, throttling beyond botocore's retries) are the run's failure."""
    only = [{"Name": "multi-attach-enabled", "Values": ["true"]}]
    try:
        return {v["VolumeId"] for v in paginate(ec2, "describe_volumes", "Volumes", Filters=only)}
    except (ClientError, ResponseParserError) as exc:
        if isinstance(exc, ClientError) and error_code(exc) in NOT_A_FILTER_PROBLEM:
            raise
        refusal = describe_error(exc).splitlines()[0][:200]  # an HTML page, say
        why = f"this endpoint refused DescribeVolumes' multi-attach-enabled filter ({refusal})"
        summary.warn(summary.region, f"{why}; every volume read instead")
    volumes = paginate(ec2, "describe_volumes", "Volumes")
    return {v["VolumeId"] for v in volumes if v.get("MultiAttachEnabled")}


def done_for_event(ec2, key):
    """{volume id: snapshot id} of snapshots this event already made (a retried event)."""
    if not key:
        return {}
    return {s["VolumeId"]: s["SnapshotId"] for s in tagged_with(ec2, TAG_EVENT_ID, [key])}


def tagged_with(ec2, tag, values):
    """This account's snapshots whose ``tag`` is one of ``values`` (a server-side filter)."""
    where = [{"Name": "tag:" + tag, "Values": values}]
    return paginate(ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=where)


def done_before(ec2, where, instances):
    """{(volume id, slot or None): snapshot id} of what need not be made again: in a
    scheduled run, the snapshots of the slots it takes (made by an earlier try of the
    slot: a retried event, an earlier run, a hand-off); otherwise those of this event."""
    if not slotted(where):
        return {(vid, None): sid for vid, sid in done_for_event(ec2, where.key).items()}
    slots = sorted({due_slot(instance, where.schedule).tag for instance in instances})
    found = tagged_with(ec2, TAG_BACKUP_SLOT, slots) if slots else []
    return {(s["VolumeId"], tag_map(s).get(TAG_BACKUP_SLOT)): s["SnapshotId"] for s in found}


def slotted(where):
    return bool(where.schedule and where.schedule.scheduled)


def plans_of_region(ec2, ids, where, summary, instances=None):
    """Each snapshot to create, as the instance pages arrive; what is skipped, and why, goes
    to the summary. An instance with a Multi-Attach volume waits for the last page, so that
    a volume several instances ask for is taken once. ``where``: a Where without the
    enabled regions (read here). ``instances``: those to plan, if already listed (a
    scheduled run's due ones), else every one listed."""
    where = where._replace(enabled=enabled_regions(ec2))
    volume_backup = volume_backup_tags(ec2)
    multi = multi_attach_volumes(ec2, summary)
    instances = list_instances(ec2, ids) if instances is None else instances
    done = done_before(ec2, where, instances)
    seen, held, in_slot = set(), [], []
    for instance in instances:
        seen.add(instance.get("InstanceId"))
        try:  # an odd answer, or a bug of ours, costs this instance only
            todo = plan_one(instance, volume_backup, where, summary, (done, in_slot))
        except Exception as exc:
            summary.error(instance.get("InstanceId", "?"), exc, "instance not planned")
            continue
        if any(plan["volume_id"] in multi for plan in todo):
            held.append((todo, ebs_volumes(instance)))
        else:
            yield from work_of(todo, ebs_volumes(instance))
    yield from shared_work(held, summary, where.today)
    if in_slot:  # said once: a catch-up run finds most of its slots done
        volumes = f"{len(in_slot)} volume{'' if len(in_slot) == 1 else 's'}"
        summary.skip(summary.region, f"{volumes} already snapshotted in their slot")
    for missing in sorted(set(ids or ()) - seen):
        summary.fail(missing, "instance not found in this region")


def work_of(todo, ebs):
    """One instance's work: its set (Consistency other than volume), or each volume."""
    return [snapshot_set(todo, ebs)] if todo and todo[0]["mode"] != "volume" else todo


def plan_one(instance, volume_backup, where, summary, done):
    """The snapshots to create for one instance, its notes in the summary; volumes that
    already have a snapshot for this event (or, scheduled, for this slot) are skipped:
    ``done`` is (done_before's answer, the list of volumes found done in their slot)."""
    done, in_slot = done
    found, notes = plan_instance(instance, volume_backup, where)
    for kind, rid, detail in notes:
        if kind == "tag":
            summary.tag_error(rid, **detail)
        else:
            (summary.warn if kind == "warn" else summary.skip)(rid, detail)
    todo = []
    for plan in found:
        slot = plan["tags"].get(TAG_BACKUP_SLOT) if slotted(where) else None
        snapshot_id = done.get((plan["volume_id"], slot))
        if snapshot_id is None:
            todo.append(plan)
        elif slot:
            in_slot.append(plan["volume_id"])
        else:
            why = f"already snapshotted for event {where.key}"
            summary.skip(plan["volume_id"], why, snapshot_id=snapshot_id)
    return todo


def shared_work(held, summary, today):
    """The work of the instances that have a Multi-Attach volume, once every page is read.
    A volume that several of them ask for is left out of their sets and taken once, alone;
    but a VSS set cannot leave a volume out, so where one of them is a VSS set, that set
    takes it. A volume only one instance asks for stays in its set."""
    askers = {}
    for todo, _ in held:
        for plan in todo:
            askers.setdefault(plan["volume_id"], []).append(plan)
    shared = {vid: plans for vid, plans in askers.items() if len(plans) > 1}
    by_vss = {
        vid: min(p["instance_id"] for p in plans if p["mode"] == "vss")
        for vid, plans in shared.items()
        if any(p["mode"] == "vss" for p in plans)
    }

    def own(plan):  # the volume is in its instance's own work
        vid = plan["volume_id"]
        return vid not in shared or by_vss.get(vid) == plan["instance_id"]

    for todo, ebs in held:
        yield from work_of([plan for plan in todo if own(plan)], ebs)
    for vid, plans in sorted(shared.items()):
        names = ", ".join(sorted(p["instance_id"] for p in plans))
        if vid in by_vss:
            reason = f"taken once, by the VSS set of {by_vss[vid]}, which cannot leave it out"
            summary.warn(vid, f"Multi-Attach volume of {names}: {reason}")
            continue
        if any(p["mode"] != "volume" for p in plans):
            reason = "left out of their sets and taken once, alone (crash-consistent)"
            summary.warn(vid, f"Multi-Attach volume of {names}: {reason}")
        yield merge_shared(plans, summary, today)


COPY_SETTINGS = (TAG_COPY_DEST, TAG_COPY_RETENTION, TAG_COPY_KMS_KEY)
VAULT_SETTINGS = (TAG_VAULT_ACCOUNT, TAG_VAULT_REGION, TAG_VAULT_RETENTION)


def merge_shared(plans, summary, today):
    """One snapshot of a Multi-Attach volume for all its instances: the longest retention
    (latest DeleteOn; on a tie, the first instance id) names it and gives its tags, and it
    is copied to every region any of them names, with the copy settings of the first of
    them (the longest first) that asks for copies: a backup kept too long, or copied once
    too often, costs little."""
    plans = sorted(plans, key=lambda p: p["instance_id"])
    winner = max(plans, key=lambda p: p["tags"][TAG_DELETE_ON])
    ordered = [winner, *(p for p in plans if p is not winner)]
    dests = list(dict.fromkeys(d for p in ordered for d in p["copy_dest"]))
    tags = {k: v for k, v in winner["tags"].items() if k not in COPY_SETTINGS}
    copying = [p for p in ordered if p["copy_dest"]]
    if copying:
        first = {k: copying[0]["tags"].get(k) for k in COPY_SETTINGS[1:]}
        tags |= {k: v for k, v in first.items() if v} | {TAG_COPY_DEST: ",".join(dests)}
        if any({k: p["tags"].get(k) for k in COPY_SETTINGS[1:]} != first for p in copying):
            who = copying[0]["instance_id"]
            summary.warn(
                winner["volume_id"],
                f"its instances ask for different copy settings; copies use those of {who}",
            )
    locking = next((p for p in ordered if p["lock"]), None)  # in the mode of the first that asks
    if locking and not winner["lock"]:
        tags |= {
            k: locking["tags"][k] for k in (TAG_LOCK, TAG_LOCK_COOL_OFF) if k in locking["tags"]
        }
    vaulting = next((p for p in ordered if TAG_VAULT_ACCOUNT in p["tags"]), None)
    if vaulting and TAG_VAULT_ACCOUNT not in winner["tags"]:  # to a vault if any of them asks
        tags |= {k: v for k, v in vaulting["tags"].items() if k in VAULT_SETTINGS}
    ids = [p["instance_id"] for p in plans]
    lock = lock_request(tags, parse_date(tags[TAG_DELETE_ON]), today)  # until its own DeleteOn
    merged = {"tags": tags, "copy_dest": dests, "mode": "volume", "instance_ids": ids}
    return {**winner, **merged, "lock": lock}
