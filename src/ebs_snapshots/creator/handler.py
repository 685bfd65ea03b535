"""The creator's run: requested instances, the hand-off, lambda_handler, main."""

import argparse
import functools
import os
import re
import sys
from datetime import UTC, datetime

from ebs_snapshots.common.aws import make_client
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.cli import cli, cli_parser
from ebs_snapshots.common.events import scheduled_time, utc_today
from ebs_snapshots.common.keys import own_account
from ebs_snapshots.common.runtime import Pacer, hand_off, in_parallel, run_job
from ebs_snapshots.common.tags import tag_map
from ebs_snapshots.creator import JOB
from ebs_snapshots.creator.consistency import built_once, take
from ebs_snapshots.creator.limits import check_fleet, snapshot_quota
from ebs_snapshots.creator.plan import Where, list_instances, not_backed_up, plans_of_region
from ebs_snapshots.creator.schedule import (
    DAILY,
    DAILY_HOUR_ENV,
    daily_hour,
    due_slot,
    run_schedule,
)
from ebs_snapshots.creator.snapshots import lock_sweep

HANDOFF = "handoff"  # in a handed-over event: what the invocations before it did (resumed)


def requested_ids(event):
    """The event's instance_ids (None: every instance); an event whose instance_ids or
    HANDOFF cannot be read is refused."""
    handoff = event.get(HANDOFF)

    def keys(name):
        return isinstance(handoff.get(name, []), list) and all(
            isinstance(k, str) for k in handoff.get(name, [])
        )

    if handoff is not None and not (
        isinstance(handoff, dict)
        and isinstance(handoff.get("from"), str)
        and isinstance(handoff.get("done"), list)
        and keys("done")
        and keys("maybe")
    ):
        shape = "{from: key, done: [keys], maybe: [keys]}"
        raise ValueError(f"event {HANDOFF} must be {shape}, not {handoff!r}")
    ids = event.get("instance_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"event instance_ids must be a list of instance ids, not {ids!r}")
    return sorted(set(ids))


def run(event=None, context=None, *, region=None, now=None):
    """One creator run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, create_all, event, context, region, now, check=requested_ids)


def create_all(event, context, summary, budget, now):
    """Every instance is listed and planned first; the work then goes in the order of its
    keys (work_key), so that a hand-off can say in its event what is done (resume_point):
    the next invocation does not rest on a listing of what this one made. A scheduled run
    (BACKUP_DAILY_HOUR set) takes only the instances whose slot is due, in its own hour."""
    ids, key, region = requested_ids(event), summary.data["event_id"], summary.region
    ec2 = make_client("ec2", region, budget, Pacer())
    ssm = built_once(lambda: make_client("ssm", region, budget))
    own = functools.cache(lambda: own_account(context, region, budget))
    schedule = schedule_of(event, now, summary)
    where = Where(frozenset(), region, utc_today(now), key, own, schedule)
    if schedule and schedule.scheduled and not open_hour(schedule, now, budget, summary):
        return
    try:
        due = due_instances(ec2, ids, schedule, summary, budget) if where.schedule else None
        if due == []:
            return  # an idle hour: the listing was all it cost
        items = plans_of_region(ec2, None if due else ids, where, summary, due)
        items = sorted(items, key=work_key)
    except OutOfTime:  # the listing alone took the time: nothing done, a failure
        hand_off(context, event, summary, done_here=0)
        return
    create_items(ec2, ssm, items, (event, context, schedule), summary, budget, now)


def create_items(ec2, ssm, items, invocation, summary, budget, now):
    """Take each item, WORKERS at a time, until done or the time runs out: then hand the
    rest over to a new invocation, or, past the run's hour, to the next scheduled run."""
    event, context, schedule = invocation
    todo, done = resumed(items, event.get(HANDOFF), summary), set()

    def work(item):
        take(ec2, ssm, item, summary, budget)
        done.add(work_key(item))

    def failed(item, exc):
        item_failed(item, exc, summary)
        done.add(work_key(item))

    started, stopped = in_parallel(todo, work, budget, failed)
    left = len(todo) - len(done)
    if left and budget.closed():
        why = f"{left} snapshots or sets not started in this run's hour"
        summary.warn(summary.region, f"{why}; the next hourly runs catch them up (Backup_Slot)")
    elif left:
        point = resume_point(todo, done, event.get(HANDOFF))
        point["maybe"] = sorted(work_key(i) for i in todo if i.get("lookup") and i["lookup"].lost)
        hand_off(context, event, summary, started - stopped, left, {HANDOFF: point})
    elif not (schedule and schedule.scheduled) or summary.data["counts"].get("created"):
        lock_sweep(ec2, summary, budget, utc_today(now))  # not in an hour that made nothing
    handed_over = left and not budget.closed()  # the next invocation judges its slots
    if schedule and schedule.scheduled and not (summary.dry_run or handed_over):
        slot_coverage(todo, schedule, summary)


def slot_coverage(items, schedule, summary):
    """The volumes of a sub-daily schedule whose slot has had its last run (this one)
    without a snapshot: unprotected, within their interval and the catch-up, not a day
    later (the UnprotectedVolumes metric, job creator; its alarm looks every hour)."""
    made = {c.get("volume_id") for c in summary.data.get("created", [])}
    plans = [plan for item in items for plan in item.get("plans", [item])]
    if any(plan["slot"].every < DAILY for plan in plans):
        summary.count("unprotected", 0)  # the metric: 0 is news too
    for plan in plans:
        slot = plan["slot"]
        if slot.every < DAILY and schedule.last_chance(slot) and plan["volume_id"] not in made:
            why = f"no snapshot for its {slot.every}-hour slot of {slot.start:%Y-%m-%d %H:%M}"
            summary.add(
                "unprotected",
                "WARN",
                volume_id=plan["volume_id"],
                instance_id=plan["instance_id"],
                reason=f"{why} UTC, and no later run tries it",
            )


def schedule_of(event, now, summary):
    """The run's Schedule, or None without BACKUP_DAILY_HOUR (a bad one warns)."""
    hour, problem = daily_hour()
    if problem:
        summary.warn(DAILY_HOUR_ENV, problem)
    when = scheduled_time(event)
    return run_schedule(when or now, when is not None, hour)


def open_hour(schedule, now, budget, summary):
    """Whether a scheduled run is still in its hour (RUN_WINDOW); the budget closes then.
    An event that comes later (Lambda's queue held it) does nothing: the next run takes
    its slots, and two runs never take the same slot at once."""
    left = (schedule.until - now).total_seconds()
    if left <= 0:
        why = f"the run of {schedule.hour:%H:%M} UTC came at {now:%H:%M}, after its hour"
        summary.warn(summary.region, f"{why}; the next hourly runs take its slots")
        return False
    budget.close_in(left)
    return True


def due_instances(ec2, ids, schedule, summary, budget):
    """The instances whose slot this run takes (all those asked for, on demand), after the
    fleet's check against EC2's limits. Past a slot's first hour, only those backed up are
    taken again: a skipped instance is said once, at its slot's start."""
    listed = list(list_instances(ec2, ids))
    if schedule.scheduled:
        quotas = lambda: make_client("service-quotas", summary.region, budget)  # noqa: E731
        check_fleet(listed, schedule, summary, lambda: snapshot_quota(quotas, summary))
    due = []
    for instance in listed:
        slot = due_slot(instance, schedule)
        again = schedule.scheduled and slot and slot.start < schedule.hour
        if slot and not (again and not_backed_up_now(instance)):
            due.append(instance)
    for missing in sorted(set(ids or ()) - {i.get("InstanceId") for i in listed}):
        summary.fail(missing, "instance not found in this region")
    return due


def not_backed_up_now(instance):
    """Whether plan.not_backed_up has a reason to skip the instance."""
    state = instance.get("State", {}).get("Name")
    return bool(not_backed_up(instance.get("InstanceId"), tag_map(instance), state))


def work_key(item):
    """The order the work goes in, and what a hand-off names as done: the instance, then
    the volume (a set: the instance alone)."""
    return f"{item['instance_id']} {item.get('volume_id', '')}"


def resumed(items, handoff, summary):
    """The items still to do after the invocations that handed this event over (its
    HANDOFF: the key to go on from, the keys after it already done, and "maybe" those whose
    answer was lost there: made_once looks for what they made before sending them)."""
    if not handoff:
        return items
    done, maybe = set(handoff["done"]), set(handoff.get("maybe", ()))
    todo = [i for i in items if work_key(i) >= handoff["from"] and work_key(i) not in done]
    for item in todo:  # its answer was lost there: look for what it made before sending
        item["maybe"] = work_key(item) in maybe
    if len(todo) < len(items):
        why = "done by the invocations that handed this event over"
        summary.skip(summary.region, f"{len(items) - len(todo)} snapshots or sets {why}")
    return todo


def resume_point(todo, done, handoff):
    """What the next invocation may skip: from the key of the first item not done on, all
    but the keys done after it (here, or by an earlier invocation of the event)."""
    first = min(work_key(i) for i in todo if work_key(i) not in done)
    earlier = set(handoff["done"]) if handoff else set()
    return {"from": first, "done": sorted(k for k in done | earlier if k > first)}


def item_failed(item, exc, summary):
    """An exception while snapshotting one volume or one set fails that item alone."""
    if "set" in item:
        summary.error(item["instance_id"], exc)
    else:
        summary.error(item["volume_id"], exc, instance_id=item["instance_id"])


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    parser = cli_parser(JOB, "Snapshot every EBS volume of the instances tagged Backup=Yes.")
    parser.add_argument(
        "--instance-id",
        action="extend",
        type=instance_id_list,
        dest="instance_ids",
        metavar="ID[,ID...]",
        help="only these instances (repeatable, or separated by commas); still only if their "
        "Backup tag enables them",
    )
    parser.add_argument(
        "--event-id",
        default=f"cli-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{os.urandom(3).hex()}",
        help="the id the snapshots are tagged with (EventId): a run with the same id skips the "
        "volumes it already did, so a failed run can be finished without duplicates "
        "(default: a new id, printed in the report)",
    )
    return cli(parser, lambda_handler, argv)


def instance_id_list(text):
    """--instance-id's value: one instance id or several, separated by commas or spaces."""
    ids = [i for i in re.split(r"[\s,]+", text.strip()) if i]
    bad = [i for i in ids if not re.fullmatch(r"i-[0-9a-f]{8}([0-9a-f]{9})?", i)] or (
        [text] if not ids else []
    )
    if bad:
        raise argparse.ArgumentTypeError(
            f"{bad[0]!r} is not an instance id (i- and 8 or 17 hex digits)"
        )
    return ids


if __name__ == "__main__":
    sys.exit(main())
