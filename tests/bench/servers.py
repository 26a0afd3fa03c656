"""Real servers the bench tests and bench/loadgen.py start themselves: nginx, and small stall servers.

nginx runs from a config written into a temp dir (1 worker, a small static file, access_log off) on
a free loopback port. Under CI=true a missing nginx binary fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gyroscope.testing import free_port, wait_for_port

NGINX_CONF = """
{user}worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{port}{ssl};
        {certs}
        root {dir}/www;
        location / {{ }}
        location = /missing {{ return 404; }}
        location = /echo {{ return 200 "$request_method $request_uri"; }}
        # The same bytes as index.html from memory: no open/fstat/close per request, so nginx's
        # one core serves more and a fast generator is less limited by the target.
        location = /tiny {{ default_type text/html; return 200 "{page}"; }}
    }}
}}
"""


PAGE = "<html><body>" + "x" * 100 + "</body></html>\n"


def nginx_binary() -> str | None:
    for candidate in ("nginx", "/usr/sbin/nginx"):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@contextmanager
def nginx(
    tmp: Path, *, cpu: int | None = None, tls: bool = False
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start nginx on a free port; yields (base URL, process). Stops it on exit.

    ``tls=True`` serves HTTPS with a fresh self-signed certificate (made with openssl).
    """
    binary = nginx_binary()
    if binary is None:
        import pytest

        message = "nginx is not installed (apt-get install nginx-light)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    (tmp / "www").mkdir(parents=True, exist_ok=True)
    (tmp / "www" / "index.html").write_text(PAGE)
    conf = tmp / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    certs = ""
    if tls:
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-keyout",
                str(tmp / "key.pem"),
                "-out",
                str(tmp / "cert.pem"),
            ],
            check=True,
            capture_output=True,
        )
        certs = f"ssl_certificate {tmp}/cert.pem; ssl_certificate_key {tmp}/key.pem;"
    conf.write_text(
        NGINX_CONF.format(
            dir=tmp,
            port=port,
            user=user,
            ssl=" ssl" if tls else "",
            certs=certs,
            page=PAGE.replace("\n", "\\n"),
        )
    )
    argv = [binary, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "error.log")]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}", proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def nginx_worker_pid(tmp: Path, master: int, timeout: float = 5.0) -> int:
    """The pid of nginx's one worker process (the one to SIGSTOP for a stall)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(master)], capture_output=True, text=True, check=False
        ).stdout.split()
        if out:
            return int(out[0])
        time.sleep(0.05)
    raise TimeoutError("nginx has no worker process")


# A server for failure tests: accepts and answers whatever it was told to (garbage, nothing, close).
MISBEHAVING = r"""
import socket, sys, threading
mode = sys.argv[1]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0)); srv.listen(512)
print(srv.getsockname()[1], flush=True)
def serve(c):
    try:
        while True:
            data = c.recv(65536)
            if not data:
                return
            if mode == "garbage":
                c.sendall(b"SSH-2.0-OpenSSH_9.2 not http at all\r\n\r\n")
            elif mode == "close":
                c.close(); return
            elif mode == "silent":
                continue
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


@contextmanager
def misbehaving(mode: str) -> Iterator[str]:
    """A loopback server that answers garbage, closes at once, or never answers."""
    proc = subprocess.Popen([sys.executable, "-c", MISBEHAVING, mode], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
