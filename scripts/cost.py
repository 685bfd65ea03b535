"""`make cost`: what one region costs a month, for the example docs/cost-and-archive.md states.

The tool's own share (metrics, alarms, Lambda, logs) is counted from what it really has: the
metrics each job writes (the jobs' METRICS) and the alarms in template.yaml. Prices are US
East (N. Virginia) list prices, read on the date below from the pages named; check them for
your region. The free tiers (10 custom metrics, 10 alarm metrics, 400,000 Lambda GB-s,
1 million requests and 5 GB of logs a month, per account) are left out: they are shared
with everything else in the account.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from cfnlint.decode import cfn_yaml  # noqa: E402

import ebs_snapshot_creator as jobs  # noqa: E402

READ_ON = "2026-11-27"
PRICES = {  # (USD, unit, where it is published)
    "snapshot": (0.05, "GB-month", "Amazon EBS pricing; EBS user guide, snapshot archive pricing"),
    "transfer": (0.02, "GB", "Amazon EC2 On-Demand pricing, data transfer to another region"),
    "gp3": (0.08, "GB-month", "Amazon EBS pricing, General Purpose SSD (gp3) volumes"),
    "metric": (0.30, "metric-month", "Amazon CloudWatch pricing, custom metrics"),
    "alarm": (0.10, "alarm metric-month", "Amazon CloudWatch pricing, standard alarms"),
    "lambda": (0.0000133334, "GB-second (arm64)", "AWS Lambda pricing"),
    "requests": (0.20, "million requests", "AWS Lambda pricing"),
    "logs": (0.50, "GB ingested", "Amazon CloudWatch pricing, logs"),
    "archive": (0.0125, "GB-month", "EBS user guide, Pricing and billing for archiving snapshots"),
    "retrieval": (
        0.03,
        "GB restored",
        "EBS user guide, Pricing and billing for archiving snapshots",
    ),
}
# The example: volumes, GB written on each, GB changed a day, days kept, copies to one region.
EXAMPLE = {"volumes": 100, "size_gb": 100, "written_gb": 50, "daily_change_gb": 1, "retention": 7}
# A restore drill's volume lives from CreateVolume until it is available and deleted: counted
# as a minute each (a gp3 volume from a snapshot is usually available within seconds).
DRILL_S = 60
MEMORY_GB = 0.5  # template.yaml's MemorySize
# Seconds a run, 100 volumes (the copier's stays apart); the manager's includes the day's
# restore drills (waiting for about 14 volumes at once to become available).
RUN_S = {"creator": 30, "copier": 5, "manager": 90}
# The creator runs every hour: its daily run, then 23 that find nothing due or only check
# the day's slot (IDLE_S each: one listing of 100 instances; docs/performance.md, 10,000).
RUNS_A_DAY = {"creator": 24, "copier": 96 + EXAMPLE["volumes"], "manager": 1}  # sweeps: 15 min
IDLE_S = 1
# The copier's stays: a sweep that leaves copies waiting stays up to STAY_S (12 of its 15
# minutes). Here the volumes' copies all wait at once after the creator's run and drain 20
# at a time, each taking about COPY_MIN minutes (an assumption: it depends on the change).
STAY_S, COPY_MIN = 12 * 60, 20
LOG_BYTES_A_DAY = 4 * EXAMPLE["volumes"] * 300  # about four JSON lines per volume a day


def alarm_metrics():
    """Alarm metrics in template.yaml: one per simple alarm, one per metric of a metric-math
    alarm (CloudWatch bills each), in a region with instances (Jobs=all: where an alarm's
    metrics depend on the jobs deployed, Fn::If on AllJobs, its first branch)."""
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    alarms = [r["Properties"] for r in template["Resources"].values()]
    alarms = [a for a in alarms if "AlarmDescription" in a]

    def billed(alarm):
        if "Metrics" not in alarm:
            return 1
        queries = alarm["Metrics"]
        if isinstance(queries, dict):
            condition, all_jobs, _ = queries["Fn::If"]
            assert condition == "AllJobs", condition
            queries = all_jobs
        return len([q for q in queries if "MetricStat" in q])

    return sum(billed(a) for a in alarms)


def recycle_bin_days():
    """The stack's default Recycle Bin retention (template.yaml's RecycleBinRetentionDays)."""
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    return int(template["Parameters"]["RecycleBinRetentionDays"]["Default"])


def recycle_bin_scope():
    """The default rule's scope, as the row names it: Region-level (every EBS snapshot deleted
    in the region) or tag-level (Type=Automated only): template.yaml's RecycleBinScope."""
    template = cfn_yaml.load(str(ROOT / "template.yaml"))
    scope = template["Parameters"]["RecycleBinScope"]["Default"]
    return {"region": "Region-level", "tag": "tag-level"}[scope]


