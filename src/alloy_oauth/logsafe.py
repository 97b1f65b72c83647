"""Logging that never shows OAuth secrets: codes, states and tokens in logged URLs are hidden.

Used by the server and the example app for uvicorn's access log and httpx2's request log.
"""

from __future__ import annotations

import logging
import re

_SECRET_PARAMS = re.compile(
    r"(?i)([?&](?:code|state|token|access_token|refresh_token|id_token|client_secret)=)[^&#\s\"]*"
)


def redact_url(text: str) -> str:
    return _SECRET_PARAMS.sub(r"\1[redacted]", text)


class QueryRedactingFilter(logging.Filter):
    """Replaces the values of code/state/token query parameters in a record's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = redact_url(record.msg)
        return True


REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "httpx2")


def install_redaction(loggers: tuple[str, ...] = REDACTED_LOGGERS) -> None:
    """Add the filter once to each logger that prints request URLs."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryRedactingFilter) for f in logger.filters):
            logger.addFilter(QueryRedactingFilter())
