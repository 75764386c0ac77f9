"""The gunicorn entry module: ``gunicorn 'serving.wsgi:create()'`` (the environment is read here, at the edge).

Needs ``REDIS_URL``; :class:`serving.config.Environment` lists the other variables, read by the same code as
``bayesopt serve``. ``bayesopt serve`` is the usual way in: it also starts the embedded Redis when ``REDIS_URL``
is unset.
"""

from __future__ import annotations

from flask import Flask

from serving.app import create_app
from serving.config import Environment


def create() -> Flask:
    """Build the app from the environment (gunicorn calls this in each worker, after the fork)."""
    return create_app(Environment.read().serving_config())