def custom_metrics():
    """The metrics the jobs write, each a custom metric for each job that writes it."""
    always = sum(len(writers) for _, writers in jobs.METRICS.values())
    # UnprotectedVolumes (manager, copier), ExpiredCopiesLeft and RestoreSeconds (manager);
    # the creator's scheduled runs: SnapshotCallsPeakHour, SnapshotsProjected, FleetOverLimits
    # (UnprotectedVolumes too, only with a Backup_Every under 24: not in the example)
    sometimes = 4 + 3
    return always + sometimes


def rows():
    e, p = EXAMPLE, {k: v[0] for k, v in PRICES.items()}
    stored = e["volumes"] * (e["written_gb"] + e["retention"] * e["daily_change_gb"])
    copied = e["volumes"] * e["daily_change_gb"] * 30
    # Each day one snapshot a volume expires; in the bin it keeps the blocks only it held
    # (about a day's change) for the rule's days more, in each region the stack runs in.
    binned = 2 * e["volumes"] * e["daily_change_gb"] * recycle_bin_days()
    drills = round(e["volumes"] * 30 / 7)  # each volume once a week (copies: as many again)
    drill_gb_months = 2 * drills * e["size_gb"] * DRILL_S / (30 * 86400)
    backlog_s = max(0, e["volumes"] - 20) / 20 * COPY_MIN * 60
    stays_s = backlog_s * STAY_S / (15 * 60)  # the part of the backlog's time sweeps stay
    runs_s = sum(RUN_S[j] * RUNS_A_DAY[j] for j in ("copier", "manager"))
    runs_s += RUN_S["creator"] + (RUNS_A_DAY["creator"] - 1) * IDLE_S
    gb_s = (runs_s + stays_s) * MEMORY_GB * 30
    requests = sum(RUNS_A_DAY.values()) * 30
    logs_gb = LOG_BYTES_A_DAY * 30 / 1e9
    return [
        ("snapshot storage, this region", f"{stored:,} GB", stored * p["snapshot"]),
        ("snapshot storage, the copies' region", f"{stored:,} GB", stored * p["snapshot"]),
        ("copies' transfer between regions", f"{copied:,} GB", copied * p["transfer"]),
        (
            f"Recycle Bin ({recycle_bin_days()} days, {recycle_bin_scope()}), both regions",
            f"{binned:,} GB",
            binned * p["snapshot"],
        ),
        (
            f"restore drills (weekly, {DRILL_S} s each), both regions",
            f"{2 * drills:,} drills",
            drill_gb_months * p["gp3"],
        ),
        (
            "CloudWatch metrics (the summary lines)",
            f"{custom_metrics()} metrics",
            custom_metrics() * p["metric"],
        ),
        ("CloudWatch alarms", f"{alarm_metrics()} alarm metrics", alarm_metrics() * p["alarm"]),
        ("Lambda duration", f"{gb_s:,.0f} GB-s", gb_s * p["lambda"]),
        ("Lambda requests", f"{requests:,}", requests / 1e6 * p["requests"]),
        ("log ingestion", f"{logs_gb:.3f} GB", logs_gb * p["logs"]),
    ]


