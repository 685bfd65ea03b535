"""Shared fixtures: moto's AWS, a small fleet builder, and an API spy.

The spy wraps botocore's ``BaseClient._make_api_call`` (not the job code) to record every
call, to fail chosen calls with chosen error codes, and to cut moto's describe responses
into small pages: moto never returns a NextToken, so without this a job that ignored
NextToken would pass every test.
"""

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

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
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.client import BaseClient  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402

REGION = "us-east-1"
DEST = "us-west-2"
DEST2 = "eu-west-1"
NOW = datetime(2026, 11, 26, 5, 0, tzinfo=UTC)  # "today" is 2026-11-26
AMI = "ami-12345678"

PAGED = {
    "DescribeInstances": ("Reservations", "ReservationId"),
    "DescribeSnapshots": ("Snapshots", "SnapshotId"),
    "DescribeVolumes": ("Volumes", "VolumeId"),
}


@pytest.fixture(autouse=True)
def aws(monkeypatch):
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    with mock_aws():
        yield


def ec2(region=REGION):
    return boto3.client("ec2", region_name=region)


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


class Api:
    """Records calls; injects errors; pages describe responses with a cursor."""

    def __init__(self):
        self.calls = []  # (region, operation, params)
        self.page_size = None
        self.faults = []

    def fail(self, operation, code, when=lambda params, region: True, times=None, message=None):
        """Make matching calls fail with ``code`` (``times`` times, or always)."""
        self.faults.append(
            {"op": operation, "code": code, "when": when, "left": times, "msg": message}
        )

    def ops(self, operation=None, region=None):
        return [
            params
            for r, op, params in self.calls
            if (operation is None or op == operation) and (region is None or r == region)
        ]

    def names(self):
        return [op for _, op, _ in self.calls]

    def _fault(self, operation, params, region):
        for fault in self.faults:
            if fault["op"] != operation or fault["left"] == 0 or not fault["when"](params, region):
                continue
            if fault["left"] is not None:
                fault["left"] -= 1
            error = {"Code": fault["code"], "Message": fault["msg"] or f"injected {fault['code']}"}
            return ClientError({"Error": error}, operation)
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
        original = BaseClient._make_api_call
        spy = self

        def _make_api_call(client, operation, params):
            region = client.meta.region_name
            spy.calls.append((region, operation, dict(params)))
            error = spy._fault(operation, params, region)
            if error:
                raise error
            if spy.page_size and operation in PAGED:
                return spy._page(original, client, operation, params)
            return original(client, operation, params)

        monkeypatch.setattr(BaseClient, "_make_api_call", _make_api_call)


@pytest.fixture
def api(monkeypatch):
    spy = Api()
    spy.install(monkeypatch)
    return spy
