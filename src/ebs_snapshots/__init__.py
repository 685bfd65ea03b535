"""EBS snapshot lifecycle: the source of the three job files (scripts/build.py)."""
