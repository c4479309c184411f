"""structlog set-up: JSON lines to stdout (or a console renderer for people), context
bound per task through contextvars."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "error": logging.ERROR}


# The level in force (changed at run time by admin_setLogLevel): loggers filter nothing
# themselves (those bound before a change would keep the old level); the first processor
# drops what is below it.
class _Level:
    name = "info"
    number = logging.INFO


def configure_logging(*, level: str = "info", format: str = "json") -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
    )
    set_level(level)
    structlog.configure(
        processors=[
            _below_level_dropped,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )


def set_level(level: str) -> str:
    """Make ``level`` the process's log level; returns the previous one."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (one of {', '.join(LEVELS)})")
    previous = _Level.name
    _Level.name, _Level.number = level, LEVELS[level]
    return previous


def current_level() -> str:
    return _Level.name


# structlog's method names and their levels (exception() logs at ERROR).
_METHOD_LEVELS = {**LEVELS, "warn": logging.WARNING, "exception": logging.ERROR,
                  "critical": logging.CRITICAL, "fatal": logging.CRITICAL}


def _below_level_dropped(logger: Any, method_name: str, event: Any) -> Any:
    if _METHOD_LEVELS.get(method_name, logging.CRITICAL) < _Level.number:
        raise structlog.DropEvent
    return event


def bind_process_context(**fields: Any) -> None:
    """Fields every later log line of this process carries (the node id, the chain):
    bound in contextvars before the event loop starts, so every task and worker thread
    inherits them."""
    structlog.contextvars.bind_contextvars(**fields)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
