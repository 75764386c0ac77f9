"""Kept for existing callers: launching lives in :mod:`param_store.launch` (shared with the serving admin API)."""

from param_store.launch import launch_experiment

__all__ = ["launch_experiment"]
