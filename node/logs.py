"""structlog set-up: JSON lines to stdout (or a console renderer for people), context
bound per task through contextvars."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


def configure_logging(*, level: str = "info", format: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def bind_process_context(**fields: Any) -> None:
    """Fields every later log line of this process carries (the node id, the chain):
    bound in contextvars before the event loop starts, so every task and worker thread
    inherits them."""
    structlog.contextvars.bind_contextvars(**fields)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
