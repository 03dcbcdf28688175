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
  memory       peak memory at the preset configs' batch budgets (profile_rows.py)
  profile      host syncs per batch, cost of a new shape, forward passes per batch (profile_rows.py)
  e2e          transformers baseline vs our job on one GPU, also with resample_on: actor: × realtime,
               start-up apart, GPU / CPU busy %, bound-by line (e2e_rows.py, through pipeline.bench.e2e)
  verify       jobs.verify on our GPU output (e2e_rows.py)
  variants     bf16 / fp16 / compile with their agreement (codec_rows.py)
  families     DAC 44 kHz and Mimi: a mixed-length batch on the device vs one item at a time on the CPU
               plan, agreement and × realtime (family_rows.py)
Each row is guarded (table.py): an out-of-memory or an exception becomes that row's status and the
others still run; a time budget skips rows that would start too late. `--prepare DIR` builds the
folder to copy to the GPU machine (prepare.py); sizes.py holds the GPU and CPU sizes.
"""
