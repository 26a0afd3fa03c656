"""The fast path for plain upstream answers: what it accepts, what it leaves to httptools, and
that answers taking it reach the client exactly as the full path would send them."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gyroscope.gateway import _head
from gyroscope.gateway._head import simple_head

NGINX = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Thu, 26 Nov 2026 23:00:00 GMT\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n{}"
)


def test_a_plain_answer_is_forwarded_without_its_connection_header():
    status, end, block, length, keep_alive, has_date = simple_head(NGINX)  # type: ignore[misc]
    assert (status, length, keep_alive, has_date) == (200, 2, True, True)
    assert NGINX[end:] == b"{}"
    assert b"Connection" not in block
    assert block.startswith(b"Server: nginx\r\n") and block.endswith(b"Content-Length: 2\r\n")


def test_connection_close_is_seen_and_removed():
    head = simple_head(b"HTTP/1.1 503 Busy\r\nconnection:  close \r\ncontent-length: 0\r\n\r\n")
    assert head is not None
    assert head[0] == 503 and head[3] == 0 and head[4] is False
    assert head[2] == b"content-length: 0\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",  # head not complete yet
        b"HTTP/1.1 200 OK\r\n\r\nab",  # close-delimited body
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nab",  # HTTP/1.0 keep-alive rules
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nab",  # space before the colon
        b"HTTP/1.1 200 OK\r\nX: a\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nX: \x00\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: close\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTE: trailers\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\nab",
        b"SPAM SPAM SPAM\r\n\r\n",
    ],
)
def test_anything_unusual_is_left_to_the_full_parser(data):
    assert simple_head(data) is None


async def test_fast_path_answer_matches_the_protocol(raw_upstream, gateway):
    up = await raw_upstream(
        b"HTTP/1.1 201 Created\r\nX-Up: 1\r\nContent-Length: 5\r\nConnection: keep-alive\r\n"
        b"\r\nhello"
    )
    gw = await gateway([up], health={"enabled": False})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(3):
            r = await client.get("/", headers={"x-request-id": "mine"})
            assert (r.status_code, r.content, r.headers["x-up"]) == (201, b"hello", "1")
            assert r.headers["x-request-id"] == "mine"
            assert "date" in r.headers and "connection" not in r.headers
        head = await client.head("/")  # HEAD takes the full path: no body is waited for
        assert head.status_code == 201 and head.content == b""
    assert gw.endpoints[0].pool.opened == 1  # one connection, reused


async def test_bytes_after_a_fast_path_answer_retire_the_connection(raw_upstream, gateway):
    up = await raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloGARBAGE")
    gw = await gateway([up], health={"enabled": False})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        for _ in range(2):
            r = await client.get("/")
            assert (r.status_code, r.content) == (200, b"hello")
    assert gw.endpoints[0].pool.opened == 2  # the first connection was not reused


async def test_a_body_over_several_reads_is_counted_to_its_end(gateway):
    body = bytes(range(256)) * 4096  # 1 MiB: many reads on the gateway's side

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body))
                for i in range(0, len(body), 65536):
                    writer.write(body[i : i + 65536])
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        gw = await gateway(
            health={"enabled": False}, backends=[{"name": "big", "address": f"127.0.0.1:{port}"}]
        )
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
            for _ in range(2):
                r = await client.get("/")
                assert r.status_code == 200 and r.content == body
        assert gw.endpoints[0].pool.opened == 1
    finally:
        server.close()


async def test_a_fast_path_body_cut_short_aborts_the_client(raw_upstream, gateway):
    up = await raw_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this", close=True)
    gw = await gateway([up], health={"enabled": False})
    async with httpx.AsyncClient(base_url=gw.url) as client:
        with pytest.raises(httpx.HTTPError):
            await client.get("/")


_PIECES = [
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 204 No Content\r\n",
    b"HTTP/1.0 200 OK\r\n",
    b"Content-Length: 2\r\n",
    b"content-length: 10\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Date: Thu, 26 Nov 2026 23:00:00 GMT\r\n",
    b"X-A: \x00\r\n",
    b" folded\r\n",
    b"\r\n",
    b"\n",
    b"ab",
]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=8), st.binary(max_size=6))
def test_remembered_heads_give_the_verdict_a_fresh_parse_gives(pieces, tail):
    """Heads are remembered by their bytes: a second look, or the same head with another body,
    never changes what the fast path decides."""
    data = b"".join(pieces) + tail
    expected = _head._parse(data)
    assert simple_head(data) == expected
    assert simple_head(data) == expected  # now from the table
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        assert simple_head(data[: end + 4] + b"other body") == _head._parse(
            data[: end + 4] + b"other body"
        )
    assert len(_head._SEEN) <= _head._SEEN.limit


def test_the_last_head_is_recognised_by_its_prefix_alone():
    """The head seen last is checked before the table: data starting with it has exactly that
    head, whatever follows; anything else is looked at afresh."""
    head = NGINX[: NGINX.find(b"\r\n\r\n") + 4]
    verdict = simple_head(NGINX)
    assert verdict is not None and _head._RECENT.key == head
    assert simple_head(head + b"[1, 2, 3]") == verdict  # another body of the same length
    assert simple_head(head[:-1]) is None  # not complete: the parser waits
    assert simple_head(b"\0" + head) is None  # garbage, whatever came before
    not_found = simple_head(head.replace(b"200 OK", b"404 Not Found") + b"{}")
    assert not_found is not None and not_found[0] == 404
    assert simple_head(NGINX) == verdict
    assert _head.Recent(None).key == b"\0"  # a fresh slot matches no HTTP answer


def test_a_head_seen_last_takes_its_verdict_from_the_slot():
    """A planted verdict comes back for data starting with the slot's head, and only for it."""
    head = NGINX[: NGINX.find(b"\r\n\r\n") + 4]
    simple_head(NGINX)
    planted = (299, len(head), b"planted\r\n", 2, True, True)
    _head._RECENT.verdict = planted
    try:
        assert simple_head(head + b"{}") == planted
        assert simple_head(head.replace(b"200 OK", b"201 Created") + b"{}") != planted
    finally:
        _head._RECENT.key, _head._RECENT.verdict = b"\0", None


def test_the_table_of_heads_stays_bounded():
    for n in range(3 * _head._SEEN.limit):
        assert simple_head(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n) is not None
    assert len(_head._SEEN) <= _head._SEEN.limit
    huge = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 8000 + b"\r\nContent-Length: 0\r\n\r\n"
    assert simple_head(huge) is not None and huge[: huge.find(b"\r\n\r\n") + 4] not in _head._SEEN
