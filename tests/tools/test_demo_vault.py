"""The demo's vault act: two accounts, the vault copies in the vault, expired by its manager."""

import re
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from scripts import demo, demo_vault


@pytest.fixture(scope="module")
def played():
    lines = []
    with mock_aws():
        start = datetime(demo.START.year, demo.START.month, demo.START.day, tzinfo=UTC)
        demo_vault.play_vault(demo.clock, start, demo.Names(), out=lines.append)
        with demo_vault.account(demo_vault.VAULT, demo.clock, start):
            vault = boto3.client("ec2", region_name="us-east-1").describe_snapshots(
                OwnerIds=["self"]
            )["Snapshots"]
        source = boto3.client("ec2", region_name="us-east-1").describe_snapshots(OwnerIds=["self"])[
            "Snapshots"
        ]
    return "\n".join(lines), vault, source


def test_each_day_makes_a_vault_copy_in_the_vault_account_through_a_staging_copy(played):
    text, vault, source = played
    days = demo_vault.DAYS
    assert text.count(", shareable") == days
    assert text.count("in the vault's us-east-1") == days
    for n in range(1, days + 1):  # each day's primary, by name: its three copies, in order
        day = f"pay-1 Dec {n}"
        made = [
            f"snapshot {day} (DeleteOn",
            f"copy of {day} in eu-west-1",
            f"staging copy of {day}, shareable",
            f"vault copy of {day} in the vault's us-east-1",
            f"shared staging copy of {day} with the vault",
            f"unshared staging copy of {day} with the vault",
            f"deleted staging copy of {day} (done)",
        ]
        assert [text.index(line) for line in made] == sorted(text.index(line) for line in made)
    assert "FAILED" not in text and not re.search(r"\bsnap-[0-9a-f]", text)
    assert all(any(t["Key"] == "Source_Account" for t in s["Tags"]) for s in vault)
    assert not any(any(t["Key"] == "Source_Account" for t in s.get("Tags", [])) for s in source)


def test_the_vaults_own_manager_expires_its_copies(played):
    text, vault, _ = played
    expired = [
        line for line in text.splitlines() if re.search(r"manager +vault us-east-1 +deleted", line)
    ]
    assert len(expired) == demo_vault.DAYS - 2  # Vault_Retention=2: day 1's goes on day 3
    assert len(vault) == 2
    assert max(len(line) for line in text.splitlines()) <= 120
