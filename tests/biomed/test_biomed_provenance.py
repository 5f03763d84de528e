"""The biomed test files are the unmodified third-party files PROVENANCE.md describes (size and sha256)."""

from __future__ import annotations

import hashlib
import re


def test_biomed_files_match_provenance(shared_data):
    text = (shared_data / "PROVENANCE.md").read_text(encoding="utf-8")
    biomed = text.split("## biomed", 1)[1].split("\n## ", 1)[0]
    entries = re.findall(r"### `(biomed/[^`]+)`.*?size: ([\d,]+) bytes; sha256 `([0-9a-f]{64})`", biomed, re.S)
    assert len(entries) == 16
    for rel, size, digest in entries:
        data = (shared_data / rel).read_bytes()
        assert len(data) == int(size.replace(",", "")), rel
        assert hashlib.sha256(data).hexdigest() == digest, rel
