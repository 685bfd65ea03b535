"""The README is read in five minutes (issue 28): at most 250 lines, what it is in three
sentences, why this and not DLM or AWS Backup, then how to try it, which tags to set and how
to deploy, all in the first 100 lines; everything else is a link to docs/. The numbers it
states are the code's."""

import re
from pathlib import Path

from test_docs import PAGES, sentences

import ebs_snapshot_creator as creator
from scripts import cost

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
LINES = README.splitlines()


def first(needle):
    """The 1-based number of the first README line that holds ``needle``."""
    return next(n for n, line in enumerate(LINES, 1) if needle in line)


def test_the_readme_is_at_most_250_lines():
    assert len(LINES) <= 250


def test_try_tags_and_deploy_are_in_the_first_100_lines():
    assert first("sam deploy") < 100
    assert first("make demo") < first("sam deploy")
    assert first("make test") < 100  # the README's test command: what CI runs
    assert first("docs/demo.png") < 100
    day_one = LINES[first("## The tags you set on day one") : first("sam deploy")]
    table = [line for line in day_one if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == [
        "Backup",
        "Retention",
        "Copy_Dest",
        "KeepForever",
    ]


def test_it_says_what_it_is_in_three_sentences():
    intro = README.split("\n\n")[1]
    assert len(list(sentences(intro))) == 3


def test_the_comparison_comes_first_and_is_honest():
    start = LINES.index("## Why this and not DLM, AWS Backup or a script")
    assert start < first("## Try it")
    header = LINES[start + 4]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "for EBS",
        "this tool",
        "Data Lifecycle Manager",
        "AWS Backup",
        "a hand-written script",
    ]
    rows = {line.split("|")[1].strip(): line for line in LINES[start + 6 :] if line[:2] == "| "}
    for row in (
        "retention per instance, by tag",
        "the last backup is never deleted",
        "an alarm per unprotected volume",
        "restore drills, with time to restore",
        "`KeepForever` on one snapshot, enforced in IAM",
        "snapshot locks and vault copies, from tags",
        "cross-region copy",
        "schedule",
        "managed service, or code you own",
        "cost beyond the snapshots",
    ):
        assert row in rows, row
    # what the creator's INTERVALS offer, as DLM does
    assert "every 1 to 24 hours by tag (`Backup_Every=4`)" in rows["schedule"].split("|")[2]
    assert creator.INTERVALS == (1, 2, 3, 4, 6, 8, 12, 24)
    assert "code you own" in rows["managed service, or code you own"].split("|")[2]


def test_the_lines_of_code_you_own_are_about_what_it_says():
    said = int(re.search(r"about ([\d,]+) lines of Python", README)[1].replace(",", ""))
    counted = sum(len(p.read_text().splitlines()) for p in (ROOT / "src").rglob("*.py"))
    assert abs(counted / said - 1) <= 0.15, (said, counted)


def test_the_tools_own_cost_is_what_make_cost_counts():
    own = ("CloudWatch metrics", "CloudWatch alarms", "Lambda", "log ingestion")
    usd = sum(u for item, _, u in cost.rows() if item.startswith(own))
    claim = r"about \$(\d+) a month a region of metrics, alarms and Lambda"
    said = int(re.search(claim, README)[1])
    assert round(usd) == said, usd


def test_the_readme_links_every_docs_page():
    for page in PAGES:
        assert f"](docs/{page})" in README, page


def test_the_demo_is_the_fleet_the_readme_says():
    from scripts import demo

    words = ("eight", "nine", "ten", "eleven", "twelve")
    said = re.search(r"The demo tags (\w+) instances", README)[1]
    assert words.index(said) + 8 == len(demo.FLEET)
