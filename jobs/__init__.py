"""Command-line entry points: `python -m jobs.tokenize`, `python -m jobs.verify`, `audiotok ...`."""
