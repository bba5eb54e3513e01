"""The documentation site and its tutorials.

- The tutorials in docs/ run: the ```python blocks of each page are executed in order, sharing
  one namespace as a reader's session would (docs/sequences.md is run by tests/test_rnn.py).
- The site builds with warnings as errors (``mkdocs build --strict``; skipped when the ``docs``
  extra is not installed), every page is in the navigation, and the command-line reference is
  rendered from ``boltzkit.cli.build_parser()`` itself.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
#: pages that are not tutorials: generated or included, no Python of their own
NO_CODE = {"cli.md", "changelog.md"}
#: pages whose code needs an optional extra (installed by .ci/run, so they run in CI)
NEEDS = {"sklearn.md": "sklearn"}
PAGES = [page for page in sorted(DOCS.glob("*.md")) if page.name not in NO_CODE | {"sequences.md"}]


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "hooks" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_tutorial_runs(page, tmp_path, monkeypatch):
    needed = NEEDS.get(page.name)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(f"{page.name} needs the optional '{needed}' package")
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()  # a page may set it, as a reader would; the suite gets it back
    namespace = {"__name__": "__docs__"}
    blocks = re.findall(r"```python\n(.*?)```", page.read_text("utf-8"), flags=re.S)
    assert blocks, f"{page.name} has no Python example"
    try:
        for index, code in enumerate(blocks):
            exec(compile(code, f"docs/{page.name} block {index}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)


def test_every_page_is_in_the_navigation():
    config = (ROOT / "mkdocs.yml").read_text("utf-8")
    pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
    assert {"index.md", "theory.md", "rbm.md", "recommend.md", "cli.md"} <= set(pages)
    assert "sklearn.md" in config
    missing = [page for page in pages if f": {page}" not in config]
    assert not missing, f"pages not in mkdocs.yml's nav: {missing}"


def test_cli_reference_is_rendered_from_the_parsers():
    from boltzkit.cli import build_parser

    hook = _cli_reference()
    assert hook.MARKER in (DOCS / "cli.md").read_text("utf-8")
    commands = [" ".join(path) for path, _ in hook.walk(build_parser())]
    assert {"boltzkit train", "boltzkit evaluate", "boltzkit recommend train", "boltzkit gan sample"} <= set(commands)
    text = hook.on_page_markdown((DOCS / "cli.md").read_text("utf-8"), None, None, None)
    assert hook.MARKER not in text
    for command in commands:
        assert f"`{command}`" in text
    for path, parser in hook.walk(build_parser()):
        for action in parser._actions:  # every option of every command is on the page
            for flag in action.option_strings:
                assert flag in text, f"{' '.join(path)} {flag}"


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason="needs the 'docs' extra: pip install -e '.[docs]'")
def test_site_builds_with_warnings_as_errors(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    for page in ("index.html", "theory/index.html", "rbm/index.html", "recommend/index.html",
                 "cli/index.html", "api/models/index.html", "changelog/index.html"):
        assert (site / page).is_file(), page
    cli = (site / "cli" / "index.html").read_text("utf-8")
    assert "boltzkit recommend train" in cli and "--epochs" in cli
    assert "Semantic Versioning" in (site / "changelog" / "index.html").read_text("utf-8")
