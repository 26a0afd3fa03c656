"""Backup and restore of a ~1 GB mixed data set: gyroscope vs restic (borg alongside).

The benchmark generates the data set in a temporary directory: compressible text (log-like lines),
random binary, many small files, and duplicated files. Each round (order alternating, A B / B A)
measures, for gyroscope and for restic (Debian ``restic``, local repository, ``RESTIC_PASSWORD``):

- a full backup into a fresh repository (and the repository's size),
- an incremental backup after changing ~5% of the data (edits in large files, appends to small
  files, new files),
- a full restore into an empty directory, compared byte for byte with the source (restored trees
  are kept until the end of the run: ~(rounds x 2 + 1) x the data set's size on disk).

Wall time, CPU time (user+sys of the process, from ``wait4``) and peak memory (``ru_maxrss``) come
from each tool's own process. Borg (``borgbackup``, lz4, repokey) is measured in the first round only.

    python bench/backup.py [--size-mb 1024] [--rounds 3] [--no-borg]
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "bench-password-not-secret"
OURS = [
    sys.executable,
    "-c",
    "from gyroscope.cli.backup import backup; backup.main(prog_name='gyro backup')",
]
_VOCABULARY = """
model request token latency gateway replica error warning info debug cache hit miss upstream
timeout retry backoff stream chunk shard tensor gpu memory queue batch prompt completion user
session health probe alert rule metric sample scrape target deploy canary rollback capacity
"""
WORDS = _VOCABULARY.split()


@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float


def run(argv: list[str], *, env: dict[str, str], cwd: Path | None = None) -> Run:
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode not in (0, 3):
        raise SystemExit(
            f"{argv[0]} {' '.join(argv[1:4])} failed ({proc.returncode}): {err.strip()[-500:]}"
        )
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def text_block(rng: random.Random, size: int) -> bytes:
    lines, total = [], 0
    while total < size:
        line = (
            f"2026-11-{rng.randint(1, 28):02} {rng.randint(0, 23):02}:{rng.randint(0, 59):02} "
            + " ".join(rng.choices(WORDS, k=rng.randint(6, 16)))
            + f" id={rng.getrandbits(32):08x} ms={rng.random() * 900:.2f}\n"
        )
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()


def generate(root: Path, size_mb: int, rng: random.Random) -> None:
    """~30% text, ~40% random binary, ~10% small files, ~20% duplicates (by bytes)."""
    mb = 1 << 20
    (root / "logs").mkdir(parents=True)
    (root / "blobs").mkdir()
    (root / "small").mkdir()
    (root / "copies").mkdir()
    block = text_block(rng, 4 * mb)
    for i in range(max(1, size_mb * 30 // 100 // 16)):  # 16 MB text files, each different
        with open(root / "logs" / f"app{i:03}.log", "wb") as fh:
            for _ in range(4):
                fh.write(text_block(rng, 64 * 1024))
                fh.write(block[rng.randrange(0, mb) :])  # shared phrasing, shifted: compressible
                fh.write(rng.randbytes(4096).hex().encode())
    for i in range(max(1, size_mb * 40 // 100 // 32)):
        (root / "blobs" / f"weights{i:03}.bin").write_bytes(os.urandom(32 * mb))
    n_small = size_mb * 10 // 100 * 1024 // 5  # ~5 KB each
    for i in range(n_small):
        d = root / "small" / f"d{i % 200:03}"
        d.mkdir(exist_ok=True)
        data = (
            text_block(rng, rng.randint(500, 8000))
            if i % 2
            else rng.randbytes(rng.randint(200, 9000))
        )
        (d / f"f{i:05}.dat").write_bytes(data)
    sources = sorted((root / "blobs").iterdir()) + sorted((root / "logs").iterdir())
    copied = 0
    for i, src in enumerate(sources):
        if copied >= size_mb * 20 // 100 * mb:
            break
        shutil.copyfile(src, root / "copies" / f"copy{i:03}{src.suffix}")
        copied += src.stat().st_size


def change_5_percent(root: Path, rng: random.Random) -> int:
    """Edit ~5% of the bytes: overwrite ranges in a few big files, append to small ones, add files."""
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    budget = total * 5 // 100
    changed = 0
    big = sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size > 8 << 20)
    for path in rng.sample(big, max(1, len(big) // 5)):
        if changed >= budget * 0.6:
            break
        with open(path, "r+b") as fh:
            for _ in range(4):
                fh.seek(rng.randrange(0, path.stat().st_size - (1 << 20)))
                fh.write(os.urandom(1 << 20))
                changed += 1 << 20
    small = sorted(p for p in (root / "small").rglob("*") if p.is_file())
    for path in rng.sample(small, len(small) // 20):
        with open(path, "ab") as fh:
            fh.write(text_block(rng, 600))
        changed += 600
    new = root / "new" / f"n{rng.getrandbits(32):08x}"
    new.mkdir(parents=True)
    while changed < budget:
        (new / f"{changed}.bin").write_bytes(os.urandom(4 << 20))
        changed += 4 << 20
    return changed


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b)
    if cmp.left_only or cmp.right_only or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    return not mismatch and not errors and all(same_tree(a / d, b / d) for d in cmp.common_dirs)


class Tool:
    def __init__(self, name: str, work: Path, data: Path, env: dict[str, str]) -> None:
        self.name, self.work, self.data, self.env = name, work, data, env
        self.repo = work / f"repo-{name}"

    def reset(self) -> None:
        shutil.rmtree(self.repo, ignore_errors=True)
        self.init()

    def restored_root(self, target: Path) -> Path:
        return target / str(self.data).lstrip("/")


class Ours(Tool):
    def init(self) -> None:
        run([*OURS, "init", str(self.repo)], env=self.env)

    def backup(self) -> Run:
        return run([*OURS, "create", str(self.repo), str(self.data)], env=self.env)

    def restore(self, target: Path) -> Run:
        return run(
            [*OURS, "restore", str(self.repo), "latest", "--target", str(target)], env=self.env
        )


class Restic(Tool):
    def init(self) -> None:
        run(["restic", "init", "--repo", str(self.repo), "-q"], env=self.env)

    def backup(self) -> Run:
        return run(
            ["restic", "backup", "--repo", str(self.repo), "-q", str(self.data)], env=self.env
        )

    def restore(self, target: Path) -> Run:
        return run(
            [
                "restic",
                "restore",
                "latest",
                "--repo",
                str(self.repo),
                "-q",
                "--target",
                str(target),
            ],
            env=self.env,
        )


class Borg(Tool):
    def init(self) -> None:
        run(["borg", "init", "-e", "repokey", str(self.repo)], env=self.env)

    def backup(self) -> Run:
        return run(
            ["borg", "create", f"{self.repo}::s{time.time_ns()}", str(self.data)], env=self.env
        )

    def restore(self, target: Path) -> Run:
        target.mkdir(parents=True, exist_ok=True)
        listing = subprocess.run(
            ["borg", "list", "--short", "--last", "1", str(self.repo)],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return run(["borg", "extract", f"{self.repo}::{listing}"], env=self.env, cwd=target)


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (range {min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-borg", action="store_true")
    args = parser.parse_args()
    for tool in ("restic", *(() if args.no_borg else ("borg",))):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/services.sh install)")
    env = {
        **os.environ,
        "GYRO_BACKUP_PASSWORD": PASSWORD,
        "RESTIC_PASSWORD": PASSWORD,
        "BORG_PASSPHRASE": PASSWORD,
        "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
        "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        "RESTIC_CACHE_DIR": "",
        "BORG_BASE_DIR": "",
    }
    # A wheel install byte-compiles the package; an editable install under
    # PYTHONDONTWRITEBYTECODE=1 would recompile every module on every run (~40 ms per command).
    import gyroscope

    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", os.path.dirname(gyroscope.__file__)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rng = random.Random(42)
    with tempfile.TemporaryDirectory(
        prefix="gyro-bench-backup-", dir=os.environ.get("BENCH_TMP")
    ) as tmp:
        work = Path(tmp)
        env["RESTIC_CACHE_DIR"] = str(work / "restic-cache")
        env["BORG_BASE_DIR"] = str(work / "borg-base")
        data = work / "data"
        t0 = time.perf_counter()
        generate(data, args.size_mb, rng)
        size = dir_size(data)
        files = sum(1 for f in data.rglob("*") if f.is_file())
        print(
            f"data set: {size / 1e6:.0f} MB in {files} files, generated in {time.perf_counter() - t0:.0f} s; "
            f"cores {os.cpu_count()}",
            flush=True,
        )
        ours, restic = Ours("gyro", work, data, env), Restic("restic", work, data, env)
        results: dict[str, dict[str, list[float]]] = {"gyro": {}, "restic": {}, "borg": {}}
        identical = True

        def record(tool: Tool, key: str, value: float) -> None:
            results[tool.name].setdefault(key, []).append(value)

        def measure(tool: Tool) -> None:
            nonlocal identical
            tool.reset()
            full = tool.backup()
            record(tool, "full", full.wall)
            record(tool, "full_cpu_per_mb", full.cpu / (size / 1e6) * 1000)
            record(tool, "rss_mb", full.rss_mb)
            record(tool, "repo_mb", dir_size(tool.repo) / 1e6)
            return_state.append(tool)

        for r in range(args.rounds):
            load = os.getloadavg()[0]
            order = [ours, restic] if r % 2 == 0 else [restic, ours]
            return_state: list[Tool] = []
            for tool in order:
                measure(tool)
            changed = change_5_percent(data, rng)
            for tool in order:
                incr = tool.backup()
                record(tool, "incr", incr.wall)
                record(tool, "incr_cpu", incr.cpu)
                record(tool, "incr_rss_mb", incr.rss_mb)
            for tool in order:
                # Restored trees stay until the end: deleting ~20k files just before the other
                # tool's timed restore made ext4 skip the freshly freed inodes when allocating new
                # ones ("recently deleted"), so restores slowed round after round for both tools
                # (10 s -> 24 s at 1 GB) and the ratio measured the file system, not the tools.
                target = work / f"restore-{tool.name}-{r}"
                res = tool.restore(target)
                record(tool, "restore", res.wall)
                record(tool, "restore_rss_mb", res.rss_mb)
                record(tool, "restore_cpu_per_mb", res.cpu / (size / 1e6) * 1000)
                ok = same_tree(data, tool.restored_root(target))
                identical &= ok
                if not ok:
                    print(f"  {tool.name}: restore NOT byte-identical", flush=True)
            g, s = results["gyro"], results["restic"]
            print(
                f"round {r + 1} (load {load:.2f}, changed {changed / 1e6:.0f} MB): "
                f"full gyro {g['full'][-1]:.1f}s restic {s['full'][-1]:.1f}s | "
                f"incr gyro {g['incr'][-1]:.1f}s restic {s['incr'][-1]:.1f}s | "
                f"restore gyro {g['restore'][-1]:.1f}s restic {s['restore'][-1]:.1f}s | "
                f"repo gyro {g['repo_mb'][-1]:.0f}MB restic {s['repo_mb'][-1]:.0f}MB",
                flush=True,
            )
            if r == 0 and not args.no_borg:
                borg = Borg("borg", work, data, env)
                borg.reset()
                b_full = borg.backup()
                record(borg, "full", b_full.wall)
                record(borg, "rss_mb", b_full.rss_mb)
                record(borg, "repo_mb", dir_size(borg.repo) / 1e6)
                target = work / "restore-borg"
                record(borg, "restore", borg.restore(target).wall)
                shutil.rmtree(borg.repo, ignore_errors=True)
                print(
                    f"borg (round 1 data after the change): full {b_full.wall:.1f}s, repo "
                    f"{results['borg']['repo_mb'][0]:.0f} MB, restore {results['borg']['restore'][0]:.1f}s, "
                    f"peak {b_full.rss_mb:.0f} MB",
                    flush=True,
                )

    g, s = results["gyro"], results["restic"]
    full_ratio = [b / a for a, b in zip(g["full"], s["full"], strict=True)]
    incr_ratio = [a / b for a, b in zip(g["incr"], s["incr"], strict=True)]
    restore_ratio = [b / a for a, b in zip(g["restore"], s["restore"], strict=True)]
    repo_ratio = [a / b for a, b in zip(g["repo_mb"], s["repo_mb"], strict=True)]
    print(
        f"CPU ms per MB, full backup: gyro {fmt(g['full_cpu_per_mb'])}, restic {fmt(s['full_cpu_per_mb'])}"
    )
    print(
        f"CPU s, incremental: gyro {fmt(g['incr_cpu'])}, restic {fmt(s['incr_cpu'])}; "
        f"peak memory MB, incremental: gyro {fmt(g['incr_rss_mb'])}, restic {fmt(s['incr_rss_mb'])}"
    )
    print(
        f"CPU ms per MB, restore: gyro {fmt(g['restore_cpu_per_mb'])}, restic {fmt(s['restore_cpu_per_mb'])}"
    )
    print(
        f"peak memory MB: backup gyro {fmt(g['rss_mb'])}, restic {fmt(s['rss_mb'])}; "
        f"restore gyro {fmt(g['restore_rss_mb'])}, restic {fmt(s['restore_rss_mb'])}"
    )
    if results["borg"]:
        b = results["borg"]
        print(
            f"borg alongside: full {b['full'][0]:.1f}s (gyro median {statistics.median(g['full']):.1f}s), "
            f"repo {b['repo_mb'][0]:.0f} MB, restore {b['restore'][0]:.1f}s, peak {b['rss_mb'][0]:.0f} MB"
        )
    target = [
        (
            "full backup speed vs restic",
            full_ratio,
            ">= 1.5x",
            statistics.median(full_ratio) >= 1.5,
            "x",
        ),
        ("repository size vs restic", repo_ratio, "<= 1.0x", max(repo_ratio) <= 1.0, "x"),
        (
            "incremental time vs restic",
            incr_ratio,
            "<= 0.5x",
            statistics.median(incr_ratio) <= 0.5,
            "x",
        ),
        (
            "full restore speed vs restic",
            restore_ratio,
            ">= 1.2x, byte-identical",
            statistics.median(restore_ratio) >= 1.2 and identical,
            "x",
        ),
    ]
    print(f"rounds: {args.rounds}; data {size / 1e6:.0f} MB; restores byte-identical: {identical}")
    for name, values, goal, holds, unit in target:
        print(f"{name}: {fmt(values)}{unit}  goal {goal}: {'HOLDS' if holds else 'does not hold'}")


if __name__ == "__main__":
    main()
