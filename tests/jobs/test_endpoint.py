"""The jobs run against any EC2 endpoint (issue 26): moto's server and LocalStack do not
implement DescribeVolumes' multi-attach-enabled filter (HTTP 500); the creator then reads
every volume's flag instead, with one warning. And the third way to try the jobs
(docs/operations.md), AWS_ENDPOINT_URL pointing at moto's server on 127.0.0.1, end to end."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from conftest import NOW, launch, snapshot_details
from test_creator import shared_volume

import ebs_snapshot_creator as creator

ROOT = Path(__file__).resolve().parents[2]


def multi_attach_filter(params, region):
    return params.get("Filter.1.Name") == "multi-attach-enabled"


def test_an_endpoint_that_refuses_the_filter_is_read_volume_by_volume(api):
    first, _ = launch({"Backup": "Yes"})
    second, _ = launch({"Backup": "Yes"})
    vid = shared_volume(first, second)
    api.fail("DescribeVolumes", "InternalError", when=multi_attach_filter, status=500)
    result = creator.run({"id": "e"}, None, now=NOW)
    taken = Counter(s["VolumeId"] for s in snapshot_details().values())
    assert taken[vid] == 1 and len(taken) == 3  # still once, though two instances ask
    (warning,) = [w for w in result["warnings"] if "multi-attach-enabled" in w["reason"]]
    assert "InternalError" in warning["reason"] and "every volume read instead" in warning["reason"]
    unfiltered = [p for p in api.ops("DescribeVolumes") if "Filters" not in p]
    assert len(unfiltered) == 1 and result["failures"] == []


def test_a_refusal_that_is_not_about_the_filter_fails_the_run(api):
    launch({"Backup": "Yes"})
    api.fail("DescribeVolumes", "UnauthorizedOperation", when=multi_attach_filter)
    with pytest.raises(creator.JobFailed, match="UnauthorizedOperation"):
        creator.run({"id": "e"}, None, now=NOW)
    assert snapshot_details() == {}


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def moto_server(tmp_path):
    """moto's server on 127.0.0.1 in its own process: its URL."""
    port = free_port()
    env = {**os.environ, "MOTO_EC2_LOAD_DEFAULT_AMIS": "false"}
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


TRY = """
import boto3
ec2 = boto3.client("ec2")
ec2.run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1, TagSpecifications=[
    {"ResourceType": "instance", "Tags": [{"Key": "Backup", "Value": "Yes"}]}])
"""


def test_the_three_jobs_run_against_moto_server_through_aws_endpoint_url(moto_server):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    subprocess.run([sys.executable, "-c", TRY], env=env, check=True, timeout=60)
    runs = {}
    for job in ("creator", "copier", "manager"):
        done = subprocess.run(
            [sys.executable, str(ROOT / f"ebs_snapshot_{job}.py"), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (job, done.stderr[-2000:])
        runs[job] = json.loads(done.stdout)
    assert runs["creator"]["counts"]["created"] == 1
    reasons = [w["reason"] for w in runs["creator"]["warnings"]]
    assert any("multi-attach-enabled" in r and "every volume read instead" in r for r in reasons)
    assert runs["manager"]["counts"]["kept"] == 1  # the snapshot, not due
