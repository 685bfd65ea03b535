"""Lambda's time: the run's budget, how long one AWS attempt may take, when to stop."""

import time
from typing import Any

from botocore.retries import standard as botocore_retries

# Set explicitly: the boto3 in Lambda's runtime may be older and default to "legacy" retries.
# Standard mode retries RequestLimitExceeded and 5xx with jittered backoff of at most 20 s.
# On the command line, a first attempt that cannot connect is not retried (aws.FirstContact).
RETRIES = {"mode": "standard", "total_max_attempts": 10}
CONNECT_TIMEOUT_S, READ_TIMEOUT_S = 5, 20  # so that one HTTP attempt has a known bound
ATTEMPT_S = CONNECT_TIMEOUT_S + READ_TIMEOUT_S + 2
BACKOFF_CAP_S = 20  # botocore's longest sleep between two attempts
STOP_MARGIN_S = 60  # with less Lambda time than this left, start no new item
# A run that starts with less than this cannot list and start one item before its margin:
# it fails at once, naming the function's timeout, so that the Errors alarm fires.
MIN_START_S = STOP_MARGIN_S + 2 * ATTEMPT_S
# Type hints' names for what has no static type here: a boto3 client (its types come only with
# boto3-stubs, which the job files may not import) and Lambda's context object (None on the
# command line). Defined here, the first shared module that takes them.
Client = Any
LambdaContext = Any


class OutOfTime(Exception):
    """Too little Lambda time is left to start (or retry) a call without being cut off."""


class Budget:
    """The Lambda's time left (unlimited without a context): when to stop starting work.

    Guarding a client makes every HTTP attempt, and every retry sleep, start only when it
    can finish in time, so the Lambda timeout never cuts a call in half.
    """

    def __init__(self, context: LambdaContext) -> None:
        self._left_ms = getattr(context, "get_remaining_time_in_millis", None)
        # botocore's own rules for what standard mode retries (throttling, 5xx, network)
        self._retried = botocore_retries.StandardRetryConditions(RETRIES["total_max_attempts"])
        self._until: float | None = None  # time.monotonic() after which no item starts

    def left(self) -> float:
        return self._left_ms() / 1000 if self._left_ms else float("inf")

    def low(self) -> bool:
        return self.left() < STOP_MARGIN_S or self.closed()

    def close_in(self, seconds: float) -> None:
        """Start no new item after ``seconds`` from now (a scheduled run's own hour)."""
        self._until = time.monotonic() + seconds

    def closed(self) -> bool:
        return self._until is not None and time.monotonic() >= self._until

    def guard(self, client: Client) -> Client:
        if self._left_ms:
            client.meta.events.register_first("before-send", self._before_send)
            client.meta.events.register_first("needs-retry", self._before_retry)
        return client

    def _before_send(self, **kwargs: Any) -> None:
        if self.left() < ATTEMPT_S:
            raise OutOfTime(f"{self.left():.0f} s of Lambda time left: call not started")

    def _before_retry(self, **kwargs: Any) -> None:
        """Stop only a retry that botocore would make: any other failed answer (404,
        AccessDenied ...) keeps its own code and message, whatever the time left."""
        if self.left() >= ATTEMPT_S + BACKOFF_CAP_S:
            return
        attempt = botocore_retries.RetryEventAdapter().create_retry_context(**kwargs)
        if self._retried.is_retryable(attempt):
            raise OutOfTime(f"{self.left():.0f} s of Lambda time left: call not retried")


def too_short(left: float) -> str:
    return (
        f"the function's timeout is too short: the run started with {left:.0f} s of Lambda "
        f"time, and needs at least {MIN_START_S} s to do anything (900 s, Lambda's most, for "
        "a large region). Raise the function's Timeout"
    )
