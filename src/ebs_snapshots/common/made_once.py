"""Creates made once: before a create whose answer was lost is sent again, look for what it made."""

import time
from collections.abc import Callable, Mapping
from typing import Any

from ebs_snapshots.common.aws import AnswerLost, paginate
from ebs_snapshots.common.budget import STOP_MARGIN_S, Budget, Client, OutOfTime

SEND_TRIES, FIND_TRIES, FIND_WAIT_S = 3, 3, 5


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
