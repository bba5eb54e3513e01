"""The tutorials in docs/ run: the ```python blocks of each page are executed in order, sharing
one namespace as a reader's session would (docs/sequences.md is run by tests/test_rnn.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).parents[1] / "docs"
PAGES = [page for page in sorted(DOCS.glob("*.md")) if page.name != "sequences.md"]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_tutorial_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    blocks = re.findall(r"```python\n(.*?)```", page.read_text("utf-8"), flags=re.S)
    assert blocks, f"{page.name} has no Python example"
    for index, code in enumerate(blocks):
        exec(compile(code, f"docs/{page.name} block {index}", "exec"), namespace)
