"""The environment the operator gives a trainer pod: the trainer is configured from env alone."""

from __future__ import annotations

SESSION_ID = "PIVOT_SESSION_ID"
REDIS_URL = "PIVOT_REDIS_URL"
S3_ENDPOINT = "PIVOT_S3_ENDPOINT"
S3_BUCKET = "PIVOT_S3_BUCKET"
S3_REGION = "AWS_DEFAULT_REGION"
S3_ACCESS_KEY = "AWS_ACCESS_KEY_ID"
S3_SECRET_KEY = "AWS_SECRET_ACCESS_KEY"
CONFIG_JSON = "PIVOT_CONFIG"
DEVICE = "PIVOT_DEVICE"

# Keys of the Secret that holds the S3 credentials.
SECRET_ACCESS_KEY_FIELD = "access-key-id"
SECRET_SECRET_KEY_FIELD = "secret-access-key"

TRAINER_COMMAND = ["python", "-m", "pivot_trainer"]

# Distributed sessions (torchrun's names): the operator sets them on every pod of a gang.
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"
WORLD_SIZE = "WORLD_SIZE"
NODE_RANK = "NODE_RANK"
NPROC_PER_NODE = "NPROC_PER_NODE"
RANK = "RANK"
LOCAL_RANK = "LOCAL_RANK"
DEFAULT_MASTER_PORT = 29500
TORCHRUN = "torchrun"
TRAINER_MODULE = "pivot_trainer"

# The trainer's telemetry buffer: records queued in memory while Redis is unreachable, then an
# on-disk spool (one directory per session below PIVOT_SPOOL_DIR, default a temp folder; mount
# an emptyDir there so it survives a container restart) bounded by PIVOT_SPOOL_MAX_BYTES.
SPOOL_DIR = "PIVOT_SPOOL_DIR"
SPOOL_MAX_BYTES = "PIVOT_SPOOL_MAX_BYTES"
SINK_MEMORY_RECORDS = "PIVOT_SINK_MEMORY_RECORDS"
