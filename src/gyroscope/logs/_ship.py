"""``gyro logs ship``: tail a file into the log server, at least once and without duplicates.

The shipper reads complete lines from where it stopped, sends them as one batch with a batch key
derived from (file identity, start offset, end offset), and only after the server acknowledged the
batch (fsynced) records the new position (atomically). A crash between the two re-sends the same
batch with the same key, and the server answers "duplicate" instead of storing it twice.

Rotation: a file renamed away (logrotate's default) is read to its end before the shipper moves to
the new file at the same path; a file truncated in place (``copytruncate``) is noticed because it
shrank below our position, and is read again from the start. A file's identity is its inode plus a
hash of its first bytes, so a new file that reuses an inode is not mistaken for the old one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from gyroscope.core import atomic_write
from gyroscope.logs._errors import BadInputError, LogStoreError
from gyroscope.logs._labels import validate_labels
from gyroscope.logs._record import MAX_LINE_BYTES

__all__ = ["ShipState", "Shipper"]

log = logging.getLogger(__name__)
_HEAD = 128


@dataclass(frozen=True, slots=True)
class ShipState:
    inode: int
    head: str  # hash of the first head_len bytes: tells a new file from the old one
    head_len: int
    offset: int
    pending: int = 0  # end of a batch sent but not yet acknowledged: re-sent exactly after a crash


def _head(fh: object, length: int) -> str:
    assert hasattr(fh, "seek") and hasattr(fh, "read")
    fh.seek(0)
    return hashlib.sha256(fh.read(length)).hexdigest()[:16]


class Shipper:
    """Ship ``path`` to ``url`` (a log server) with ``labels``; position kept in ``state_path``.

    >>> s = Shipper(Path("app.log"), "http://127.0.0.1:3100", {"job": "app"}, Path("app.pos"))
    >>> s.batch_lines
    1000
    """

    def __init__(
        self,
        path: Path,
        url: str,
        labels: dict[str, str],
        state_path: Path,
        *,
        batch_lines: int = 1000,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.path = path
        if not url.startswith(("http://", "https://")):
            raise BadInputError(f"ship URL must start with http:// or https://, got {url!r}")
        self.url = url.rstrip("/") + "/api/logs/push"
        self.labels = validate_labels(labels)
        self.state_path = state_path
        self.batch_lines = batch_lines
        self.token = token
        self.timeout = timeout
        self.sent_lines = 0
        self.duplicates = 0
        self._waiting = False  # warned that the file does not exist yet

    def load_state(self) -> ShipState | None:
        try:
            data = json.loads(self.state_path.read_text())
            return ShipState(
                int(data["inode"]),
                str(data["head"]),
                int(data["head_len"]),
                int(data["offset"]),
                int(data.get("pending", 0)),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError) as exc:
            raise LogStoreError(
                f"{self.state_path}: unreadable position file ({exc}); remove it to start over"
            ) from exc

    def save_state(self, state: ShipState) -> None:
        data = {
            "inode": state.inode,
            "head": state.head,
            "head_len": state.head_len,
            "offset": state.offset,
            "pending": state.pending,
        }
        atomic_write(self.state_path, json.dumps(data).encode())

    def run(self, *, follow: bool, poll: float = 0.5, max_seconds: float | None = None) -> int:
        """Ship until the file is drained (``follow=False``) or forever / ``max_seconds``."""
        deadline = time.monotonic() + max_seconds if max_seconds else None
        if not follow and not self.path.exists():
            raise BadInputError(
                f"{self.path}: no such file (check the path; without --once the shipper waits "
                "for it to appear)"
            )
        while True:
            moved = self.ship_available()
            if not follow and not moved:
                return self.sent_lines
            if deadline is not None and time.monotonic() > deadline:
                return self.sent_lines
            if not moved:
                time.sleep(poll)

    def ship_available(self) -> bool:
        """Send what is there now; True when something was sent (or the file changed)."""
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across the batches below
        except FileNotFoundError:
            if not self._waiting:  # one line, not one per poll
                log.warning("%s does not exist yet; waiting for it to appear", self.path)
                self._waiting = True
            return False
        except IsADirectoryError:
            raise BadInputError(
                f"{self.path} is a directory: ship a log file (one gyro logs ship per file)"
            ) from None
        self._waiting = False
        with fh:
            st = os.fstat(fh.fileno())
            state = self.load_state()
            if state is None or st.st_size < state.offset:
                state = ShipState(st.st_ino, "", 0, 0)  # new file, or truncated in place
            elif state.inode != st.st_ino or (
                state.head_len and _head(fh, state.head_len) != state.head
            ):
                rotated = self._drain_rotated(state)
                self.save_state(ShipState(st.st_ino, "", 0, 0))
                return rotated or True
            return self._send_from(fh, state)

    def _drain_rotated(self, state: ShipState) -> bool:
        """Finish the file we were reading if logrotate renamed it next to the original."""
        for candidate in sorted(self.path.parent.glob(self.path.name + "*")):
            with contextlib.suppress(OSError), open(candidate, "rb") as fh:
                if os.fstat(fh.fileno()).st_ino == state.inode:
                    return self._send_from(fh, state)
        log.warning(
            "%s was replaced; the rest of the old file is not found and cannot be shipped",
            self.path,
        )
        return False

    def _send_from(self, fh: object, state: ShipState) -> bool:
        assert hasattr(fh, "seek") and hasattr(fh, "readline")
        sent = False
        while True:
            fh.seek(state.offset)
            lines: list[bytes] = []
            end = state.offset
            resend = state.pending > state.offset
            while (end < state.pending) if resend else (len(lines) < self.batch_lines):
                raw = fh.readline(MAX_LINE_BYTES + 1)
                if not raw.endswith(b"\n"):
                    break  # a partial last line: wait until the writer finishes it
                end += len(raw)
                lines.append(raw.rstrip(b"\r\n"))
            if not lines:
                return sent
            head_len = min(end, _HEAD)
            head = _head(fh, head_len)
            if not resend:  # write-ahead: the exact batch is fixed before it is sent
                self.save_state(ShipState(state.inode, head, head_len, state.offset, end))
            self._push(lines, f"{state.inode}:{head}:{state.offset}:{end}")
            state = ShipState(state.inode, head, head_len, end)
            self.save_state(state)
            sent = True

    def _push(self, lines: list[bytes], key: str) -> None:
        body = b"\n".join(
            json.dumps({"labels": self.labels, "line": ln.decode("utf-8", "replace")}).encode()
            for ln in lines
        )
        headers = {"content-type": "application/x-ndjson", "x-gyro-batch-key": key}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        delay = 0.2
        for attempt in range(1, 31):  # bounded: ~2 minutes of retries, then give up loudly
            req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's URL
                    answer = json.loads(resp.read())
                self.sent_lines += len(lines)
                self.duplicates += bool(answer.get("duplicate"))
                return
            except urllib.error.HTTPError as exc:
                with exc:  # closes the connection under the error
                    text = exc.read().decode(errors="replace")
                if exc.code in (401, 403):  # retrying cannot fix a missing or wrong token
                    raise LogStoreError(
                        f"{self.url}: the server refused the bearer token (HTTP {exc.code}); "
                        "pass --token or set GYRO_LOGS_TOKEN"
                    ) from None
                if exc.code == 400:
                    raise BadInputError(text, where=str(self.path)) from exc
                reason = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = str(exc)
            log.warning("ship %s: attempt %d failed (%s); retrying", self.path, attempt, reason)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise LogStoreError(f"{self.url}: could not deliver a batch after 30 attempts ({reason})")
