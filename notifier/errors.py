"""One exception root, two families, decided at the adapter.

    NotifierError
    ├── ConfigError            the configuration is wrong; lists every problem at once
    ├── TransientError         try again later (backoff, honour ``retry_after``)
    │   ├── WixTransientError          429, 5xx, timeouts, connection errors
    │   └── WhatsAppTransientError     throughput, pair rate limit, temporary Meta errors
    └── PermanentError         retrying cannot help; record it and move on
        ├── WixPermanentError          400 (missing site), 401, 403, 404
        └── WhatsAppPermanentError     template, recipient and account problems

WhatsApp errors carry ``code`` and a ``kind`` (see ``whatsapp_error_kind``) so the dispatcher can
pause a number, alert once per template, or remember an unreachable recipient.
"""

from __future__ import annotations

import enum


class NotifierError(Exception):
    """Root of every error notifier raises on purpose."""


class ConfigError(NotifierError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("configuration has problems:\n" + "\n".join(f"- {p}" for p in problems))


class TransientError(NotifierError):
    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(NotifierError):
    pass


class WixTransientError(TransientError):
    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.status = status


class WixPermanentError(PermanentError):
    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class WhatsAppErrorKind(enum.StrEnum):
    RETRY = "retry"
    RECIPIENT_LATER = "recipient_later"
    STOP = "stop"
    TEMPLATE = "template"
    RECIPIENT = "recipient"
    AMBIGUOUS = "ambiguous"


_RETRY = {1, 2, 4, 80007, 130429, 131000, 131016, 131057, 133004}
_STOP = {0, 190, 3, 10, 368, 131031, 131042, 131048}
_TEMPLATE = {132000, 132001, 132005, 132007, 132012, 132015, 132016, 132018, 100}
_RECIPIENT = {131026, 131047, 131049, 131050, 131051, 131021, 133010}


def whatsapp_error_kind(code: int | None) -> WhatsAppErrorKind:
    """The family of a Meta error code (whatsapp.md's table). Unknown codes are not retried."""
    if code is None:
        return WhatsAppErrorKind.RETRY
    if code == 131056:
        return WhatsAppErrorKind.RECIPIENT_LATER
    if code in _STOP or 200 <= code <= 299:
        return WhatsAppErrorKind.STOP
    if code in _RETRY:
        return WhatsAppErrorKind.RETRY
    if code in _TEMPLATE:
        return WhatsAppErrorKind.TEMPLATE
    return WhatsAppErrorKind.RECIPIENT


class WhatsAppTransientError(TransientError):
    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        kind: WhatsAppErrorKind = WhatsAppErrorKind.RETRY,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.code = code
        self.kind = kind


class WhatsAppPermanentError(PermanentError):
    def __init__(
        self,
        message: str,
        *,
        code: int | None,
        kind: WhatsAppErrorKind,
        title: str | None = None,
        details: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.kind = kind
        self.title = title
        self.details = details
