"""Files: the repo root, atomic writes, jsonl reading. One way to do each, for every module and script.

`atomic_write` is how every output file of the project is written (AGENTS.md: a run never leaves partial output):
a temp file in the same directory, renamed over the target. Rename within a directory is atomic on POSIX, so a
reader sees the old file or the whole new one, never half of one, and a process killed mid-write (Ctrl-C, OOM,
a pueue kill) leaves the target untouched. No fsync: the failure we guard against is a killed process, not a
power cut, and an fsync per checkpoint or cache file would cost seconds on a busy disk for no such gain.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def atomic_write(path: str | Path, data: str | bytes | Callable[[Path], object]) -> None:
    """Write `data` to `path` via a temp file renamed over it; the parent directory is created.

    `data` is the text (UTF-8), the bytes, or a function that writes the file at the path it is given (for
    writers that want a path: safetensors, csv, matplotlib). The pid in the temp name keeps concurrent writers of
    one target apart; the temp file is removed if writing fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        elif isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            data(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a jsonl file (`.gz`: gzip-compressed), blank lines skipped. A line that is not JSON, or a byte
    that is not UTF-8, is one ValueError naming the file and the line."""
    path = Path(path)
    if path.suffix == ".gz":
        try:
            raw = gzip.decompress(path.read_bytes())
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzip file ({e})") from None
        text = decode_utf8(raw, path)
    else:
        text = read_utf8(path)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {i}: not valid JSON ({e.msg})") from None
    return rows


def read_utf8(path: str | Path) -> str:
    """A text input file; a byte that is not UTF-8 is reported with its file and line, not a codec position."""
    return decode_utf8(Path(path).read_bytes(), path)


def decode_utf8(data: bytes, path: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 text (byte {data[e.start]:#04x})") from None