def table():
    lines = ["| item | a month | USD |", "|---|---|---|"]
    total = 0.0
    for item, amount, usd in rows():
        total += usd
        lines.append(f"| {item} | {amount} | {usd:,.2f} |")
    lines.append(f"| **total** | | **{total:,.2f}** |")
    return "\n".join(lines)


# The archive tier's worked example (docs/cost-and-archive.md): one volume of 100 GB
# written, 3% of its blocks changed a day, twelve monthly snapshots kept, 30 days apart.
# In the standard tier a monthly is billed for the blocks no later kept snapshot shares: once
# the dailies after it expire, those overwritten before the next monthly. Archived, it is a
# full copy, and only those same blocks leave the standard tier.
ARCHIVE = {"written_gb": 100, "daily_change": 0.03, "monthlies": 12, "days_apart": 30}


def archive_rows():
    """(case, GB a monthly holds alone in the standard tier, standard USD a month, archive
    USD a month) for the twelve monthlies: changes spread over the volume, and changes
    that land on the same few blocks each day (a log, a database's hot pages)."""
    a, p = ARCHIVE, {k: v[0] for k, v in PRICES.items()}
    spread = a["written_gb"] * (1 - (1 - a["daily_change"]) ** a["days_apart"])
    same = a["written_gb"] * a["daily_change"]
    full = a["monthlies"] * a["written_gb"] * p["archive"]
    return [
        (case, gb, a["monthlies"] * gb * p["snapshot"], full)
        for case, gb in (
            ("changes spread over the volume", spread),
            ("the same blocks each day", same),
        )
    ]


def archive_table():
    head = "| case | a monthly alone, standard | 12 monthlies, standard | 12 monthlies, archived |"
    lines = [head + " saved a month |", "|---|---|---|---|---|"]
    for case, gb, standard, archived in archive_rows():
        saved = standard - archived
        saved = f"${saved:.2f}" if saved >= 0 else f"none: it costs ${-saved:.2f} more"
        usd = f"${standard:.2f} | ${archived:.2f} | {saved}"
        lines.append(f"| {case} | {gb:.1f} GB | {usd} |")
    return "\n".join(lines)


def main():
    e = EXAMPLE
    print(
        f"{e['volumes']} volumes of {e['size_gb']} GB with {e['written_gb']} GB written, "
        f"{e['daily_change_gb']} GB "
        f"changed a day, a snapshot a day kept {e['retention']} days, copied to one other "
        f"region; prices of {READ_ON}:\n"
    )
    print(table())
    if recycle_bin_scope() == "Region-level":
        print(
            f"\nThe Recycle Bin row counts the snapshots the manager expires. A Region-level "
            f"rule also keeps every other EBS snapshot deleted in the region (by people, DLM, "
            f"AWS Backup) for {recycle_bin_days()} days, billed as snapshot storage."
        )
    once = e["volumes"] * e["written_gb"]
    print(f"\nOnce, the first full copy: {once:,} GB, ${once * PRICES['transfer'][0]:,.2f}.\n")
    worst = 96 * STAY_S * MEMORY_GB * PRICES["lambda"][0]
    print(
        f"At most, with copies waiting all day, the copier's stays take {96 * STAY_S:,} "
        f"Lambda-seconds a day: ${worst:.2f} a day at {MEMORY_GB * 1024:.0f} MB.\n"
    )
    a = ARCHIVE
    print(
        f"The archive tier: a volume of {a['written_gb']} GB written, {a['daily_change']:.0%} "
        f"of its blocks changed a day, {a['monthlies']} monthly snapshots kept:\n"
    )
    print(archive_table() + "\n")
    for name, (usd, unit, source) in PRICES.items():
        shown = f"{usd:.10f}".rstrip("0").rstrip(".")
        print(f"- {name}: ${shown} per {unit} ({source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
