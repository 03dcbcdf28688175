"""Benchmarks as library code (thin entry points live in jobs/): simulated clusters and storage, scale figures."""
