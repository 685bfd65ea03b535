"""The tag contract: tag names, yes/no words, parsers of tag values, and the dates tags imply."""

import math
import os
import re
from collections.abc import Collection, Mapping
from datetime import date, timedelta
from typing import Any

TAG_BACKUP = "Backup"
TAG_RETENTION = "Retention"
TAG_COPY_DEST = "Copy_Dest"
TAG_NAME = "Name"
TAG_TYPE = "Type"
TAG_DELETE_ON = "DeleteOn"
TAG_KEEP_FOREVER = "KeepForever"
TAG_SOURCE_SNAPSHOT = "Source_SnapshotId"
TAG_SOURCE_REGION = "Source_Region"
TAG_SOURCE_VOLUME = "Source_VolumeId"  # on copies: the volume their primary was taken of
TAG_COPY_RETENTION = "Copy_Retention"  # days to keep copies, from the primary's creation
TAG_COPY_KMS_KEY = "Copy_KmsKeyId"  # the KMS key to encrypt copies with
TAG_RETENTION_TIER = "Retention_Tier"  # which tier chose a snapshot's DeleteOn
# Archive=Yes on a snapshot (the creator's monthly or yearly primaries, as the instance's
# Archive tag asks; the copier carries it to copies): the manager moves it to the archive tier.
TAG_ARCHIVE = "Archive"
# Vault copies (issue 17): one copy of each primary owned by another account, made through
# the role VAULT_ROLE_NAME there, which can create copies but never delete or retag them.
TAG_VAULT_ACCOUNT, TAG_VAULT_REGION = "Vault_Account", "Vault_Region"
TAG_VAULT_RETENTION = "Vault_Retention"  # days to keep vault copies, from the primary's creation
TAG_SOURCE_ACCOUNT = "Source_Account"  # on vault copies: the account of their primary
TAG_VAULT_STAGING = "Vault_StagingOf"  # on a staging copy: the primary it stands in for
# Copy_State on a primary that asks for copies: "pending" from its creation (the creator)
# until the copier has nothing left to do for it, then "done" (the copier). The copier's
# sweeps read only the pending ones: their cost follows the copies to make, not the fleet.
TAG_COPY_STATE, COPY_PENDING, COPY_DONE = "Copy_State", "pending", "done"
AUTOMATED = "Automated"
MAX_TAG_VALUE = 256  # EC2's limit on a tag value
MAX_RETENTION_DAYS = 36500  # beyond this, date arithmetic overflows long before it matters
# A copy may lag its primary this long (the copier's sweeps, 20 copies at a time
# into a region) before the copier and the manager's coverage check call it late.
COPY_LAG_ENV, COPY_LAG_HOURS = "COPY_MAX_LAG_HOURS", 24
# A KMS key as CopySnapshot takes it: key id, multi-Region key id, alias, key or alias ARN.
KMS_KEY = re.compile(
    r"(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:)?"
    r"(key/)?([0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}|mrk-[0-9a-f]{32})"
    r"|(arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:)?alias/[A-Za-z0-9/_-]{1,250}"
)
DEFAULT_RETENTION_DAYS = 7
TRUE_WORDS = frozenset({"yes", "true", "1", "on"})
FALSE_WORDS = frozenset({"no", "false", "0", "off"})
# Instance states whose volumes are backed up (a stopped instance's volumes hold data too).
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def parse_bool(value: object) -> bool | None:
    """True or False for a recognised word (any case, or a JSON bool); None for anything else."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return True if word in TRUE_WORDS else False if word in FALSE_WORDS else None


def parse_date(value: object) -> date | None:
    """A strict YYYY-MM-DD date, or None: never guess at other formats."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def parse_count(value: str, what: str, cap: int) -> tuple[int | None, str | None]:
    """(whole number, None) for a tag value of 1 or more; (None, warning) for anything
    else; (cap, warning) above ``cap``."""
    text = value.strip()
    if not re.fullmatch(r"[0-9]+", text) or int(text) < 1:
        return None, f"{what} {value!r} is not a whole number, 1 or more"
    if int(text) > cap:
        return cap, f"{what} {value!r} is too large; using {cap}"
    return int(text), None


