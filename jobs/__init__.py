"""Command-line entry points (`python -m jobs.<name>` or `audiotok <name>`): tokenize, verify, diff,
gpu_check, the benchmarks and the two small trainings (train_codec, train_lm). Each parses its arguments,
calls the library and prints; none imports another (only the dispatcher `cli.py` does)."""
