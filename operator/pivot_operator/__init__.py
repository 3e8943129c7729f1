"""PIVOT."""