def count_or(value: str | None, what: str, cap: int, default: int) -> tuple[int, str | None]:
    """(whole number, warning or None) for a setting of 1 or more, ``default`` when it is
    absent (None) or unreadable (with a warning); above ``cap``, ``cap`` (a warning)."""
    if value is None:
        return default, None
    number, problem = parse_count(value, what, cap)
    if number is None:
        return default, f"{problem}; using {default}"
    return number, problem


def env_hours(name: str, default: float) -> tuple[timedelta, str | None]:
    """(timedelta, warning or None) for a setting in hours from the environment: a positive
    number up to a year; anything else warns and uses the default."""
    value = os.environ.get(name)
    if value is None or not value.strip():
        return timedelta(hours=default), None
    try:
        hours = float(value)
    except ValueError:
        hours = -1.0
    if not (math.isfinite(hours) and 0 < hours <= 24 * 366):
        return timedelta(
            hours=default
        ), f"{name} {value!r} is not a number of hours; using {default}"
    return timedelta(hours=hours), None


def tag_map(resource: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in resource.get("Tags") or []}


def backup_enabled(tags: Mapping[str, str]) -> bool | None:
    """An instance's Backup tag: True, False, or None when it cannot be read."""
    return parse_bool(tags.get(TAG_BACKUP, "no"))


def opted_out(value: str | None) -> bool:
    """A volume's own Backup tag leaves it out only when it clearly says no. An unreadable
    value keeps it in: a backup too many costs little, one too few can cost the data."""
    return value is not None and parse_bool(value) is False


def keep_forever_key(tags: Mapping[str, str]) -> str | None:
    """The tag key that keeps a snapshot forever, or None. KeepForever, or a key that is
    KeepForever but for case or surrounding spaces (a typo must never cost a backup), keeps
    it unless its value is exactly a no-word, any case: as the IAM policy's Deny reads it."""
    wanted = TAG_KEEP_FOREVER.lower()
    for key in sorted(tags, key=lambda k: k != TAG_KEEP_FOREVER):  # the exact key first
        if key.strip().lower() == wanted and str(tags[key]).lower() not in FALSE_WORDS:
            return key
    return None


def is_kept_forever(tags: Mapping[str, str]) -> bool:
    return keep_forever_key(tags) is not None


def clean_regions(
    value: str, enabled: Collection[str], home: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """Split a Copy_Dest value; return (regions to copy to, [(entry, why dropped)])."""
    keep, dropped = [], []
    for entry in re.split(r"[\s,]+", value.strip()):
        if not entry or entry in keep:
            continue
        if entry == home:
            dropped.append((entry, "is this region"))
        elif entry not in enabled:
            dropped.append((entry, "is not an enabled region of this account"))
        else:
            keep.append(entry)
    return keep, dropped


def copy_delete_on(
    tags: Mapping[str, str], created: date, retention_key: str
) -> tuple[date | None, str | None]:
    """(the copies' own DeleteOn, or None for their primary's; warning or None), from the
    primary's ``retention_key`` tag (Copy_Retention for regions, Vault_Retention for
    vaults): that many days from the primary's creation date."""
    if retention_key not in tags:
        return None, None
    days, problem = parse_count(tags[retention_key], retention_key, MAX_RETENTION_DAYS)
    if days is None:
        return None, f"{problem}; copies keep the primary's DeleteOn"
    return created + timedelta(days=days), problem


def copy_until(tags: Mapping[str, str], created: date, retention_key: str) -> date | None:
    """The DeleteOn the copier gives a primary's copies: their own (copy_delete_on), else
    the primary's. None when that cannot be read: no copy is made. The copier makes no copy
    once this date has come; the manager's archive stops waiting for one."""
    delete_on = parse_date(tags.get(TAG_DELETE_ON))
    if delete_on is None:
        return None
    return copy_delete_on(tags, created, retention_key)[0] or delete_on
