"""Notifiers (webhook, Slack-style chat, SMTP email, command) and the delivery queue.

The queue holds at most one pending message per (receiver, integration, group). A failed send is
retried with exponential backoff (0.5 s doubling to 60 s), and the alert is never dropped; when a
group produces a newer message while an older one is still failing, the newer one replaces it, so
a receiver that comes back gets the current state exactly once instead of a burst of stale copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import smtplib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
from pydantic import SecretStr

from gyroscope.monitor._config import (
    ChatConfig,
    CommandConfig,
    EmailConfig,
    ReceiverConfig,
    WebhookConfig,
)
from gyroscope.monitor._dispatch import Notification
from gyroscope.monitor._errors import NotifierError
from gyroscope.monitor._redact import safe_url, scrub_url

__all__ = ["DeliveryQueue", "summary_text"]

log = logging.getLogger(__name__)

Sender = Callable[[dict[str, Any]], Awaitable[None]]


def summary_text(payload: dict[str, Any]) -> str:
    """A short human message: ``[FIRING:2] TargetDown job=demo`` plus one line per alert."""
    firing = [a for a in payload["alerts"] if a["status"] == "firing"]
    head = f"[{payload['status'].upper()}:{len(firing) or len(payload['alerts'])}] "
    head += " ".join(f"{k}={v}" for k, v in payload["groupLabels"].items()) or "alerts"
    lines = [head]
    for alert in payload["alerts"]:
        note = alert["annotations"].get("summary") or alert["annotations"].get("description", "")
        labels = ",".join(f"{k}={v}" for k, v in sorted(alert["labels"].items()))
        lines.append(f"- {alert['status']}: {labels}{' - ' + note if note else ''}")
    return "\n".join(lines)


async def _post(
    client: httpx.AsyncClient,
    url: SecretStr,
    body: dict[str, Any],
    receiver: str,
    headers: dict[str, str] | None = None,
) -> None:
    """POST; errors (logged, and shown in /api/v1/notifications) name only scheme://host/…."""
    shown = safe_url(url)
    try:
        response = await client.post(
            url.get_secret_value(), json=body, timeout=10.0, headers=headers
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        reason = scrub_url(str(exc), url)
        raise NotifierError(
            f"POST {shown}: {type(exc).__name__}: {reason}", receiver=receiver
        ) from None
    if response.status_code >= 300:
        raise NotifierError(f"POST {shown}: HTTP {response.status_code}", receiver=receiver)


def webhook_sender(cfg: WebhookConfig, client: httpx.AsyncClient, receiver: str) -> Sender:
    headers = {"authorization": f"Bearer {cfg.token.get_secret_value()}"} if cfg.token else None

    async def send(payload: dict[str, Any]) -> None:
        body = payload
        if cfg.max_alerts and len(payload["alerts"]) > cfg.max_alerts:
            extra = len(payload["alerts"]) - cfg.max_alerts
            body = {
                **payload,
                "alerts": payload["alerts"][: cfg.max_alerts],
                "truncatedAlerts": extra,
            }
        await _post(client, cfg.url, body, receiver, headers)

    return send


def chat_sender(cfg: ChatConfig, client: httpx.AsyncClient, receiver: str) -> Sender:
    async def send(payload: dict[str, Any]) -> None:
        body: dict[str, Any] = {"text": summary_text(payload)}
        if cfg.channel:
            body["channel"] = cfg.channel
        await _post(client, cfg.url, body, receiver)

    return send


def email_sender(cfg: EmailConfig, receiver: str) -> Sender:
    def deliver(message: EmailMessage) -> None:
        host, _, port = cfg.smarthost.rpartition(":")
        with smtplib.SMTP(host, int(port), timeout=10) as smtp:
            if cfg.starttls:
                smtp.starttls()
            if cfg.username and cfg.password:
                smtp.login(cfg.username, cfg.password.get_secret_value())
            smtp.send_message(message)

    async def send(payload: dict[str, Any]) -> None:
        message = EmailMessage()
        text = summary_text(payload)
        message["Subject"] = text.splitlines()[0]
        message["From"] = cfg.sender
        message["To"] = ", ".join(cfg.to)
        message.set_content(text)
        try:
            await asyncio.to_thread(deliver, message)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifierError(f"SMTP {cfg.smarthost}: {exc}", receiver=receiver) from exc

    return send


def command_sender(cfg: CommandConfig, receiver: str) -> Sender:
    async def send(payload: dict[str, Any]) -> None:
        try:
            proc = await asyncio.create_subprocess_exec(
                *cfg.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(
                proc.communicate(json.dumps(payload).encode()), cfg.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise NotifierError(
                f"command {cfg.argv[0]}: {exc or 'timed out'}", receiver=receiver
            ) from exc
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise NotifierError(
                f"command {cfg.argv[0]} exited {proc.returncode}: {tail[0]}", receiver=receiver
            )

    return send


def build_senders(cfg: ReceiverConfig, client: httpx.AsyncClient) -> dict[str, Sender]:
    out: dict[str, Sender] = {}
    if cfg.webhook is not None:
        out["webhook"] = webhook_sender(cfg.webhook, client, cfg.name)
    if cfg.chat is not None:
        out["chat"] = chat_sender(cfg.chat, client, cfg.name)
    if cfg.email is not None:
        out["email"] = email_sender(cfg.email, cfg.name)
    if cfg.command is not None:
        out["command"] = command_sender(cfg.command, cfg.name)
    return out


@dataclass(slots=True)
class _Pending:
    notification: Notification
    sender: Sender
    attempts: int = 0
    next_try: float = 0.0
    last_error: str = ""


class DeliveryQueue:
    """Send notifications with retries; ``on_result(notification, integration, error)`` is told."""

    def __init__(
        self,
        receivers: list[ReceiverConfig],
        client: httpx.AsyncClient,
        on_result: Callable[[Notification, str, str | None], None] | None = None,
        *,
        max_backoff: float = 60.0,
    ) -> None:
        self.senders = {r.name: build_senders(r, client) for r in receivers}
        self.pending: dict[tuple[str, str, str], _Pending] = {}
        self.on_result = on_result
        self.max_backoff = max_backoff
        self.delivered = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._inflight: set[tuple[str, str, str]] = set()

    def submit(self, notification: Notification) -> None:
        for integration, sender in self.senders.get(notification.receiver, {}).items():
            key = (notification.receiver, integration, notification.group_key)
            old = self.pending.get(key)
            if old is not None:
                old.notification = notification  # the newest state replaces a stale one
            else:
                self.pending[key] = _Pending(notification, sender)
        self._wake.set()

    async def run(self) -> None:
        while True:
            now = time.monotonic()
            due = [
                k for k, p in self.pending.items() if p.next_try <= now and k not in self._inflight
            ]
            for key in due:
                self._inflight.add(key)
                asyncio.create_task(self._attempt(key))  # noqa: RUF006 - tracked by _inflight
            waits = [p.next_try - now for k, p in self.pending.items() if k not in self._inflight]
            self._wake.clear()
            timeout = max(0.01, min(waits)) if waits else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _attempt(self, key: tuple[str, str, str]) -> None:
        item = self.pending[key]
        sent = item.notification
        try:
            await item.sender(sent.payload)
        except NotifierError as exc:
            item.attempts += 1
            item.last_error = str(exc)
            item.next_try = time.monotonic() + min(self.max_backoff, 0.5 * 2 ** (item.attempts - 1))
            self.failures += 1
            if item.attempts == 1 or item.attempts % 10 == 0:
                log.warning("%s (attempt %d, retrying)", exc, item.attempts)
            if self.on_result:
                self.on_result(sent, key[1], str(exc))
        else:
            self.delivered += 1
            if item.notification is sent:
                del self.pending[key]
            else:
                item.attempts, item.next_try = 0, 0.0  # a newer message arrived meanwhile
            if self.on_result:
                self.on_result(sent, key[1], None)
        finally:
            self._inflight.discard(key)
            self._wake.set()

    def status(self) -> list[dict[str, Any]]:
        return [
            {
                "receiver": k[0],
                "integration": k[1],
                "groupKey": k[2],
                "attempts": p.attempts,
                "lastError": p.last_error,
            }
            for k, p in self.pending.items()
        ]
