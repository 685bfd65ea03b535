"""Vaults, as tags and settings ask: the vault account and regions, the accounts allowed."""

import os
import re
from collections.abc import Collection, Mapping

from ebs_snapshots.common.tags import (
    MAX_RETENTION_DAYS,
    TAG_VAULT_ACCOUNT,
    TAG_VAULT_REGION,
    TAG_VAULT_RETENTION,
    parse_count,
)

# The only accounts a Vault_Account tag may name (template parameter VaultAccountIds): anyone
# who can tag an instance could otherwise send its snapshots to an account of their own.
VAULT_ACCOUNTS_ENV = "VAULT_ACCOUNT_IDS"


def vault_target(
    tags: Mapping[str, str], enabled: Collection[str], home: str
) -> tuple[str | None, list[str], list[tuple[str, str]]]:
    """(vault account or None, its regions, tag errors) from the Vault_Account and
    Vault_Region tags of an instance or a primary. The account is 12 digits; regions are
    read as in Copy_Dest, this region included (the default); none left: this region."""
    if TAG_VAULT_ACCOUNT not in tags:
        return None, [], []
    account, shown = tags[TAG_VAULT_ACCOUNT].strip(), tags[TAG_VAULT_ACCOUNT]
    if not re.fullmatch(r"[0-9]{12}", account):
        why = f"{TAG_VAULT_ACCOUNT} {shown!r} is not a 12-digit account id; no vault copy"
        return None, [], [(TAG_VAULT_ACCOUNT, why)]
    if account not in vault_accounts():
        why = f"is not one of {VAULT_ACCOUNTS_ENV} (template parameter VaultAccountIds)"
        return (
            None,
            [],
            [(TAG_VAULT_ACCOUNT, f"{TAG_VAULT_ACCOUNT} {shown!r} {why}; no vault copy")],
        )
    regions: list[str] = []
    problems: list[tuple[str, str]] = []
    for entry in re.split(r"[\s,]+", tags.get(TAG_VAULT_REGION, "").strip()):
        if entry and entry not in regions and (entry in enabled or entry == home):
            regions.append(entry)
        elif entry and entry not in regions:
            reason = "is not an enabled region of this account; dropped"
            problems.append((TAG_VAULT_REGION, f"{TAG_VAULT_REGION} entry {entry!r} {reason}"))
    return account, regions or [home], problems


def vault_retention(tags: Mapping[str, str]) -> tuple[int | None, list[tuple[str, str]]]:
    """(Vault_Retention's days or None, tag errors): None, vault copies keep the DeleteOn."""
    if TAG_VAULT_RETENTION not in tags:
        return None, []
    value = tags[TAG_VAULT_RETENTION]
    days, problem = parse_count(value, TAG_VAULT_RETENTION, MAX_RETENTION_DAYS)
    if not problem:
        return days, []
    return days, [
        (TAG_VAULT_RETENTION, problem if days else f"{problem}; vault copies keep the DeleteOn")
    ]


def env_accounts(name: str) -> set[str]:
    """The 12-digit account ids in the environment variable ``name``, separated by commas
    or spaces (anything else in it is ignored)."""
    ids = re.split(r"[\s,]+", os.environ.get(name, "").strip())
    return {i for i in ids if re.fullmatch(r"[0-9]{12}", i)}


def vault_accounts() -> set[str]:
    """The vault accounts this stack may copy into: VAULT_ACCOUNT_IDS (template parameter
    VaultAccountIds; none: no vault copies at all)."""
    return env_accounts(VAULT_ACCOUNTS_ENV)
