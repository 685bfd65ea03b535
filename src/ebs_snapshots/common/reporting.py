"""Reporting: JSON log lines, the summary, its metrics (EMF) and the report."""

import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from botocore.exceptions import ClientError

from ebs_snapshots.common.aws import describe_error, error_code, from_botocore
from ebs_snapshots.common.budget import OutOfTime
from ebs_snapshots.common.tags import MAX_TAG_VALUE

# Lambda's level names (AWS_LAMBDA_LOG_LEVEL), and Python's as aliases; OFF: nothing at all.
LOG_LEVELS = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "WARN": 30, "WARNING": 30, "ERROR": 40}
LOG_LEVELS |= {"FATAL": 50, "CRITICAL": 50, "OFF": 100}
_log_lock = threading.Lock()
# The run's last log line counts these (0 when none), then any other count it made.
SUMMARY_COUNTS: tuple[str, ...] = ("created", "copied", "deferred", "deleted", "kept", "skipped")
SUMMARY_COUNTS += ("warnings", "failures")
# CloudWatch Embedded Metric Format: the summary line is also these metrics, dimensions job
# and region, at no API cost. Metric: (the count it reports, jobs that always report it;
# other jobs report it only when they counted it).
METRIC_NAMESPACE = "EBSSnapshots"
METRICS = {
    "SnapshotsCreated": ("created", ("creator",)),
    "SnapshotsCopied": ("copied", ("copier",)),
    "CopiesDeferred": ("deferred", ("copier",)),
    "SnapshotsDeleted": ("deleted", ("manager",)),
    "Warnings": ("warnings", ("creator", "copier", "manager")),
    # Instances and snapshots with a tag the jobs cannot honour (a typo in Copy_Dest, say):
    # each named in the summary's tag_errors with the tag and its value.
    "TagErrors": ("tag_errors", ("creator", "copier", "manager")),
    "Failures": ("failures", ("creator", "copier", "manager")),
    "UnprotectedVolumes": ("unprotected", ()),  # the manager's check; the copier's lag
    "StoppedEarly": ("stopped_early", ("manager",)),
    "LastBackupsKept": ("last_kept", ("manager",)),
    "ExpiredCopiesLeft": ("expired_copies_left", ()),  # only when the manager's check ran
    "SnapshotsLocked": ("locked", ()),  # the creator's and the copier's snapshot locks
    "LocksMissing": ("lock_missing", ("manager",)),  # Lock snapshots still unlocked after a day
    "RestoreDrillsPassed": ("drills_passed", ("manager",)),
    "RestoreDrillsFailed": ("drills_failed", ("manager",)),
    "RestoreSeconds": ("restore_seconds", ()),  # the slowest drill's time to "available"
    "SnapshotsArchived": ("archived", ("manager",)),  # in the archive tier now
    "SnapshotsRestoring": ("restoring", ("manager",)),  # on their way back from it
    # The creator's schedule (hourly runs): the tagged fleet against EC2's limits.
    "SnapshotCallsPeakHour": ("peak_hour_calls", ()),  # CreateSnapshot(s) calls due in one hour
    "SnapshotsProjected": ("projected_snapshots", ()),  # the retention's count, once a day
    "FleetOverLimits": ("over_limits", ()),  # limits the fleet's tags would pass: 0, 1 or 2
}
METRIC_UNITS = {"RestoreSeconds": "Seconds"}  # the others count things
DONE = {
    "create": "created",
    "copy": "copied",
    "delete": "deleted",
    "tag": "tagged",
    "lock": "locked",
    "drill": "drilled",
    "archive": "sent_to_archive",
    "restore": "restore_started",
    "share": "shared",
    "unshare": "unshared",
}
REPORT_ORDER = (
    "created",
    "would_create",
    "copied",
    "would_copy",
    "tagged",
    "would_tag",
    "locked",
    "would_lock",
    "drilled",
    "would_drill",
    "sent_to_archive",
    "would_archive",
    "restore_started",
    "would_restore",
    "restored",
    "shared",
    "would_share",
    "unshared",
    "would_unshare",
    "deleted",
    "would_delete",
    "deferred",
    "handed_off",
    "stopped_early",
    "permitted",
    "skipped",
    "unprotected",
    "not_yet_due",
    "tag_errors",
    "warnings",
    "failures",
)


