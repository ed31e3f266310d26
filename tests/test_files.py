"""files.py: the one atomic write and the one jsonl reader every module uses."""

from __future__ import annotations

import gzip
import json
import re

import pytest

from projected_grpo import files


def test_repo_root_is_this_checkout():
    assert (files.REPO_ROOT / "pyproject.toml").is_file() and (files.REPO_ROOT / "src" / "projected_grpo" / "files.py").is_file()


@pytest.mark.parametrize("data", ["text é\n", b"\x00bytes", lambda tmp: tmp.write_text("by a writer")])
def test_atomic_write_text_bytes_or_writer(tmp_path, data):
    path = tmp_path / "sub" / "out.txt"  # the parent is created
    path.parent.mkdir()
    path.write_text("old")
    files.atomic_write(path, data)
    want = data if isinstance(data, bytes) else data.encode() if isinstance(data, str) else b"by a writer"
    assert path.read_bytes() == want
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"], "no temp file left behind"


def test_atomic_write_failure_keeps_the_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")

    def half_then_crash(tmp):
        tmp.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(path, half_then_crash)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


@pytest.mark.parametrize("name", ["rows.jsonl", "rows.jsonl.gz"])
def test_read_jsonl_plain_or_gz_skips_blank_lines(tmp_path, name):
    text = '{"a": 1}\n\n{"b": "é"}\n'
    path = tmp_path / name
    files.atomic_write(path, gzip.compress(text.encode()) if name.endswith(".gz") else text)
    assert files.read_jsonl(path) == [{"a": 1}, {"b": "é"}]


@pytest.mark.parametrize(
    "name, data, error",
    [
        ("bad.jsonl", b'{"a": 1}\n\n{"a": \n', "bad.jsonl: line 3: not valid JSON"),
        ("bad.jsonl.gz", gzip.compress(b'{"a": 1}\nnope\n'), "bad.jsonl.gz: line 2: not valid JSON"),
        ("bad.jsonl", b'{"a": 1}\n{"a": "caf\xe9"}\n', "bad.jsonl: line 2: not UTF-8 text (byte 0xe9)"),
        ("bad.jsonl.gz", b"plain, not gzip", "bad.jsonl.gz: not a readable gzip file"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, name, data, error):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=re.escape(error)):
        files.read_jsonl(tmp_path / name)


def test_read_jsonl_reads_what_json_dumps_writes(tmp_path):
    rows = [{"i": i, "s": "x\ny"} for i in range(3)]
    files.atomic_write(tmp_path / "r.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    assert files.read_jsonl(tmp_path / "r.jsonl") == rows
