"""`python -m jobs.gpu_check`: the one-command GPU check; its rows live in `pipeline.bench.gpu_check`."""
