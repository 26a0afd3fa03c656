"""A repository over HTTP: ``gyro backup repo-serve`` on the storage host, ``http://...`` clients.

Append-only protection only holds when the storage side enforces it: a client-side flag is undone
by whoever controls the client, and ransomware runs with the backup's own credentials. So the
server keeps the repository directory and, with ``append_only``, refuses every delete (lock files
excepted: a repository must stay usable) and every overwrite of an existing object with different
bytes. Rewriting an object with the same bytes succeeds, so a client that retries an upload whose
answer it lost is not refused. Forget and prune then run on the storage host itself, against the
directory (``gyro backup prune --repo /srv/backups/...``).

Protocol (all under ``/v1``; a bearer token when one is set, required beyond loopback):

    GET    /v1/objects/NAME      the object (``Range: bytes=A-B`` for a part); 404 when missing
    HEAD   /v1/objects/NAME      200 or 404
    PUT    /v1/objects/NAME      store atomically (temporary file, fsync, rename); 409 append-only;
                                 with If-None-Match: * only if absent (else 412)
    DELETE /v1/objects/NAME      204; 403 in append-only mode
    GET    /v1/list?prefix=P     JSON ``[[name, size, mtime], ...]`` under ``P``

Names are the repository's own (``config``, ``keys/..``, ``data/ab/..``, ``index/..``,
``snapshots/..``, ``locks/..``): anything else, ``..`` included, is refused with 400 before it
reaches the filesystem.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit, urlunsplit

import httpx

from gyroscope.backup._backend import LocalBackend, ObjectInfo
from gyroscope.backup._errors import (
    AppendOnlyError,
    BackendError,
    MissingDataError,
    StorageFullError,
)
from gyroscope.core import (
    Health,
    HttpServer,
    Request,
    Response,
    Service,
    bearer_ok,
    is_loopback,
    parse_host_port,
)
from gyroscope.errors import BackupError, ConfigError

__all__ = ["TOKEN_ENV", "HttpBackend", "RepoServer"]

TOKEN_ENV = "GYRO_BACKUP_REPO_TOKEN"  # noqa: S105 - the name of the variable, not a secret
_PREFIX = "/v1/objects/"
_TOP = ("keys", "data", "index", "snapshots", "locks")
# A top directory, then path components of safe characters that do not start with a dot.
_NAME = re.compile(
    r"(?:config|(?:keys|data|index|snapshots|locks)(?:/[A-Za-z0-9_-][A-Za-z0-9_.-]*)+)"
)
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
MAX_OBJECT_BYTES = 256 << 20  # packs are ~16 MiB; an index or snapshot far less
TIMEOUT = 60.0


def _valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


class RepoServer(Service):
    """Serve the repository directory ``root`` to ``HttpBackend`` clients.

    >>> import tempfile
    >>> server = RepoServer(Path(tempfile.mkdtemp()), listen="127.0.0.1:0", append_only=True)
    >>> server.health().status   # await server.start(); ...; await server.stop()
    'down'
    """

    def __init__(
        self,
        root: Path,
        *,
        listen: str = "127.0.0.1:8010",
        token: str | None = None,
        append_only: bool = False,
    ) -> None:
        super().__init__("backup-repo")
        host, port = parse_host_port(listen)
        if not token and not is_loopback(host):
            raise ConfigError(
                f"repository server on {host} (not loopback) needs a token; "
                f"set {TOKEN_ENV} or pass --token-file",
                key="listen",
            )
        self.root = root
        self.append_only = append_only
        self._token = token.encode() if token else None
        self._store = LocalBackend(root)
        self._methods: dict[str, Callable[[Request, str], Awaitable[Response]]] = {
            "GET": self._get,
            "HEAD": self._head,
            "PUT": self._put,
            "DELETE": self._delete,
        }
        self._http = HttpServer(
            self.handle,
            host=host,
            port=port,
            name=self.name,
            max_body_bytes=MAX_OBJECT_BYTES,
            check_host=True,
        )

    @property
    def url(self) -> str:
        return self._http.url

    async def start(self) -> None:
        if not self.root.is_dir():
            raise BackupError(
                f"{self.root} is not a directory; create it (gyro backup init --repo {self.root})"
            )
        await self._http.start()

    async def stop(self, grace: float = 5.0) -> None:
        await self._http.stop(grace)
        self._store.close()

    def health(self) -> Health:
        mode = "append-only" if self.append_only else "read-write"
        return Health(
            name=self.name,
            status="ok" if self._http.listening else "down",
            detail=f"{self.root} ({mode})",
        )

    async def handle(self, request: Request) -> Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        if request.path == "/v1/list":
            return await self._list(request)
        name = unquote(request.path[len(_PREFIX) :])
        answer = self._methods[request.method]
        try:
            return await answer(request, name)
        except MissingDataError:
            return Response.error(404, f"{name} is missing")
        except StorageFullError as exc:
            return Response.error(507, str(exc))
        except BackendError as exc:
            return Response.error(500, str(exc))

    def _refuse(self, request: Request) -> Response | None:
        """The answer to a request that must go no further: bad token, path, name or method."""
        token = self._token
        if token is not None and not bearer_ok(request.headers.get("authorization", ""), token):
            return Response.error(401, "missing or wrong bearer token")
        if request.path == "/v1/list" and request.method == "GET":
            return None
        if not request.path.startswith(_PREFIX):
            return Response.error(404, f"no such endpoint: {request.path}")
        name = unquote(request.path[len(_PREFIX) :])
        if not _valid_name(name):
            return Response.error(400, f"not a repository object name: {name!r}")
        if request.method not in self._methods:
            return Response.error(405, f"method {request.method} not allowed")
        return None

    async def _get(self, request: Request, name: str) -> Response:
        match = _RANGE.fullmatch(request.headers.get("range", ""))
        if match is None:
            return Response(await asyncio.to_thread(self._store.read, name))
        start, end = int(match[1]), int(match[2])
        if end < start:
            return Response.error(416, f"bad range {match[0]}")
        part = await asyncio.to_thread(self._store.read_range, name, start, end - start + 1)
        return Response(part, status=206)

    async def _head(self, request: Request, name: str) -> Response:
        return Response(status=200 if await asyncio.to_thread(self._store.exists, name) else 404)

    async def _put(self, request: Request, name: str) -> Response:
        store, body = self._store, request.body
        if request.headers.get("if-none-match", "").strip() == "*":  # create, never replace
            created = await asyncio.to_thread(store.create, name, body)
            return Response(status=201) if created else Response.error(412, f"{name} exists")
        if self.append_only and not name.startswith("locks/"):
            try:
                existing = await asyncio.to_thread(store.read, name)
            except MissingDataError:
                existing = None
            if existing is not None:
                if hmac.compare_digest(existing, body):
                    return Response(status=200)  # a retried upload: already stored as sent
                return Response.error(409, f"refusing to overwrite {name}: append-only repository")
        await asyncio.to_thread(store.write, name, body)
        return Response(status=201)

    async def _delete(self, request: Request, name: str) -> Response:
        if self.append_only and not name.startswith("locks/"):
            return Response.error(403, f"refusing to delete {name}: append-only repository")
        await asyncio.to_thread(self._store.delete, name)
        return Response(status=204)

    async def _list(self, request: Request) -> Response:
        prefix = request.query_params().get("prefix", [""])[0]
        if prefix not in _TOP:
            return Response.error(400, f"prefix must be one of {', '.join(_TOP)}")
        found = await asyncio.to_thread(self._store.list, prefix)
        return Response.json([[i.name, i.size, i.mtime] for i in found])


class HttpBackend:
    """A repository served by ``gyro backup repo-serve``: ``http://host:port/`` (or https).

    The token comes from ``GYRO_BACKUP_REPO_TOKEN`` or ``?token_file=PATH`` in the URL, never from
    the URL itself (URLs end up in logs and process lists). One connection pool per thread, so
    parallel backups and restores do not queue behind each other.
    """

    def __init__(self, url: str, token: str | None = None) -> None:
        parts = urlsplit(url)
        self.base = urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.location = self.base
        self._token = token
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_url(cls, url: str) -> HttpBackend:
        token_file = parse_qs(urlsplit(url).query).get("token_file", [""])[0]
        token = os.environ.get(TOKEN_ENV) or None
        if token_file:
            try:
                token = Path(token_file).read_text().strip()
            except OSError as exc:
                raise BackupError(
                    f"cannot read the repository token file {token_file}: {exc.strerror}"
                ) from None
        return cls(url, token)

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            headers = {"authorization": f"Bearer {self._token}"} if self._token else {}
            with self._lock:
                if self._closed:  # a worker still running after a failed backup closed us
                    raise BackendError("the repository is closed", location=self.location)
                client = httpx.Client(headers=headers, timeout=TIMEOUT)
                self._clients.append(client)
            self._local.client = client
        return client

    def _call(
        self,
        method: str,
        name: str,
        *,
        content: Any = None,
        headers: Any = None,
        expected: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The server's answer; an error unless 2xx or one of ``expected``."""
        url = f"{self.base}{_PREFIX}{quote(name)}"
        try:
            answer = self._client().request(method, url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(f"{name}: {exc}", location=self.location) from exc
        if answer.status_code < 300 or answer.status_code in expected:
            return answer
        raise self._error(answer, name)

    def _error(self, answer: httpx.Response, name: str) -> Exception:
        status = answer.status_code
        try:
            message = str(answer.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = answer.text[:200]
        if status == 404:
            return MissingDataError(f"{name} is missing", location=self.location)
        if status in (403, 409):
            return AppendOnlyError(message, location=self.location)
        if status == 507:
            return StorageFullError(message, location=self.location)
        if status == 401:
            return BackendError(
                f"the repository server refused the token ({TOKEN_ENV} or ?token_file=)",
                location=self.location,
            )
        return BackendError(f"{name}: HTTP {status}: {message}", location=self.location)

    def write(self, name: str, data: bytes | bytearray | memoryview) -> None:
        self._call("PUT", name, content=bytes(data))

    def create(self, name: str, data: bytes | bytearray | memoryview) -> bool:
        only_new = {"if-none-match": "*"}
        answer = self._call("PUT", name, content=bytes(data), headers=only_new, expected=(412,))
        return answer.status_code != 412  # 412: it exists

    def read(self, name: str) -> bytes:
        return self._call("GET", name).content

    def read_range(self, name: str, offset: int, length: int) -> bytes:
        wanted = {"range": f"bytes={offset}-{offset + length - 1}"}
        data = self._call("GET", name, headers=wanted).content
        if len(data) != length:
            raise MissingDataError(
                f"{name} is truncated (wanted {length} bytes at {offset})", location=self.location
            )
        return data

    def exists(self, name: str) -> bool:
        return self._call("HEAD", name, expected=(404,)).status_code == 200

    def list(self, prefix: str) -> list[ObjectInfo]:
        try:
            answer = self._client().get(f"{self.base}/v1/list", params={"prefix": prefix})
        except httpx.HTTPError as exc:
            raise BackendError(f"listing {prefix}: {exc}", location=self.location) from exc
        if answer.status_code != 200:
            raise self._error(answer, prefix)
        return [ObjectInfo(str(n), int(s), float(m)) for n, s, m in json.loads(answer.content)]

    def delete(self, name: str) -> None:
        try:
            self._call("DELETE", name)
        except MissingDataError:
            return

    def close(self) -> None:
        with self._lock:
            self._closed = True
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()
        self._local = threading.local()
