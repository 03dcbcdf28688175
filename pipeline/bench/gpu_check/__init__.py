"""`python -m jobs.gpu_check` (its rows live here; jobs/gpu_check/ parses the arguments):
everything a short GPU lease must measure, in one command (within
`sizes.GPU.budget_s` on one GPU), one table printed and written as JSON; `--cpu` (the default
without CUDA) runs the same rows with small sizes so the GPU day finds no typo.

Rows (section: what; module):
  env          GPU, torch / CUDA / cuDNN, TF32 defaults and measured fp32 error, inside a Ray actor
               with num_gpus=1 (env_row.py)
  setup        random:24khz / random:48khz with codebooks fitted by k-means to real audio, held-out
               clips and their CPU one-item reference codes (codec_rows.py)
  agreement    the device's batched path vs the reference at 6 and 24 kbps (codec_rows.py)
  invariance   one item alone vs inside mixed batches of 16 / 64 / 256 (codec_rows.py)
  determinism  the same batch twice; again with most GPU memory taken (codec_rows.py)
  memory       24 / 32 / 48 kHz: our peak memory at the preset configs' batch budgets (pipeline/peak_memory.py:
               torch.cuda.max_memory_allocated, reset per row), the batch budget it recommends for the
               card (pipeline/batch_budget.py) and one batch at that budget (profile_rows.py)
  profile      host syncs per batch, cost of a new shape, forward passes per batch; the LSTM's share of
               a batch's time (lstm_share.py) (profile_rows.py)
  e2e          transformers baseline (on a slice) vs our job on one GPU, also with resample_on: actor, on
               corpora of hours in 512-item shards: × realtime, start-up apart, GPU / CPU busy %, bound-by
               line; each run stopped at its time limit (e2e_rows.py, through pipeline.bench.e2e)
  verify       jobs.verify on our GPU output (e2e_rows.py)
  actor        the actor bench, pipeline.bench.actor (e2e_rows.py)
  variants     bf16 / fp16 / tf32 / compile with their agreement (codec_rows.py)
  families     DAC 44 kHz and Mimi: a mixed-length batch on the device vs one item at a time on the CPU
               plan, agreement and × realtime (family_rows.py)
Each row is guarded (table.py): an out-of-memory or an exception becomes that row's status and the
others still run; a time budget skips rows that would start too late; the rows that cannot stop
themselves (setup's fit, compile) run in a child process killed at their limit (in_child.py: TIMEOUT).
`--prepare DIR` builds the folder to copy to the GPU machine (prepare.py); sizes.py holds the GPU and
CPU sizes and the GPU's time budget per row.
"""
