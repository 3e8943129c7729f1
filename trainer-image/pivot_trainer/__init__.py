"""The PIVOT trainer: `python -m pivot_trainer`, configured only from env (pivot_schema.env).

Trains a small 2D UNet on synthetic lesion-segmentation data, writes one metrics record per
epoch and lifecycle events to Redis streams, and checkpoints to S3 with resume and SIGTERM
handling. Only `train` and the modules it alone uses (`data`, `model`, `losses`, `metrics`,
`froc`, `schedule`, `rng`) import torch, so config errors and finished sessions exit fast.

Layers, each importing only those below it (tests/unit/trainer/test_import_graph.py):
`__main__` (env and config) -> `app` (the process: signals, sink, final event, exit code) ->
`train` (the engine: `Trainer.run()` returns an `outcome.Outcome`) -> `checkpoint_writer`,
`rng`, `model`, `data`, ... ; `process` (exit codes, flush budgets, the stop flag) and
`outcome` are leaves both sides share.
"""