class JobFailed(Exception):
    """Some items failed; all others were done. ``summary`` is the full result. The message
    names every failed item, those with the same error together."""

    def __init__(self, summary: dict[str, Any]) -> None:
        self.summary = summary
        by_error: dict[str, list[str]] = {}
        for failure in summary["failures"]:
            by_error.setdefault(failure["error"], []).append(failure["id"])
        names = "; ".join(f"{', '.join(ids)}: {error}" for error, ids in by_error.items())
        super().__init__(
            f"{summary['job']} in {summary['region']}: {len(summary['failures'])} failed: {names}"
        )


def log(level: str, job: str, region: str, action: str, /, **fields: Any) -> None:
    """One JSON object per line on stdout, where Lambda and CloudWatch's metric extraction
    read it. LOG_LEVEL, else AWS_LAMBDA_LOG_LEVEL, sets the threshold (default INFO)."""
    wanted = os.environ.get("LOG_LEVEL") or os.environ.get("AWS_LAMBDA_LOG_LEVEL") or "INFO"
    if LOG_LEVELS.get(level, 20) < LOG_LEVELS.get(wanted.strip().upper(), 20):
        return
    line = {"level": level, "job": job, "region": region, "action": action, **fields}
    text = json.dumps(line, default=str) + "\n"
    with _log_lock:  # workers log at once; print() would write text and newline apart
        sys.stdout.write(text)
        sys.stdout.flush()


def metrics(job: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """The summary line's Embedded Metric Format fields: CloudWatch makes them metrics."""
    values = {
        name: counts.get(count, 0)
        for name, (count, jobs) in METRICS.items()
        if job in jobs or count in counts
    }
    directive = {
        "Namespace": METRIC_NAMESPACE,
        "Dimensions": [["job", "region"]],
        "Metrics": [{"Name": name, "Unit": METRIC_UNITS.get(name, "Count")} for name in values],
    }
    return {
        "_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": [directive]}
    } | values


class Summary:
    """What a run did, item by item: created/copied/deleted/tagged, or in a dry run
    would_create/would_copy/would_delete/would_tag; skipped, warnings and failures."""

    def __init__(
        self, job: str, region: str, today: date, dry_run: bool, event_id: str | None = None
    ) -> None:
        self.job, self.region, self.dry_run = job, region, dry_run
        self.started = time.monotonic()
        self.probed: set[tuple[str, str]] = set()
        self._lock = threading.Lock()  # items arrive from several threads
        self.data: dict[str, Any] = {
            "job": job,
            "region": region,
            "date": today.isoformat(),
            "dry_run": dry_run,
            "event_id": event_id,
            "counts": {},
            "skipped": [],
            "warnings": [],
            "failures": [],
        }

    def add(self, kind: str, level: str = "INFO", /, **item: Any) -> None:
        with self._lock:
            self.data.setdefault(kind, []).append(item)
            self.data["counts"][kind] = self.data["counts"].get(kind, 0) + 1
        log(level, self.job, self.region, kind, **item)

    def did(self, action: str, **item: Any) -> None:
        self.add(f"would_{action}" if self.dry_run else DONE[action], **item)

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.data["counts"][kind] = self.data["counts"].get(kind, 0) + n

    def skip(self, id: str, reason: str, **item: Any) -> None:
        self.add("skipped", id=id, reason=reason, **item)

    def warn(self, id: str, reason: str, **item: Any) -> None:
        self.add("warnings", "WARN", id=id, reason=reason, **item)

    def tag_error(self, id: str, tag: str, value: object, reason: str, **item: Any) -> None:
        """A tag the jobs cannot honour (a typo in Copy_Dest, a key of another account): a
        warning that names the tag and its value, and the resource listed in tag_errors,
        whose count of distinct ids is the TagErrors metric (and its alarm)."""
        value = str(value)[:MAX_TAG_VALUE] if value is not None else None
        self.warn(id, reason, tag=tag, value=value, **item)
        with self._lock:
            errors = self.data.setdefault("tag_errors", [])
            errors.append({"id": id, "tag": tag, "value": value, **item})
            self.data["counts"]["tag_errors"] = len({error["id"] for error in errors})

    def fail(self, id: str, error: str, **item: Any) -> None:
        self.add("failures", "ERROR", id=id, error=error, **item)

    def error(self, id: str, exc: BaseException, what: str | None = None, **item: Any) -> None:
        """A failure from an exception, in one line; for a bug of ours, its traceback is
        logged too (not in the summary), so that it can be fixed."""
        text = describe_error(exc)
        self.fail(id, f"{what}: {text}" if what else text, **item)
        if not from_botocore(exc) and not isinstance(exc, OutOfTime):
            where = "".join(traceback.format_exception(exc)[-4:])
            log("ERROR", self.job, self.region, "traceback", id=id, traceback=where)

    def probe(self, action: str, scope: str, call: Callable[..., object], **params: Any) -> None:
        """Dry run: ask AWS once per action and scope whether the real call would be allowed."""
        with self._lock:
            if (action, scope) in self.probed:
                return
            self.probed.add((action, scope))
        try:
            call(DryRun=True, **params)
        except ClientError as exc:
            if error_code(exc) != "DryRunOperation":
                self.fail(scope, f"{action} would be refused: {error_code(exc)}: {exc}")
                return
        self.add("permitted", permission=action, id=scope)

    def finish(self) -> None:
        """The run's last log line: its counts and duration and, unless it was a dry run,
        the same counts as metrics. Its level is the run's worst."""
        counts = self.data["counts"]
        line = {kind: counts.get(kind, 0) for kind in SUMMARY_COUNTS} | counts
        line |= {"event_id": self.data["event_id"], "dry_run": self.dry_run}
        line["duration_s"] = round(time.monotonic() - self.started, 3)
        if not self.dry_run:
            line |= metrics(self.job, counts)
        level = "WARN" if counts.get("warnings") or counts.get("unprotected") else "INFO"
        level = "ERROR" if counts.get("failures") else level
        log(level, self.job, self.region, "summary", **line)

    def result(self) -> dict[str, Any]:
        """The summary, once the summary line is written; raises JobFailed after the fact
        if any item failed."""
        self.finish()
        if self.data["failures"]:
            raise JobFailed(self.data)
        return self.data


