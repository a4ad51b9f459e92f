"""Mistakes a user can fix, told as one message.

``UserError`` and its kinds are raised where a mistake is found (a bad file, an unknown domain,
a horizon the data cannot hold); the CLI prints the message alone on stderr and exits with 2,
and ``--debug`` shows the traceback. Anything else is a bug and keeps its traceback.
Prefect logs every failed task's traceback on the console; ``hide_user_error_tracebacks``
keeps those lines off the console for user errors (the Prefect UI still has them).
"""

from __future__ import annotations

import logging

EXIT_USER_ERROR = 2  # as for a bad command line (click's usage errors)


class UserError(Exception):
    """A mistake the user can fix; the message says what and how."""


class InputError(UserError, ValueError):
    """Bad data or parameters."""


class NotFoundError(UserError, LookupError):
    """An unknown domain, version or model (the message lists the known ones)."""


def is_user_error(exc: BaseException | None) -> bool:
    return isinstance(exc, UserError)


def _names(cls: type = UserError) -> set[str]:
    return {cls.__name__}.union(*(_names(sub) for sub in cls.__subclasses__()))


class _HideUserErrors(logging.Filter):
    """Drops a console record that carries a user error's traceback, or that reports a run
    finished in a state failed by one (its message names the error's class)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_user_error(record.exc_info[1]):
            return False
        if record.name.startswith("prefect") and record.levelno >= logging.INFO:
            message = record.getMessage()
            if "Failed(" in message and any(f"{name}:" in message for name in _names()):
                return False
        return True


def hide_user_error_tracebacks() -> None:
    """Add the filter to every console handler there is now (call after prefect is imported)."""
    loggers = [logging.getLogger()] + [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            is_console = isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            if is_console and not any(isinstance(f, _HideUserErrors) for f in handler.filters):
                handler.addFilter(_HideUserErrors())
