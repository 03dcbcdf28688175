"""Benchmarks as library code (thin entry points in jobs/): what they build, run and measure."""
