"""A fast parser of the Prometheus text exposition format (version 0.0.4).

The stock parser builds a ``Metric`` object per family and a ``Sample`` per line; a scraper needs
neither. Here a line is split into its series text and value, and the series text is looked up in
a cache that survives between scrapes of the same target, so a steady target costs one dict lookup,
one ``float()`` and no label parsing per sample.

>>> cache = SeriesCache()
>>> parse_text('up{job="a"} 1\\n# HELP x y\\nx 2.5 1700000000000\\n', cache)
[((('__name__', 'up'), ('job', 'a')), 1.0, None), ((('__name__', 'x'),), 2.5, 1700000000000)]
"""

from __future__ import annotations

import re

from gyroscope.monitor._errors import ScrapeError

__all__ = ["Labels", "Sample", "SeriesCache", "format_labels", "parse_labels_text", "parse_text"]

Labels = tuple[tuple[str, str], ...]
Sample = tuple[Labels, float, int | None]

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_PAIR = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(,|\Z)')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPED = re.compile(r"\\[\\\"n]")


class SeriesCache(dict[str, Labels]):
    """Series text as it appears on the wire -> parsed, sorted labels. One per target."""

    limit = 200_000  # a target that churns label values must not grow this without bound

    def lookup(self, text: str, extra: Labels) -> Labels:
        labels = self.get(text)
        if labels is None:
            if len(self) >= self.limit:
                self.clear()
            labels = parse_labels_text(text, extra)
            self[text] = labels
        return labels


def _unescape(value: str) -> str:
    return _ESCAPED.sub(lambda m: _UNESCAPE[m.group(0)], value) if "\\" in value else value


def parse_labels_text(text: str, extra: Labels = (), *, honor: bool = False) -> Labels:
    """``name{a="b"}`` -> sorted labels with ``__name__``; raises ``ValueError`` on bad syntax.

    ``extra`` (the target's job, instance, ...) wins over a scraped label of the same name, which
    is kept as ``exported_<name>``; with ``honor`` (federation) the scraped label wins.
    """
    brace = text.find("{")
    name = text if brace < 0 else text[:brace]
    if not _NAME.match(name):
        raise ValueError(f"invalid metric name {name!r}")
    pairs: dict[str, str] = dict(extra)
    extra_names = frozenset(pairs)
    if brace >= 0:
        if not text.endswith("}"):
            raise ValueError("unclosed label set")
        body = text[brace + 1 : -1]
        pos = 0
        while pos < len(body) and body[pos:].strip():
            match = _PAIR.match(body, pos)
            if match is None:
                raise ValueError(f"invalid label syntax near {body[pos : pos + 20]!r}")
            key = match.group(1)
            clash = key in extra_names and not honor
            pairs["exported_" + key if clash else key] = _unescape(match.group(2))
            pos = match.end()
    pairs["__name__"] = name
    return tuple(sorted((k, v) for k, v in pairs.items() if v != ""))


def _series_end(line: str) -> int:
    if "{" in line:
        end = line.rfind("}")
        if end < 0:
            raise ValueError("unclosed label set")
        return end + 1
    end = line.find(" ")
    if end < 0:
        end = line.find("\t")
    if end < 0:
        raise ValueError("no value after the series name")
    return end


def parse_text(
    text: str, cache: SeriesCache | None = None, extra: Labels = (), *, target: str = "target"
) -> list[Sample]:
    """Every sample in ``text``; ``extra`` labels (job, instance) are added (and win).

    Raises ``ScrapeError`` naming the first bad line: a target answering garbage stores nothing.
    """
    if cache is None:
        cache = SeriesCache()
    out: list[Sample] = []
    append = out.append
    lookup = cache.lookup
    for number, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line or line[0] == "#":
            continue
        try:
            end = _series_end(line)
            rest = line[end:].split()
            value = float(rest[0])
            stamp = int(rest[1]) if len(rest) > 1 else None
            if len(rest) > 2:
                raise ValueError("unexpected text after the timestamp")
            append((lookup(line[:end], extra), value, stamp))
        except (ValueError, IndexError) as exc:
            raise ScrapeError(
                f"not the Prometheus text format: {exc}", target=target, line=number
            ) from None
    return out


def format_labels(labels: Labels) -> str:
    """``name{a="b"}`` as Prometheus prints a series."""
    name = ""
    rest = []
    for key, value in labels:
        if key == "__name__":
            name = value
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            rest.append(f'{key}="{escaped}"')
    return f"{name}{{{','.join(rest)}}}" if rest or not name else name
