"""Listing the sources: directory entries and their lstat, in a stable order, parents first.

A ``Walk`` lists on its own thread, ahead of the backup, in batches through a bounded queue: it can
start before the repository is unlocked (Argon2id and lstat both release the GIL, so the listing
overlaps the key derivation) and it keeps running while the backup reads changed files. The queue
bound keeps memory flat however many files the sources hold.
"""

from __future__ import annotations

import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

from gyroscope.backup._errors import SourceError

__all__ = ["Walk", "arc_path", "walk_tree"]

Item = tuple[str, str, os.stat_result]
StatMany = Callable[[list[str]], list[os.stat_result | None]]
BATCH = 512
AHEAD = 64  # batches queued at most (~32k entries)


def arc_path(path: str) -> str:
    return os.path.abspath(path).lstrip("/") or "."


def _lstat_or_none(paths: list[str]) -> list[os.stat_result | None]:
    out: list[os.stat_result | None] = []
    for path in paths:
        try:
            out.append(os.lstat(path))
        except FileNotFoundError:
            out.append(None)  # vanished between listing and lstat: not part of this snapshot
    return out


def _stat_many(pool: ThreadPoolExecutor) -> StatMany:
    """lstat a directory's entries, half of a large directory on a helper thread (lstat releases
    the GIL, so the walk of many small files runs on two cores)."""

    def stat_many(paths: list[str]) -> list[os.stat_result | None]:
        if len(paths) < 64:
            return _lstat_or_none(paths)
        half = len(paths) // 2
        first = pool.submit(_lstat_or_none, paths[:half])
        rest = _lstat_or_none(paths[half:])
        return first.result() + rest

    return stat_many


def walk_tree(
    root: str, arcroot: str, warn: Callable[[str], None], stat_many: StatMany = _lstat_or_none
) -> Iterator[Item]:
    """(real path, archive path, lstat) in a stable order, parents first."""
    st = os.lstat(root)
    yield root, arcroot, st
    if stat.S_ISDIR(st.st_mode):
        yield from _walk_dir(root, arcroot, warn, stat_many)


def _walk_dir(
    directory: str, arcdir: str, warn: Callable[[str], None], stat_many: StatMany
) -> Iterator[Item]:
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    except PermissionError:
        warn(f"{arcdir}: permission denied (its contents are not in this snapshot)")
        return
    paths = [os.path.join(directory, name) for name in names]
    for name, path, st in zip(names, paths, stat_many(paths), strict=True):
        if st is None:
            continue
        arc = f"{arcdir}/{name}"
        yield path, arc, st
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(path, arc, warn, stat_many)


class Walk:
    """The listing of ``paths`` on a background thread; iterate to get batches of entries.

    >>> import tempfile
    >>> w = Walk([tempfile.mkdtemp()])
    >>> [len(batch) for batch in w]
    [1]
    >>> w.close()
    """

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)
        self.warnings: list[str] = []
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="backup-walk", daemon=True)
        self._thread.start()

    def _put(self, kind: str, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="backup-stat") as pool:
                stat_many = _stat_many(pool)
                for root in self.paths:
                    if not self._walk_root(root, stat_many):
                        return
            self._put("end", None)
        except BaseException as exc:
            self._put("error", exc)

    def _walk_root(self, root: str, stat_many: StatMany) -> bool:
        batch: list[Item] = []
        try:
            for item in walk_tree(root, arc_path(root), self.warnings.append, stat_many):
                batch.append(item)
                if len(batch) >= BATCH:
                    if not self._put("items", batch):
                        return False
                    batch = []
        except FileNotFoundError:
            return self._put("gone", root) and False
        return self._put("items", batch)

    def __iter__(self) -> Iterator[list[Item]]:
        while True:
            kind, value = self._queue.get()
            if kind == "items":
                yield value  # type: ignore[misc]
            elif kind == "end":
                return
            elif kind == "gone":
                raise SourceError(
                    "vanished during the backup; nothing was committed (run again)",
                    source=str(value),
                )
            else:
                raise value  # type: ignore[misc]

    def close(self) -> None:
        """Stop the listing thread (a no-op once it has finished)."""
        self._stop.set()
        self._thread.join()
