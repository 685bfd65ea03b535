"""AWS calls: clients and their retries, pages, batches, error codes, creates made once."""

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import boto3
import botocore
from botocore.config import Config
from botocore.exceptions import ClientError

from ebs_snapshots.common.budget import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    RETRIES,
    STOP_MARGIN_S,
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
SEND_TRIES, FIND_TRIES, FIND_WAIT_S = 3, 3, 5
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
    for operation in NOT_IDEMPOTENT if service == "ec2" else ():
        client.meta.events.register_first(f"needs-retry.ec2.{operation}", answer_lost)
    if budget:
        budget.guard(client)
    if pacer:  # registered last, so it runs first: wait for a token, then check the time
        pacer.guard(client)
    return client


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


class Lookup:
    """What a NOT_IDEMPOTENT call may have made: ``find(final)`` gives the response the call
    would have given, from the tags it sets (None when nothing is found; ``final``, at the
    last look, may settle for a part). ``lost`` once an answer was lost (or a hand-off was
    in doubt): every later send of the call looks first, retries of a busy volume included."""

    def __init__(
        self,
        find: Callable[[bool], dict[str, Any] | None],
        budget: Budget | None = None,
        lost: bool = False,
    ) -> None:
        self.find, self.budget, self.lost = find, budget, lost

    def look(self) -> dict[str, Any] | None:
        """Listings are eventually consistent: FIND_TRIES looks, FIND_WAIT_S apart."""
        for looks in range(1, FIND_TRIES + 1):
            found = self.find(looks == FIND_TRIES)
            if found is not None or looks == FIND_TRIES:
                return found
            if self.budget and self.budget.left() - FIND_WAIT_S < STOP_MARGIN_S:
                raise OutOfTime("no time left to look for what a lost answer made")
            time.sleep(FIND_WAIT_S)
        return None


def made_once(
    call: Callable[..., dict[str, Any]], params: dict[str, Any], lookup: Lookup
) -> dict[str, Any]:
    """call(**params), one of NOT_IDEMPOTENT. Once an answer was lost after EC2 may have
    carried the call out, what it made is looked for (lookup) before it is sent again, up to
    SEND_TRIES sends in all: a second snapshot or copy costs money and a copy slot."""
    error: Exception | None = None
    for _ in range(SEND_TRIES):
        found = lookup.look() if lookup.lost else None
        if found is not None:
            return found
        try:
            return call(**params)
        except AnswerLost as lost:
            lookup.lost, error = True, lost.error
    found = lookup.look()
    if found is None:
        assert error is not None  # every send lost its answer
        raise error
    return found


def tagged(ec2: Client, tags: Mapping[str, str], *filters: dict[str, Any]) -> list[dict[str, Any]]:
    """This account's snapshots carrying all of ``tags`` (and passing ``filters``)."""
    wanted = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
    return list(
        paginate(
            ec2, "describe_snapshots", "Snapshots", OwnerIds=["self"], Filters=[*wanted, *filters]
        )
    )


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
    exc = exc.error if isinstance(exc, AnswerLost) else exc
    return type(exc).__module__.split(".")[0] == "botocore"


def describe_error(exc: BaseException) -> str:
    """One line naming what failed: AWS's error code and message; botocore's failure, whose
    message names the endpoint (EndpointConnectionError, ReadTimeoutError ...); or a bug."""
    if isinstance(exc, AnswerLost):
        return describe_error(exc.error)
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {exc}"
    if isinstance(exc, OutOfTime):
        return f"out of Lambda time: {exc}"
    kind = type(exc).__name__ if from_botocore(exc) else f"unexpected {type(exc).__name__}"
    return f"{kind}: {exc}"
