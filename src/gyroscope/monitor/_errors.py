"""Errors of the monitoring subsystem (all subclass ``gyroscope.errors.MonitorError``)."""

from __future__ import annotations

from gyroscope.errors import MonitorError

__all__ = ["NotifierError", "PromQLError", "RuleFileError", "ScrapeError"]


class PromQLError(MonitorError):
    """A query could not be parsed or evaluated.

    >>> str(PromQLError("unclosed left parenthesis", query="sum(x", position=3))
    'bad PromQL at position 3: unclosed left parenthesis (in: sum(x)'
    """

    exit_code = 2

    def __init__(self, reason: str, *, query: str = "", position: int | None = None) -> None:
        self.reason = reason
        self.query = query
        self.position = position
        where = f" at position {position}" if position is not None else ""
        suffix = f" (in: {query})" if query else ""
        super().__init__(f"bad PromQL{where}: {reason}{suffix}")


class RuleFileError(MonitorError):
    """A rule file is invalid: names the file, the line, the rule and the reason."""

    exit_code = 2

    def __init__(self, reason: str, *, path: str, line: int | None = None, rule: str = "") -> None:
        self.reason = reason
        self.path = path
        self.line = line
        self.rule = rule
        where = f"{path}:{line}" if line is not None else path
        who = f" rule {rule!r}:" if rule else ""
        super().__init__(f"{where}:{who} {reason}")


class ScrapeError(MonitorError):
    """A target could not be scraped or answered something that is not the exposition format."""

    retryable = True

    def __init__(self, reason: str, *, target: str, line: int | None = None) -> None:
        self.target = target
        self.line = line
        where = f" line {line}" if line is not None else ""
        super().__init__(f"{target}{where}: {reason}")


class NotifierError(MonitorError):
    """A notification could not be delivered (the receiver will be retried)."""

    retryable = True

    def __init__(self, reason: str, *, receiver: str) -> None:
        self.receiver = receiver
        super().__init__(f"receiver {receiver}: {reason}")
