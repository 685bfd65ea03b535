"""docs/: one page per subject (issue 28). Each opens with what its reader can do after
reading it, is written in sentences of at most about 40 words, and quotes the code's numbers
and names: a changed constant, tag, parameter or price fails here until the page says the
same."""

import re
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

import ebs_snapshot_copier as copier
import ebs_snapshot_creator as creator
import ebs_snapshot_manager as manager
from scripts import bench, cost

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [
    "tags.md",
    "deploy.md",
    "immutable-backups.md",
    "operations.md",
    "consistency.md",
    "cost-and-archive.md",
    "performance.md",
    "development.md",
    "restore.md",
]
MOST_WORDS = 40  # a sentence a reader in a hurry can take in at once
TEMPLATE = cfn_yaml.load(str(ROOT / "template.yaml"))


def text(page):
    return (DOCS / page).read_text()


def flat(page):
    """The page with every run of white space as one space (sentences cross lines)."""
    return " ".join(text(page).split())


def paragraphs(markdown):
    """The prose of a markdown text, a paragraph or list item at a time: no code blocks,
    tables, headings or HTML comments."""
    fenced, lines = False, []
    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
            stripped = ""
        prose = not fenced and not stripped.startswith(("|", "#", "<!--"))
        if not prose or not stripped or re.match(r"(- |\d+\. )", stripped):
            if lines:
                yield " ".join(lines)
            item = re.sub(r"^(- |\d+\. )", "", stripped)
            lines = [item] if prose and item else []
        else:
            lines.append(stripped)
    if lines:
        yield " ".join(lines)


def sentences(markdown):
    """Each sentence of the prose: up to a full stop, question or exclamation mark followed by
    a space (closing brackets, quotes and markup after it included)."""
    for paragraph in paragraphs(markdown):
        for sentence in re.split(r"[.!?][)\"'*_`]*\s+", paragraph):
            if sentence.strip():
                yield sentence


@pytest.mark.parametrize("page", PAGES)
def test_each_page_opens_with_what_its_reader_can_do(page):
    title, blank, opening = text(page).splitlines()[:3]
    assert title.startswith("# ") and blank == ""
    assert opening.startswith("After reading this you can "), opening


@pytest.mark.parametrize("page", [*PAGES, "../README.md"])
def test_no_sentence_is_over_about_40_words(page):
    long = [s for s in sentences(text(page)) if len(s.split()) > MOST_WORDS]
    assert long == []


def test_the_sentence_counter_counts_sentences_not_code_or_tables():
    markdown = "A b c. D e\nf g? H (i j.) K\n\n| l. m | n |\n```\no. p q\n```\n- r s. t\n- u"
    assert [len(s.split()) for s in sentences(markdown)] == [3, 4, 3, 1, 2, 1, 1]


@pytest.mark.parametrize("job", [creator, copier, manager], ids=lambda m: m.__name__)
def test_every_tag_the_code_reads_is_in_the_tag_reference(job):
    tags = {v for k, v in vars(job).items() if k.startswith("TAG_") and isinstance(v, str)}
    assert {"Backup", "KeepForever"} <= tags  # the scan works
    reference = text("tags.md")
    assert sorted(t for t in tags if f"`{t}`" not in reference) == []


@pytest.mark.parametrize("job", [creator, copier, manager], ids=lambda m: m.__name__)
def test_the_job_files_point_to_the_tag_reference_instead_of_repeating_it(job):
    doc = job.__doc__
    assert "docs/tags.md" in doc and "IAM actions:" in doc and "Event" in doc
    assert "Retention_Weekly" not in doc and "Lock_CoolOffHours" not in doc
    assert len(doc.splitlines()) <= 60


def test_the_docs_state_the_templates_runtime():
    runtime = TEMPLATE["Globals"]["Function"]["Runtime"]  # python3.14
    version = runtime.removeprefix("python")
    stated = []
    for path in [ROOT / "README.md", *(DOCS / p for p in PAGES)]:
        body = path.read_text()
        stated += re.findall(r"python3\.\d+", body)
        stated += re.findall(r"[Rr]untime[^.|\n]{0,30}?Python (3\.\d+)", body)
    assert stated and set(stated) <= {runtime, version}, stated
    assert f"runtime Python {version} (`{runtime}`, arm64)" in flat("deploy.md")  # the console
    assert f"runtime `{runtime}` on arm64" in flat("deploy.md")  # SAM
    assert TEMPLATE["Globals"]["Function"]["Architectures"] == ["arm64"]


