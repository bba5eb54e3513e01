"""MkDocs hook: renders the command-line reference from ``boltzkit.cli.build_parser()``.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is replaced by the
``--help`` text of ``boltzkit`` and of every subcommand, nested to any depth, so the reference is
the argument parsers themselves and cannot drift from them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator

MARKER = "<!-- cli-reference -->"
WIDTH = 100  # argparse wraps help to $COLUMNS; fixed so the page does not depend on the terminal


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("boltzkit",)
         ) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """``(command path, parser)`` for ``parser`` and each subcommand below it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk(child, (*path, name))


def render() -> str:
    """The Markdown of the reference: one section per command, its help text verbatim."""
    from boltzkit.cli import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(WIDTH)
    try:
        parts = []
        for path, parser in walk(build_parser()):
            level = "#" * min(len(path) + 1, 6)
            parts.append(f"{level} `{' '.join(path)}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs hook signature)
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, render())