def report(summary: Mapping[str, Any]) -> str:
    """The summary as short aligned lines for a person: one small table per kind of item."""
    dry = " (dry run: nothing was changed)" if summary["dry_run"] else ""
    event = f", event {summary['event_id']}" if summary.get("event_id") else ""
    lines = [f"{summary['job']} in {summary['region']} on {summary['date']}{event}{dry}"]
    for kind in REPORT_ORDER:
        items = summary.get(kind) or []
        if not items:
            continue
        columns = list(dict.fromkeys(key for item in items for key in item))
        rows = [[c.replace("_", " ") for c in columns]]
        rows += [[cell(item.get(c, "")) for c in columns] for item in items]
        widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
        lines.append(f"{kind.replace('_', ' ')} ({len(items)}):")
        lines += [
            "  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
    return "\n".join(lines + totals(summary["counts"]))


def cell(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


# The report's totals in words, one line per thing counted: {its label: {count: its words,
# or (for one, for several)}}, "{n}" the number. A volume is "checked" by the manager's
# coverage check once attached for COVERAGE_MAX_AGE_HOURS; before that, "not yet due".
# restore_seconds is no count (the slowest drill's time); drilled is drills_passed again.
TOTALS: dict[str, dict[str, str | tuple[str, str]]] = {
    "snapshots": {
        "created": "{n} created",
        "would_create": "{n} would be created",
        "deleted": "{n} deleted",
        "would_delete": "{n} would be deleted",
        "kept": ("{n} kept until its DeleteOn", "{n} kept until their DeleteOn"),
        "kept_forever": "{n} kept forever (KeepForever)",
        "last_kept": (
            "{n} kept past its DeleteOn (a volume's newest)",
            "{n} kept past their DeleteOn (each a volume's newest)",
        ),
        "locked": "{n} locked",
        "would_lock": "{n} would be locked",
        "lock_missing": "{n} tagged Lock, still unlocked a day on",
        "shared": "{n} shared with a vault account",
        "would_share": "{n} would be shared with a vault account",
        "unshared": "{n} no longer shared",
        "would_unshare": "{n} would be unshared",
    },
    "copies": {
        "copied": "{n} started",
        "would_copy": "{n} would be started",
        "deferred": "{n} waiting for a copy slot",
        "tagged": (
            "{n} tagged KeepForever, as its source is",
            "{n} tagged KeepForever, as their sources are",
        ),
        "would_tag": "{n} would be tagged KeepForever",
        "expired_copies_left": (
            "{n} left past its DeleteOn in a region no manager runs in",
            "{n} left past their DeleteOn in regions no manager runs in",
        ),
    },
    "volumes": {},  # volume_totals
    "schedule": {
        "peak_hour_calls": (
            "{n} snapshot call due in its busiest hour",
            "{n} snapshot calls due in its busiest hour",
        ),
        "projected_snapshots": (
            "{n} snapshot kept once the retention fills",
            "{n} snapshots kept once the retention fills",
        ),
        "over_limits": ("{n} EC2 limit the tags would pass", "{n} EC2 limits the tags would pass"),
    },
    "archive tier": {
        "sent_to_archive": ("{n} snapshot sent to it", "{n} snapshots sent to it"),
        "would_archive": ("{n} snapshot would be sent to it", "{n} snapshots would be sent to it"),
        "archived": ("{n} snapshot in it", "{n} snapshots in it"),
        "restore_started": ("{n} restore from it started", "{n} restores from it started"),
        "would_restore": ("{n} restore would be started", "{n} restores would be started"),
        "restoring": ("{n} snapshot on its way back", "{n} snapshots on their way back"),
        "restored": ("{n} snapshot back from it", "{n} snapshots back from it"),
    },
    "restore drills": {
        "drills_passed": "{n} passed",
        "drills_failed": "{n} failed",
        "would_drill": "{n} would be run",
        "restore_seconds": "the slowest {n} s to an available volume",
        "drills_overdue": "{n} put off a week (over the cap a run)",
        "drill_volumes_deleted": (
            "{n} leftover drill volume deleted",
            "{n} leftover drill volumes deleted",
        ),
    },
    "this run": {
        "stopped_early": "stopped early: the next run does the rest",
        "handed_off": "handed the rest over to a new invocation",
        "permitted": (
            "{n} kind of action AWS would permit (DryRun)",
            "{n} kinds of action AWS would permit (DryRun)",
        ),
        "skipped": ("{n} item skipped", "{n} items skipped"),
        "tag_errors": (
            "{n} resource with a tag it cannot honour",
            "{n} resources with a tag it cannot honour",
        ),
        "warnings": ("{n} warning", "{n} warnings"),
        "failures": ("{n} failure", "{n} failures"),
    },
}
SAID_OTHERWISE = ("drilled", "protected", "unprotected", "not_yet_due")


def totals(counts: Mapping[str, int]) -> list[str]:
    """The report's last lines: each count in words, under what it counts (a count of 0,
    a metric's, is left out; the volumes checked are said even when 0)."""
    lines = []
    for label, words in TOTALS.items():
        said = [in_words(n, words[kind]) for kind in words if (n := counts.get(kind))]
        said = [volume_totals(counts)] if label == "volumes" else said
        lines += [f"  {label}: {', '.join(said)}"] if any(said) else []
    named = {kind for words in TOTALS.values() for kind in words} | set(SAID_OTHERWISE)
    rest = [f"{n} {kind.replace('_', ' ')}" for kind, n in counts.items() if kind not in named]
    lines += [f"  other: {', '.join(rest)}"] if rest else []
    return ["totals:", *lines] if lines else ["totals: nothing to do"]


def in_words(n: int, words: str | tuple[str, str]) -> str:
    one, many = (words, words) if isinstance(words, str) else words
    return (one if n == 1 else many).format(n=n)


def volume_totals(counts: Mapping[str, int]) -> str:
    """The coverage counts in words: volumes checked (protected or unprotected), and those
    not yet due for a check (attached too recently: each has its "expected by" above)."""
    said = []
    if "protected" in counts:  # the manager's check: protected is checked, not unprotected
        checked = counts["protected"] + counts.get("unprotected", 0)
        detail = f": {counts['protected']} protected, {counts.get('unprotected', 0)} unprotected"
        said.append(f"{checked} checked{detail if checked else ''}")
    elif "unprotected" in counts:  # the copier's: volumes whose copies lag
        said.append(f"{counts['unprotected']} unprotected")
    if counts.get("not_yet_due"):
        said.append(f"{counts['not_yet_due']} not yet due for a check (see expected by)")
    return ", ".join(said)
