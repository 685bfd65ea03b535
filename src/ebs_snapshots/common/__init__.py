"""Code the jobs share, built into each job file that uses it."""