def anchors(markdown):
    """GitHub's anchor of each heading: lower case, markup and punctuation dropped, spaces
    as hyphens."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # a "# comment" is no heading
    headings = re.findall(r"^#+ (.+)$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", [*PAGES, "../README.md"])
def test_every_link_to_a_file_or_heading_of_the_repository_resolves(page):
    path = (DOCS / page).resolve()
    for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
        if re.match(r"https?:", target):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        assert linked.exists(), target
        assert not anchor or anchor in anchors(linked.read_text()), target


# ---- numbers and names the pages quote ------------------------------------------------


def test_the_pages_quote_the_constants_the_jobs_use():
    window = manager.COVERAGE_MAX_AGE_HOURS + creator.COPY_LAG_HOURS
    quoted = {
        "operations.md": [
            f"less than {creator.MIN_START_S} s of Lambda time",
            f"the last {window} h",
            f"`LAST_COPY_GRACE_DAYS` ({manager.LAST_COPY_GRACE_DAYS})",
            f"one filtered `DescribeSnapshots` per {manager.LOOKUP_BATCH} copies",
            f"`COPY_MAX_LAG_HOURS` (default {creator.COPY_LAG_HOURS}",
            f"`COVERAGE_MAX_AGE_HOURS` (default {manager.COVERAGE_MAX_AGE_HOURS}",
        ],
        "immutable-backups.md": [f"the last {window} h"],
        "deploy.md": [f"only {copier.COPIES_IN_FLIGHT} copies into a region"],
        "restore.md": [
            f"from {manager.INIT_RATE_MIN} to {manager.INIT_RATE_MAX} MiB/s",
            f"takes up to {manager.ARCHIVE_RESTORE_HOURS} hours",
            f"with type {manager.FALLBACK_TYPE}",
        ],
    }
    missing = [(p, q) for p, qs in quoted.items() for q in qs if q not in flat(p)]
    assert missing == []
    assert manager.EXPIRED_COPY_DAYS == 2
    assert "more than two days past" in flat("deploy.md")
    assert "more than two days past" in flat("operations.md")


def test_the_cost_table_is_what_make_cost_prints_now():
    page = flat("cost-and-archive.md")
    assert " ".join(cost.table().split()) in page
    once = cost.EXAMPLE["volumes"] * cost.EXAMPLE["written_gb"]
    assert f"({once:,} GB, ${once * cost.PRICES['transfer'][0]:,.2f} here)" in page


def test_the_archive_example_is_what_make_cost_prints_now():
    page = flat("cost-and-archive.md")
    assert " ".join(cost.archive_table().split()) in page
    assert manager.ARCHIVE_MIN_DAYS == 90
    assert "At least 90 days remain until its `DeleteOn`" in page
    assert manager.ARCHIVE_AFTER.days == 1 and "once it is a day old" in page
    assert cost.PRICES["archive"][0] * 4 == cost.PRICES["snapshot"][0]  # "a quarter"


def test_what_the_defaults_cost_is_what_make_cost_counts():
    """Issue 28: a default that costs money says what it costs where it is set."""
    usd = {item.split(" (")[0]: u for item, _, u in cost.rows()}
    total = sum(usd.values())
    page = flat("deploy.md")
    assert f"${usd['Recycle Bin']:.2f} of the example's ${total:,.2f} a month" in page
    assert f"${usd['restore drills']:.2f} a month in the example" in page
    metrics, alarms = usd["CloudWatch metrics"], usd["CloudWatch alarms"]
    assert f"${alarms:.2f} a month of alarms and ${metrics:.2f} of metrics" in page
    stays = 96 * cost.STAY_S
    worst = stays * cost.MEMORY_GB * cost.PRICES["lambda"][0]
    assert f"at most {stays:,} Lambda-seconds a day, ${worst:.2f} a day" in page
    assert f"billed {cost.recycle_bin_days()} days more" in page
    params = TEMPLATE["Parameters"]
    for name, default in (("RestoreDrill", "on"), ("Dashboard", "on"), ("CopierStayMinutes", 12)):
        assert params[name]["Default"] == default and f"`{name}={default}`" in page


def test_the_parameter_table_names_every_parameter_and_its_default():
    page = text("deploy.md")
    table = page[page.index("## Parameters") : page.index("## The permissions")]
    rows = {
        line.split("`")[1]: line.split("|")[2].strip()
        for line in table.splitlines()
        if line.startswith("| `")
    }
    params = TEMPLATE["Parameters"]
    assert set(rows) == set(params)
    for name, parameter in params.items():
        default = str(parameter.get("Default", ""))
        assert rows[name] == (f"`{default}`" if default else "empty"), name


def tree_paths(tree):
    """The paths a tree names, one line per file, two spaces a level: src/.../plan.py."""
    paths, stack = set(), []
    for line in filter(str.strip, tree.splitlines()):
        depth = (len(line) - len(line.lstrip())) // 2
        stack = [*stack[:depth], line.split()[0]]
        paths.add("".join(stack))
    return paths


def test_the_layout_map_names_every_module_and_folder():
    page = text("development.md")
    tree = page[page.index("src/ebs_snapshots/          the source") :]
    tree = tree[: tree.index("```")]
    assert all(len(line) <= 100 for line in tree.splitlines())  # one line per file
    named = tree_paths(tree)
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "testkit").glob("*.py")]:
        relative = path.relative_to(ROOT).as_posix()
        assert path.name == "__init__.py" or relative in named, relative
    for path in (ROOT / "scripts").glob("*.py"):
        assert path.name == "__init__.py" or f"scripts/{path.name}" in named, path
    for folder in (ROOT / "tests").iterdir():
        if folder.is_dir() and folder.name != "__pycache__":
            assert f"tests/{folder.name}/" in named, folder
    assert "docs/" in named


def test_the_tree_reader_gives_whole_paths():
    tree = "src/\n  creator/\n    plan.py   what to snapshot\n  copier/\n    plan.py\ndocs/x.png\n"
    assert tree_paths(tree) == {
        "src/",
        "src/creator/",
        "src/creator/plan.py",
        "src/copier/",
        "src/copier/plan.py",
        "docs/x.png",
    }


# ---- docs/performance.md: generated by make bench ---------------------------------------

GENERATED = re.compile(
    r"<!-- generated by make bench.*?-->\n(.*?)\n<!-- end of generated -->", re.DOTALL
)
MACHINE = re.compile(
    r"Sections (?P<section>[\w,]+): measured \d{4}-\d\d-\d\d on \S+, \d+ cores \(`nproc`\), "
    r"Python [\d.]+, moto [\d.]+, boto3 [\d.]+, \d+ ms an EC2 call; job files creator \w{12}, "
    r"copier \w{12}, manager \w{12} \(sha256\)(; .+ \(--update\))*\.$"
)


def rendered_headers():
    """The header and rule of each section's table as `bench --markdown` renders them."""
    run = {"counts": {}, "failures": 0, "calls": {}, "held_by_file": {}}
    run |= {"own_peak_mb": 0, "held_mb": 0, "total_peak_mb": 0}
    size = {"snapshots": 1, "volumes": 1, "with_deletes": run, "listing_only": run}
    memory = bench.md_memory({"sizes": [size | {"own_added_mb": 0}], "models_mb": 0})
    tables = {"table": bench.md_table([]), "day": bench.md_day([]), "idle": bench.md_idle([])}
    return {name: t.splitlines()[:2] for name, t in [*tables.items(), ("memory100k", memory)]}


def test_the_performance_tables_are_as_make_bench_prints_them():
    blocks = GENERATED.findall(text("performance.md"))
    sections = {}
    for block in blocks:
        lines = block.splitlines()
        machine = MACHINE.match(lines[0])
        assert machine, lines[0]
        sections[machine["section"]] = lines
        table = [line for line in lines if line.startswith("|")]
        assert len({line.count("|") for line in table}) == 1, machine["section"]
    assert set(sections) == {"table", "day", "memory100k", "idle", "copies"}
    for name, header in rendered_headers().items():
        assert sections[name][2:4] == header, name
    assert "`.venv/bin/python -m scripts.bench --markdown` prints them" in flat("performance.md")
