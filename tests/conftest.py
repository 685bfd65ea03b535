"""Shared fixtures: moto's AWS, a small fleet builder, and an API spy (``api``).

The spy never touches the job code. It records every call and cuts moto's describe
responses into small pages (moto never returns a NextToken, so without this a job that
ignored NextToken would pass every test), and it injects faults through botocore's
``before-send`` hook, where real outages happen: chosen error codes, random throttling on a
fixed seed, and network failures raised as botocore's own exceptions
(EndpointConnectionError, ReadTimeoutError, ResponseParserError ...), which then go through
botocore's real retry logic.
"""

import contextlib
import os
import random
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs

# Before boto3 or moto is imported anywhere: never reach a real account or the metadata service.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SECURITY_TOKEN="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_EC2_METADATA_DISABLED="true",
    MOTO_EC2_LOAD_DEFAULT_AMIS="false",
)
for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2"):
    os.environ.pop(var, None)

from unittest.mock import patch  # noqa: E402

import boto3  # noqa: E402
import botocore.client  # noqa: E402
import botocore.loaders  # noqa: E402
import botocore.session  # noqa: E402
import pytest  # noqa: E402
import time_machine  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402
from botocore.client import BaseClient  # noqa: E402
from botocore.exceptions import ReadTimeoutError  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.core.botocore_stubber import BotocoreStubber, MockRawResponse  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402

from testkit.moto_gaps import install as fill_moto_gaps  # noqa: E402

fill_moto_gaps()

# The jobs open a boto3 Session per run (clients are never shared between runs), and each new
# Session loads EC2's API model afresh: a third of the suite's time. The tests share one loader
# (its cache is keyed by file name); no client, credential or event handler is shared.
_LOADER = botocore.loaders.create_loader()
botocore.session.create_loader = lambda search_path_string=None: _LOADER
# Likewise each new client builds its class, a method per API operation: one class per service
# and API version serves every Session (the class holds no state; its instances do).
_CLIENT_CLASSES = {}
_create_client_class = botocore.client.ClientCreator._create_client_class


def _client_class(self, service_name, service_model):
    key = (service_name, service_model.api_version)
    if key not in _CLIENT_CLASSES:
        _CLIENT_CLASSES[key] = _create_client_class(self, service_name, service_model)
    return _CLIENT_CLASSES[key]


botocore.client.ClientCreator._create_client_class = _client_class

REGION = "us-east-1"
DEST = "us-west-2"
DEST2 = "eu-west-1"
NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # "today" in every test: see ``aws``
AMI = "ami-12345678"

PAGED = {
    "DescribeInstances": ("Reservations", "ReservationId"),
    "DescribeSnapshots": ("Snapshots", "SnapshotId"),
    "DescribeVolumes": ("Volumes", "VolumeId"),
    "DescribeLockedSnapshots": ("Snapshots", "SnapshotId"),
}


def pytest_addoption(parser):
    parser.addoption(
        "--clock-ahead",
        type=int,
        default=0,
        metavar="DAYS",
        help="run as if the machine's clock were DAYS ahead (make test: the tests marked "
        "dates, a year ahead), from before the test modules are imported",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "dates: compares dates; make test runs it again with the clock a year ahead"
    )
    days = config.getoption("--clock-ahead")
    if days:  # what a test reads outside its own clock (an import, a wider fixture) moves
        time_machine.travel(datetime.now(UTC) + timedelta(days=days), tick=True).start()


# The slowest test files first: pytest-xdist hands out whole files (make test: --dist
# loadfile) in collection order, and a slow file handed out last would run alone at the end.
SLOW_FIRST = (
    "test_bench",
    "test_demo",
    "test_schedule",
    "test_restore",
    "test_fuzz",
    "test_vault",
    "test_faults",
    "test_creator",
)


def pytest_collection_modifyitems(items):
    rank = {name: n for n, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    """moto's AWS, and one clock for the test: the process's (moto's, the jobs' when not
    given ``now``, the test's own) starts at NOW and runs on, whatever day the machine says.
    ``clock`` sets moto's EBS clock apart, for a scenario's days."""
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    with time_machine.travel(NOW, tick=True), mock_aws():
        yield


@contextlib.contextmanager
def clock(now):
    """moto's EBS clock (snapshot start times, volume attach times, the emulated lock
    states) stopped at ``now``."""
    naive = now.astimezone(UTC).replace(tzinfo=None)
    with patch("moto.ec2.models.elastic_block_store.utcnow", lambda: naive):
        yield


def ec2(region=REGION):
    return boto3.client("ec2", region_name=region)


def client_as(role_arn, service="ec2", region=REGION):
    """A client of another account, through one of its roles (moto makes the credentials
    STS gives that account's)."""
    sts = boto3.client("sts", region_name=region)
    creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="test")["Credentials"]
    return boto3.client(
        service,
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def launch(tags=None, devices=("/dev/sda1",), region=REGION, volume_tags=None):
    """Start one instance with an EBS volume per device; returns (instance id, {device: vol})."""
    client = ec2(region)
    spec = {}
    if tags:
        spec["TagSpecifications"] = [{"ResourceType": "instance", "Tags": tag_list(tags)}]
    reservation = client.run_instances(
        ImageId=AMI,
        MinCount=1,
        MaxCount=1,
        BlockDeviceMappings=[{"DeviceName": d, "Ebs": {"VolumeSize": 8}} for d in devices],
        **spec,
    )
    instance = reservation["Instances"][0]
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]}
    for device, vtags in (volume_tags or {}).items():
        client.create_tags(Resources=[volumes[device]], Tags=tag_list(vtags))
    return instance["InstanceId"], volumes


