"""The copier's run: the hand-off's carried copies, lambda_handler, main."""

import sys

from ebs_snapshots.common.aws import make_client
from ebs_snapshots.common.cli import cli, cli_parser
from ebs_snapshots.common.events import utc_today
from ebs_snapshots.common.runtime import Pacer, hand_off, run_job
from ebs_snapshots.common.tags import TAG_COPY_STATE, tag_map
from ebs_snapshots.copier import JOB
from ebs_snapshots.copier.plan import (
    CARRIED,
    carried_copies,
    copies_started,
    copy_state_marks,
    list_by_destination,
    mark_copy_states,
    plan_all,
    sweep_scope,
)
from ebs_snapshots.copier.slots import (
    STAY_ENV,
    execute,
    notified_snapshot,
    report_deferred,
    stay,
    stay_until,
)
from ebs_snapshots.copier.vault_copies import Vaults, copy_to_vaults


def run(event=None, context=None, *, region=None, now=None):
    """One copier run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, copy_all, event, context, region, now, check=carried_copies)


def copy_all(event, context, summary, budget, now):
    only, why_not = notified_snapshot(event)
    if why_not:  # a notification it cannot use: said so, and no call made
        (summary.skip if only else summary.warn)(only or "event", why_not)
        return
    today, pacer, scope = utc_today(now), Pacer(), "notified" if only else sweep_scope(event)
    seen, unsettled = [], set()  # the snapshots read here; those with work left
    by_dest = list_by_destination(
        summary.region, today, summary, budget, scope, only, seen, unsettled
    )
    carried = event.get(CARRIED) or {}
    work, deferred = plan_all(by_dest, summary, budget, pacer, (today, scope, carried), unsettled)
    started, stopped = execute(work, deferred, summary, budget)
    left = len(work) - started + stopped
    until, problem = stay_until(event, now)
    if problem:
        summary.warn(STAY_ENV, problem)
    vaults = Vaults(summary, budget, today, scope, seen)
    vaulted = not left and copy_to_vaults(vaults, summary)  # out of time: the hand-off's
    if deferred and until and not (left or only or summary.dry_run):
        stay(deferred, summary, budget, now, until)
    report_deferred(deferred | vaults.deferred, summary, now)
    if left:
        carry = {CARRIED: copies_started(summary, carried, work)}
        hand_off(context, event, summary, started - stopped, left, carry)
    elif vaulted and scope != "notified":
        marks = copy_state_marks(
            tracked(by_dest, seen, vaults), unsettled | vaults.unsettled, scope
        )
        mark_copy_states(make_client("ec2", summary.region, budget, pacer), marks, summary)


def tracked(by_dest, seen, vaults):
    """{primary id: its Copy_State now} for every primary the sweep read: the regional
    primaries, what a pending sweep listed, and the vault primaries."""
    states = {p["id"]: p["tags"].get(TAG_COPY_STATE) for ps in by_dest.values() for p in ps}
    states |= {s["SnapshotId"]: tag_map(s).get(TAG_COPY_STATE) for s in seen}
    return states | {p["id"]: p["copy_state"] for p in vaults.primaries}


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    description = "Copy completed automated snapshots into their Copy_Dest regions."
    return cli(cli_parser(JOB, description), lambda_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
