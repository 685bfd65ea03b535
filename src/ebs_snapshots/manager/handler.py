"""The manager's run: settings, the sweep's frame, lambda_handler, main."""

import os
import sys

from ebs_snapshots.common.aws import make_client
from ebs_snapshots.common.cli import cli, cli_parser
from ebs_snapshots.common.events import utc_today
from ebs_snapshots.common.runtime import Pacer, hand_off, run_job
from ebs_snapshots.common.tags import COPY_LAG_ENV, COPY_LAG_HOURS, env_hours
from ebs_snapshots.common.vault_access import vault_client
from ebs_snapshots.manager import JOB
from ebs_snapshots.manager.archive import Tiers
from ebs_snapshots.manager.coverage import (
    COVERAGE_ENV,
    COVERAGE_MAX_AGE_HOURS,
    finish_coverage,
    start_coverage,
)
from ebs_snapshots.manager.drills import (
    DrillTargets,
    clean_drill_volumes,
    drill_all,
    drill_settings,
)
from ebs_snapshots.manager.expire import Judge, SourceLookup, read_locks, sweep
from ebs_snapshots.manager.last_backups import GRACE_ENV, LastBackups, grace_days
from ebs_snapshots.manager.restore_cli import RESTORE_COMMANDS, restore_main


def stopped_early(why, done, context, event, summary):
    """A sweep cut short by Lambda time: a new invocation on the same event does the rest
    (ten thousand deletes take longer than one invocation at EC2's rate). Without one (a
    test's context, or the hand-off failed), the next scheduled run continues."""
    if getattr(context, "invoked_function_arn", None):
        hand_off(context, event, summary, done_here=done)
        if summary.data.get("handed_off"):
            return
    summary.add(
        "stopped_early", "WARN", id=summary.region, reason=f"{why}; the next run deletes the rest"
    )


def settings(summary):
    """(coverage threshold, copy allowance, grace days) from the environment; a bad value
    warns and uses the default."""
    max_age, late = env_hours(COVERAGE_ENV, COVERAGE_MAX_AGE_HOURS)
    lag, lagging = env_hours(COPY_LAG_ENV, COPY_LAG_HOURS)
    grace, short = grace_days(os.environ.get(GRACE_ENV))
    for name, problem in zip(
        (COVERAGE_ENV, COPY_LAG_ENV, GRACE_ENV), (late, lagging, short), strict=True
    ):
        if problem:
            summary.warn(name, problem)
    return max_age, lag, grace


def run(event=None, context=None, *, region=None, now=None):
    """One manager run; ``now`` (a datetime) is injectable for tests and the demo."""
    return run_job(JOB, manage, event, context, region, now)


def manage(event, context, summary, budget, now):
    """The sweep, with the coverage check's first read (the regions) before it and the rest
    (the instances, then each destination's copies) after its last page."""
    pacer = Pacer()
    ec2 = make_client("ec2", summary.region, budget, pacer)
    max_age, lag, grace = settings(summary)
    drills_on, cap = drill_settings(summary)
    clean_drill_volumes(ec2, summary, now)
    coverage = start_coverage(ec2, now, max_age, lag, summary)
    today = utc_today(now)
    last = LastBackups(None, today, grace)  # the volumes backed up are read after the listing
    lookup = SourceLookup(summary, budget, pacer, today, grace)
    drills = DrillTargets() if drills_on else None
    lookup.clients[summary.region] = ec2
    vault = lambda a, r: vault_client(a, r, budget, pacer)  # noqa: E731
    tiers = Tiers(summary, now, lookup.client, vault, coverage.enabled if coverage else None)
    locks = read_locks(ec2, summary)
    judge = Judge(summary, now, coverage, last, lookup, locks, drills, tiers)
    why, done = sweep(ec2, summary, budget, judge, (now, max_age, lag))
    coverage = judge.coverage  # None when the volumes could not be read
    if why:
        stopped_early(why, done, context, event, summary)
    if coverage and not why:
        finish_coverage(coverage, summary, budget, today)
    elif coverage:
        summary.warn(summary.region, "coverage not checked: the sweep stopped early")
    if drills and not why:
        drill_all(ec2, coverage, drills, summary, budget, now, cap)


def lambda_handler(event, context):
    return run(event, context)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in RESTORE_COMMANDS:  # the person who restores; never the Lambda
        return restore_main(argv)
    description = (
        "Delete automated snapshots whose DeleteOn has come (never a volume's last backup, "
        "nor a KeepForever one), and check coverage: that every volume the tags say must be "
        "backed up has a recent completed snapshot, and a recent copy in each Copy_Dest region. "
        "Restores: restore-points --help and restore --help (docs/restore.md)."
    )
    return cli(cli_parser(JOB, description), lambda_handler, argv)


if __name__ == "__main__":
    sys.exit(main())
