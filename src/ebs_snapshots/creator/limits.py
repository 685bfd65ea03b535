"""EC2's limits the tagged fleet is planned against: the snapshot calls its busiest hour
asks for (EC2's CreateSnapshot bucket), and the snapshots its retention keeps (the
region's snapshot quota). Read from the instance listing a run makes anyway."""

import math

from botocore.exceptions import BotoCoreError, ClientError

from ebs_snapshots.common.aws import describe_error
from ebs_snapshots.common.reporting import log
from ebs_snapshots.common.runtime import BUCKETS, PACE_SHARE
from ebs_snapshots.common.tags import (
    MAX_RETENTION_DAYS,
    TAG_RETENTION,
    count_or,
    parse_count,
    tag_map,
)
from ebs_snapshots.creator.plan import TAG_CONSISTENCY, ebs_volumes, not_backed_up, parse_mode
from ebs_snapshots.creator.retention import TIERS, parse_retention
from ebs_snapshots.creator.schedule import DAILY, TAG_RETENTION_HOURLY, every_of

# EC2 refills the CreateSnapshot(s) bucket at 5 calls a second, per account and region (EC2
# developer guide, "Request throttling": docs.aws.amazon.com/ec2/latest/devguide/
# ec2-api-throttling.html). The jobs take 90% of it (PACE_SHARE): 16,200 calls an hour.
CALLS_PER_HOUR = int(BUCKETS["CreateSnapshot"][2] * PACE_SHARE * 3600)
# "Snapshots per Region": 100,000 by default, adjustable (EBS user guide, "Amazon EBS
# quotas": docs.aws.amazon.com/ebs/latest/userguide/ebs-resource-quotas.html). Service
# Quotas names it ebs / L-309BACF6; the documented default stands in when it cannot be read.
QUOTA_SERVICE, QUOTA_CODE, DEFAULT_SNAPSHOT_QUOTA = "ebs", "L-309BACF6", 100_000
QUOTA_SHARE = 0.9  # warned of at 90%: the account has other snapshots (AMIs, by hand)


def instance_asks(instance, daily_hour):
    """(snapshot calls due at each hour of the day, snapshots kept once the retention
    fills) of one instance, or None when it is not backed up. Every EBS volume counts (a
    volume's own Backup=No is not listed here): an upper bound."""
    tags, state = tag_map(instance), instance.get("State", {}).get("Name")
    if not_backed_up(instance.get("InstanceId"), tags, state):
        return None
    volumes = len(ebs_volumes(instance))
    every = every_of(instance)
    calls = volumes if parse_mode(tags.get(TAG_CONSISTENCY))[0] == "volume" else min(volumes, 1)
    by_hour = [calls if (hour - daily_hour) % every == 0 else 0 for hour in range(24)]
    return by_hour, volumes * kept_per_volume(tags, every)


def kept_per_volume(tags, every):
    """Snapshots a volume keeps once its retention fills: the dailies, each longer tier's
    count, and the snapshots between dailies that Retention_Hourly keeps."""
    days = parse_retention(tags.get(TAG_RETENTION))[0]
    kept = days
    for _, tag, cap in TIERS:
        if tag in tags:
            kept += parse_count(tags[tag], tag, cap)[0] or 0
    if every < DAILY:
        hours = count_or(
            tags.get(TAG_RETENTION_HOURLY), TAG_RETENTION_HOURLY, MAX_RETENTION_DAYS * 24, days * 24
        )[0]
        kept += math.ceil((DAILY // every - 1) * hours / DAILY)
    return kept


def check_fleet(instances, schedule, summary, read_quota):
    """Say, in a warning and the FleetOverLimits metric, when the tags ask for more than
    EC2 allows: more snapshot calls in one hour than the bucket refills (every run), or
    more snapshots kept than 90% of the region's quota (the daily run: one quota read)."""
    asks = [a for a in (instance_asks(i, schedule.daily_hour) for i in instances) if a]
    by_hour = [sum(calls[hour] for calls, _ in asks) for hour in range(24)]
    peak = max(by_hour)
    summary.count("peak_hour_calls", peak)
    over = 0
    if peak > CALLS_PER_HOUR:
        over += 1
        busiest = by_hour.index(peak)
        summary.warn(
            summary.region,
            f"the tags ask for {peak:,} snapshot calls at {busiest:02d}:00 UTC; EC2 refills "
            f"about {CALLS_PER_HOUR:,} an hour (5 a second, 90% of it ours): the rest waits "
            "for the next runs. Spread the load: a longer Backup_Every, or Consistency sets",
        )
    if schedule.hour.hour == schedule.daily_hour:
        over += over_quota(sum(kept for _, kept in asks), read_quota(), summary)
    summary.count("over_limits", over)


def over_quota(kept, quota, summary):
    """1, with a warning, when ``kept`` passes 90% of the snapshot quota; else 0."""
    summary.count("projected_snapshots", kept)
    if kept <= quota * QUOTA_SHARE:
        return 0
    summary.warn(
        summary.region,
        f"the tags' retention keeps about {kept:,} snapshots here, over 90% of the region's "
        f"quota of {quota:,} (Snapshots per Region): new snapshots would be refused. Ask "
        "for a higher quota (Service Quotas, ebs L-309BACF6) or keep fewer",
    )
    return 1


def snapshot_quota(client, summary):
    """The region's snapshot quota from Service Quotas, or the documented default when it
    cannot be read (no permission, an endpoint without it): a debug line says why."""
    try:
        answer = client().get_service_quota(ServiceCode=QUOTA_SERVICE, QuotaCode=QUOTA_CODE)
        return int(answer["Quota"]["Value"])
    except (ClientError, BotoCoreError, KeyError, TypeError, ValueError) as exc:
        why = describe_error(exc).splitlines()[0][:200]
        log("DEBUG", summary.job, summary.region, "quota_default", reason=why)
        return DEFAULT_SNAPSHOT_QUOTA