def make_snapshot(tags, region=REGION, description="test", encrypted=False):
    """A snapshot of a fresh volume, tagged as given; returns its id."""
    client = ec2(region)
    volume = client.create_volume(AvailabilityZone=region + "a", Size=1, Encrypted=encrypted)
    snap = client.create_snapshot(
        VolumeId=volume["VolumeId"],
        Description=description,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}] if tags else [],
    )
    return snap["SnapshotId"]


def snapshot_of(volume_id, tags, region=REGION):
    """A snapshot of an existing volume, tagged as given; returns its id."""
    return ec2(region).create_snapshot(
        VolumeId=volume_id,
        TagSpecifications=[{"ResourceType": "snapshot", "Tags": tag_list(tags)}],
    )["SnapshotId"]


def snapshot_details(region=REGION):
    """{snapshot id: snapshot} of every snapshot the account holds in the region."""
    pages = ec2(region).get_paginator("describe_snapshots").paginate(OwnerIds=["self"])
    return {s["SnapshotId"]: s for page in pages for s in page["Snapshots"]}


def snapshots(region=REGION):
    """{snapshot id: tags} of every snapshot the account holds in the region."""
    return {
        sid: {t["Key"]: t["Value"] for t in s.get("Tags", [])}
        for sid, s in snapshot_details(region).items()
    }


def moto_snapshot(snapshot_id, region=REGION):
    return ec2_backends[DEFAULT_ACCOUNT_ID][region].snapshots[snapshot_id]


def set_snapshot_state(snapshot_id, state, region=REGION):
    """moto completes snapshots at once; force another state."""
    moto_snapshot(snapshot_id, region).status = state


def ec2_error(code, message, status):
    """An EC2 (query protocol) error response, as AWS sends it."""
    body = (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        "</Errors><RequestID>fault-injected</RequestID></Response>"
    ).encode()
    return status, body


def read_timeout(url):
    """The network failure of an answer that never came (api.network, api.lose_answer)."""
    return ReadTimeoutError(endpoint_url=url)


def request_params(request):
    """Top-level parameters of an EC2 query-protocol request body."""
    body = request.body or b""
    if isinstance(body, bytes):
        body = body.decode()
    return {k: v[0] for k, v in parse_qs(body).items()}


