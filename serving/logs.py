"""Log set-up of the long-running commands (``bayesopt serve``, the scheduler): one level, text or JSON lines.

``BAYESOPT_LOG_LEVEL`` (debug, info, warning, error) and ``BAYESOPT_LOG_FORMAT`` (``text``, or ``json``: one
object per line with ``ts``, ``level``, ``logger``, ``message`` and, for a logged exception, ``exc_type``) are
read by :class:`serving.config.Environment`. Audit lines of admin actions come from the ``bayesopt.audit``
logger (see :mod:`serving.auth`).
"""

from __future__ import annotations

import json
import logging
import time

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record (the traceback, if any, under ``exc``)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, separators=(",", ":"))


def configure_logging(level: str = "info", fmt: str = "text") -> None:
    """Send every logger's records at ``level`` and above to stderr in ``fmt`` (replaces earlier handlers)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
