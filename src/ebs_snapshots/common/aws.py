"""AWS calls: clients and their retries, a lost answer, pages, batches, error codes."""

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeVar

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

from ebs_snapshots.common.budget import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    RETRIES,
    Budget,
    Client,
    OutOfTime,
)
from ebs_snapshots.common.tags import AUTOMATED, TAG_BACKUP, TAG_TYPE, tag_map

PAGE_SIZE = 1000  # the most EC2 returns per page; fewer calls against the Describe bucket
# Snapshot ids in one filter or one call (CreateTags takes up to 1000 resource ids; the EC2
# API reference recommends smaller batches). The copier's lookups and Copy_State marks, the
# manager's lookups of due copies' primaries and of archives under way.
LOOKUP_BATCH = 200
# EC2 carries these out at each request it receives: they take no ClientToken (EC2 API
# reference), so a request sent again after its answer was lost would make a second snapshot
# or copy. made_once looks for what such a request made before sending it again.
NOT_IDEMPOTENT = ("CreateSnapshot", "CreateSnapshots", "CopySnapshot")
Item = TypeVar("Item")  # in type hints: what a batch, or in_parallel's work, is made of


class Guard(Protocol):
    """What make_client has watch a client's calls: the run's Budget, its Pacer (runtime)."""

    def guard(self, client: Client) -> Client: ...


def make_client(
    service: str,
    region: str,
    budget: Budget | None = None,
    pacer: Guard | None = None,
    credentials: Mapping[str, str] | None = None,
) -> Client:
    """Created per run, never at import, so moto and AWS_ENDPOINT_URL apply. ``credentials``:
    another account's (a vault's), as boto3.client takes them."""
    config = Config(
        retries=dict(RETRIES),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        user_agent_extra="ebs-snapshot-lifecycle",
    )
    client = boto3.client(service, region_name=region, config=config, **(credentials or {}))
    FIRST_CONTACT.guard(client)
    for operation in NOT_IDEMPOTENT if service == "ec2" else ():
        client.meta.events.register_first(f"needs-retry.ec2.{operation}", answer_lost)
    if budget:
        budget.guard(client)
    if pacer:  # registered last, so it runs first: wait for a token, then check the time
        pacer.guard(client)
    return client


class Unreachable(BaseException):
    """AWS could not be reached at all: the command line's first attempt made no connection
    (refused, no route, no DNS name, a connect timeout, TLS). A BaseException, as
    KeyboardInterrupt is, so that no step turns it into one more warning: the run stops at
    once, with one failure, and the command line prints one line."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"AWS unreachable, nothing done: {describe_error(error)}")
        self.error = error


class FirstContact:
    """The command line's fail-fast, armed by cli for its one run: until AWS has answered an
    attempt (any answer, an error too), an attempt that cannot connect raises Unreachable
    instead of being retried (10 attempts with backoff: 40 s and more, then the same error
    from every step). Once AWS has answered, a connection error is a blip and is retried as
    ever. Lambda never arms it: there nobody waits, a network blip at the start of a
    scheduled run is worth the retries, and its summary line says the rest."""

    def __init__(self) -> None:
        self.armed = self.answered = False

    def arm(self, armed: bool) -> None:
        self.armed, self.answered = armed, False

    def guard(self, client: Client) -> Client:
        if self.armed:
            client.meta.events.register_first("needs-retry", self._after_attempt)
        return client

    def _after_attempt(
        self, response: object = None, caught_exception: Exception | None = None, **kw: Any
    ) -> None:
        if not self.armed:  # a client that outlived its command-line run: retried as ever
            return
        if response is not None:
            self.answered = True
        elif not self.answered and isinstance(
            caught_exception, botocore.exceptions.ConnectionError
        ):
            raise Unreachable(caught_exception)


FIRST_CONTACT = FirstContact()


class AnswerLost(Exception):
    """A call that EC2 may have carried out lost its answer (a read timeout, a dropped
    connection, a server error): botocore does not send it again; made_once looks first."""

    def __init__(self, error: Exception) -> None:
        super().__init__(describe_error(error))
        self.error = error


def answer_lost(
    caught_exception: Exception | None = None,
    response: tuple[Any, dict[str, Any]] | None = None,
    operation: Any = None,
    request_dict: dict[str, Any] | None = None,
    **kw: Any,
) -> None:
    """needs-retry handler of the NOT_IDEMPOTENT calls: stop botocore's retry of an attempt
    that may have reached EC2. A connection that could not be made (EndpointConnectionError,
    ConnectTimeoutError) or throttling (503) made nothing, nor does a dry run (DryRun=true):
    botocore retries those."""
    body = (request_dict or {}).get("body")
    if str(body.get("DryRun") if isinstance(body, dict) else body).lower() in (
        "true",
        "dryrun=true",
    ):
        return
    if caught_exception is not None:
        if not isinstance(caught_exception, botocore.exceptions.ConnectionError):
            raise AnswerLost(caught_exception)
        return
    if response is None:
        return
    status = response[0].status_code
    if status >= 500 and status != 503:
        raise AnswerLost(ClientError(response[1], operation.name))


def enabled_regions(ec2: Client) -> set[str]:
    """Regions enabled for this account (opt-in regions only once opted in)."""
    return {r["RegionName"] for r in ec2.describe_regions()["Regions"]}


def paginate(ec2: Client, operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    pages = ec2.get_paginator(operation).paginate(
        **params, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    for page in pages:
        yield from page[key]


def batches(items: list[Item]) -> list[list[Item]]:
    return [items[i : i + LOOKUP_BATCH] for i in range(0, len(items), LOOKUP_BATCH)]


def automated_snapshots(ec2: Client, *filters: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """This account's automated snapshots (and only those that pass ``filters``), streamed
    page by page."""
    return paginate(
        ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=[{"Name": "tag:" + TAG_TYPE, "Values": [AUTOMATED]}, *filters],
    )


def volume_backup_tags(ec2: Client) -> dict[str, str]:
    """{volume id: its own Backup tag}, for the volumes that have one: the opt-outs."""
    volumes = paginate(
        ec2, "describe_volumes", "Volumes", Filters=[{"Name": "tag-key", "Values": [TAG_BACKUP]}]
    )
    return {v["VolumeId"]: tag_map(v)[TAG_BACKUP] for v in volumes}


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "Unknown")


def from_botocore(exc: BaseException) -> bool:
    """AWS's answer or botocore's own failure (network, parsing), as opposed to a bug of ours."""
    exc = exc.error if isinstance(exc, AnswerLost | Unreachable) else exc
    return type(exc).__module__.split(".")[0] == "botocore"


def describe_error(exc: BaseException) -> str:
    """One line naming what failed: AWS's error code and message; botocore's failure, whose
    message names the endpoint (EndpointConnectionError, ReadTimeoutError ...); or a bug."""
    if isinstance(exc, AnswerLost | Unreachable):
        return describe_error(exc.error)
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc}"
    if isinstance(exc, OutOfTime):
        return f"out of Lambda time: {exc}"
    kind = type(exc).__name__ if from_botocore(exc) else f"unexpected {type(exc).__name__}"
    return f"{kind}: {exc}"


def caller_account(region: str, budget: Budget | None = None) -> str:
    """This account's id (sts:GetCallerIdentity, which needs no permission)."""
    return make_client("sts", region, budget).get_caller_identity()["Account"]
