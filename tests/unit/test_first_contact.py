"""The command line's fail-fast on unreachable AWS (common/aws.py FirstContact)."""

import pytest
from botocore.exceptions import EndpointConnectionError

from ebs_snapshots.common.aws import FirstContact, Unreachable

REFUSED = EndpointConnectionError(endpoint_url="http://127.0.0.1:9/")


def test_armed_a_first_attempt_that_cannot_connect_stops_the_run():
    contact = FirstContact()
    contact.arm(True)
    with pytest.raises(Unreachable, match="AWS unreachable, nothing done"):
        contact._after_attempt(caught_exception=REFUSED)


def test_once_aws_answered_a_connection_error_is_retried():
    contact = FirstContact()
    contact.arm(True)
    contact._after_attempt(response=({}, {}))
    assert contact._after_attempt(caught_exception=REFUSED) is None


def test_a_client_that_outlived_its_command_line_run_is_retried_as_ever():
    contact = FirstContact()
    contact.arm(True)
    contact.arm(False)  # the run is over; a client it made may still be used (Lambda: never)
    assert contact._after_attempt(caught_exception=REFUSED) is None