class Api:
    """Records calls, pages describe responses, and injects faults.

    Calls are recorded (and describe responses paged with a cursor) around
    ``BaseClient._make_api_call``: one record per call the job makes. Faults are served
    from moto's ``before-send`` hook (its BotocoreStubber), once per HTTP attempt, so
    they go through botocore's real error parsing and retry logic, as AWS errors would.
    """

    def __init__(self):
        self.calls = []  # (region, operation, params), one per call
        self.attempts = 0  # HTTP attempts that reached the fault layer
        self.attempts_of = []  # (operation, region) of each of them
        self.sent = []  # (operation, the request's top-level parameters) of each of them
        self.page_size = None
        self.faults = []
        self.throttled = 0
        self.throttle_rate, self.random = 0.0, random.Random(0)
        self.stubs = {}  # operation -> response, function of the params giving one, or exception
        self.slept = []
        self.on_attempt = None  # called with (operation, region) before each attempt
        self.outages = []  # network failures: see ``network``
        self.lost = []  # answers lost once the call was made: see ``lose_answer``
        self.after = {}  # operation -> function of the response giving the one returned

    def fail(
        self,
        operation,
        code,
        when=lambda params, region: True,
        times=None,
        message=None,
        status=None,
    ):
        """Make matching attempts fail with ``code`` (``times`` times, or always)."""
        status = status or (503 if code in ("RequestLimitExceeded", "Unavailable") else 400)
        self.faults.append(
            {
                "op": operation,
                "code": code,
                "when": when,
                "left": times,
                "msg": message or f"injected {code}",
                "status": status,
            }
        )

    def network(self, error, operation=None, when=lambda params, region: True, times=None):
        """Make matching HTTP attempts (any service; ``operation`` None: any operation)
        raise ``error(url)``, a botocore exception, instead of reaching AWS."""
        self.outages.append({"op": operation, "error": error, "when": when, "left": times})

    def lose_answer(self, operation, when=lambda params, region: True, times=1, status=None):
        """Let matching attempts reach moto (which carries them out), then lose the answer: a
        read timeout (botocore's ReadTimeoutError), or with ``status`` an HTTP error such as
        500 InternalError in its place, as a server failing after the work was done."""
        self.lost.append({"op": operation, "when": when, "left": times, "status": status})

    def throttle(self, rate, seed):
        """Answer that share of all EC2 attempts with RequestLimitExceeded (HTTP 503)."""
        self.throttle_rate, self.random = rate, random.Random(seed)

    def stub(self, operation, response):
        self.stubs[operation] = response

    def ops(self, operation=None, region=None):
        return [
            params
            for r, op, params in self.calls
            if (operation is None or op == operation) and (region is None or r == region)
        ]

    def names(self):
        return [op for _, op, _ in self.calls]

    def _fault(self, operation, params, region):
        if self.throttle_rate and self.random.random() < self.throttle_rate:
            self.throttled += 1
            return ec2_error("RequestLimitExceeded", "Request limit exceeded.", 503)
        for fault in self.faults:
            if fault["op"] != operation or fault["left"] == 0 or not fault["when"](params, region):
                continue
            if fault["left"] is not None:
                fault["left"] -= 1
            return ec2_error(fault["code"], fault["msg"], fault["status"])
        return None

    def _outage(self, operation, params, region, url):
        for outage in self.outages:
            if outage["op"] not in (None, operation) or outage["left"] == 0:
                continue
            if outage["when"](params, region):
                if outage["left"] is not None:
                    outage["left"] -= 1
                raise outage["error"](url)

    def _lost(self, operation, params, region):
        for rule in self.lost:
            if rule["op"] == operation and rule["left"] and rule["when"](params, region):
                rule["left"] -= 1
                return rule
        return None

    def _page(self, original, client, operation, params):
        key, id_key = PAGED[operation]
        query = {k: v for k, v in params.items() if k not in ("MaxResults", "NextToken")}
        full = original(client, operation, query)
        items = sorted(full[key], key=lambda item: item[id_key])
        if params.get("NextToken"):
            # A cursor, not an offset: deleting while paging must not skip anything.
            items = [item for item in items if item[id_key] > params["NextToken"]]
        page = items[: self.page_size]
        response = {**full, key: page}
        response.pop("NextToken", None)
        if len(items) > len(page):
            response["NextToken"] = page[-1][id_key]
        return response

    def install(self, monkeypatch):
        original_call = BaseClient._make_api_call
        original_send = BotocoreStubber.__call__
        spy = self

        def _make_api_call(client, operation, params):
            region = client.meta.region_name
            spy.calls.append((region, operation, dict(params)))
            if operation in spy.stubs:
                stub = spy.stubs[operation]
                if isinstance(stub, Exception):
                    raise stub
                return stub(params) if callable(stub) else stub
            if spy.page_size and operation in PAGED:
                response = spy._page(original_call, client, operation, params)
            else:
                response = original_call(client, operation, params)
            return spy.after[operation](response) if operation in spy.after else response

        def before_send(stubber, event_name, request, **kwargs):
            match = re.match(r"https?://([a-z0-9-]+)\.([a-z0-9-]+)\.", request.url)
            if stubber.enabled and match:
                (service, region), operation = match.groups(), event_name.rsplit(".", 1)[-1]
                params = request_params(request)
                if service == "ec2":
                    if spy.on_attempt:
                        spy.on_attempt(operation, region)
                    spy.attempts += 1
                    spy.attempts_of.append((operation, region))
                    spy.sent.append((operation, params))
                spy._outage(operation, params, region, request.url)
                fault = spy._fault(operation, params, region) if service == "ec2" else None
                if fault:
                    status, body = fault
                    return AWSResponse(request.url, status, {}, MockRawResponse(body))
                lost = spy._lost(operation, params, region)
                if lost:
                    original_send(stubber, event_name, request, **kwargs)  # done, then lost
                    if lost["status"] is None:
                        raise read_timeout(request.url)
                    body = ec2_error("InternalError", "injected after the work", lost["status"])
                    return AWSResponse(request.url, lost["status"], {}, MockRawResponse(body[1]))
            return original_send(stubber, event_name, request, **kwargs)

        monkeypatch.setattr(BaseClient, "_make_api_call", _make_api_call)
        monkeypatch.setattr(BotocoreStubber, "__call__", before_send)
        monkeypatch.setattr(time, "sleep", spy.slept.append)  # botocore's backoff, our waits


@pytest.fixture
def api(monkeypatch):
    spy = Api()
    spy.install(monkeypatch)
    return spy
