"""The PIVOT trainer: `python -m pivot_trainer`, configured only from env (pivot_schema.env).

Trains a small 2D UNet on synthetic lesion-segmentation data, writes one metrics record per
epoch and lifecycle events to Redis streams, and checkpoints to S3 with resume and SIGTERM
handling. Modules other than `train`, `data`, `model`, `losses`, `metrics` and `schedule`
do not import torch, so config errors and finished sessions exit fast.
"""
