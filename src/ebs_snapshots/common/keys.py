"""This account's id, and whose KMS keys a copy may use: this account's or those listed."""

import re
from collections.abc import Callable

from ebs_snapshots.common.aws import caller_account
from ebs_snapshots.common.budget import Budget, LambdaContext, OutOfTime
from ebs_snapshots.common.tags import KMS_KEY, TAG_COPY_KMS_KEY
from ebs_snapshots.common.vault import env_accounts

# The accounts, besides this one, whose KMS keys a Copy_KmsKeyId may name (template parameter
# CopyKmsKeyAccountIds): an organisation's central key account.
KMS_ACCOUNTS_ENV = "COPY_KMS_ACCOUNT_IDS"


def key_refusal(key: str, own: Callable[[], str | None]) -> str | None:
    """Why copies may not be encrypted under the KMS key ``key`` (a Copy_KmsKeyId), or None.
    A key of another account could be disabled by whoever holds it, leaving the copies
    unreadable: a key ARN must name this account (``own()``, asked only then) or one of
    COPY_KMS_ACCOUNT_IDS (template parameter CopyKmsKeyAccountIds, for a central key
    account). A key id or alias without an ARN is this account's."""
    if not KMS_KEY.fullmatch(key):
        return f"{TAG_COPY_KMS_KEY} {key!r} is not a KMS key id, alias or ARN"
    named = re.match(r"arn:aws[a-z-]*:kms:[a-z0-9-]+:([0-9]{12}):", key)
    if named is None or named[1] in env_accounts(KMS_ACCOUNTS_ENV):
        return None
    account = own()
    if named[1] == account:
        return None
    allowed = f"{KMS_ACCOUNTS_ENV} (template parameter CopyKmsKeyAccountIds)"
    this = "this one" if account else "this one (whose id could not be read)"
    return f"{TAG_COPY_KMS_KEY} {key!r} is a key of account {named[1]}, not {this} nor {allowed}"


def own_account(context: LambdaContext, region: str, budget: Budget | None = None) -> str | None:
    """This account's id: from the Lambda's own ARN (arn:aws:lambda:region:account:...),
    else sts:GetCallerIdentity (the command line); None when neither can tell, so that what
    needs it refuses (a key ARN) rather than fails (never the backup)."""
    arn = getattr(context, "invoked_function_arn", None) or ""
    if re.fullmatch(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:[0-9]{12}:.+", arn):
        return arn.split(":")[4]
    try:
        return caller_account(region, budget)
    except OutOfTime:
        raise
    except Exception:
        return None
