"""The PIVOT trainer: `python -m pivot_trainer`, configured only from env (pivot_schema.env).

Trains a small 2D UNet on synthetic lesion-segmentation data, writes one metrics record per
epoch and lifecycle events to Redis streams, and checkpoints to S3 with resume and SIGTERM
handling. Modules other than `train`, `data`, `model`, `losses`, `metrics` and `schedule`
do not import torch, so config errors and finished sessions exit fast.
"""

# Capability flag the operator's tests check: the trainer joins a torch.distributed gang from
# MASTER_ADDR/MASTER_PORT/WORLD_SIZE and NODE_RANK*NPROC_PER_NODE (or torchrun's RANK).
SUPPORTS_DISTRIBUTED = True
