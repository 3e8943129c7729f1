"""PIVOT's REST API (FastAPI)."""

__version__ = "0.1.0"
