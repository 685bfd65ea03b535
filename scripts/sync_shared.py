"""Copy the shared block of ebs_snapshot_creator.py into the copier and the manager.

Edit the block in the creator, then run `make sync-shared`; tests/test_shared.py fails if
the three copies ever differ.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "# ---- shared block: identical in the three job files"
END = "# ---- end of shared block ----"


def block(text):
    return text[text.index(BEGIN) : text.index(END)]


def main():
    source = block((ROOT / "ebs_snapshot_creator.py").read_text())
    for name in ("copier", "manager"):
        path = ROOT / f"ebs_snapshot_{name}.py"
        text = path.read_text()
        path.write_text(text.replace(block(text), source))
        print(f"synced {path.name}")


if __name__ == "__main__":
    main()
