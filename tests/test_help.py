"""``--help`` answers: every option of every command and subcommand has help and names its
default; ``python -m boltzkit`` works."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from boltzkit.cli import build_parser
from boltzkit.cli.common import HelpFormatter


def _parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ("boltzkit",)):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, path + (name,))


def _options():
    for path, parser in _parsers(build_parser()):
        in_required_group = {id(a) for g in parser._mutually_exclusive_groups if g.required
                             for a in g._group_actions}
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, (argparse._SubParsersAction, argparse._HelpAction, argparse._VersionAction)):
                continue
            name = "/".join(action.option_strings) or action.metavar or action.dest
            text = formatter._expand_help(action) if action.help else ""
            needs_default = bool(action.option_strings) and not action.required and id(action) not in in_required_group
            yield " ".join(path), name, text, needs_default


OPTIONS = list(_options())


def test_every_command_is_walked():
    commands = {command for command, *_ in OPTIONS}
    assert {"boltzkit train", "boltzkit sample", "boltzkit evaluate", "boltzkit gradcheck",
            "boltzkit recommend train", "boltzkit recommend evaluate", "boltzkit recommend top"} <= commands
    assert len(OPTIONS) > 100


@pytest.mark.parametrize("command,name,text,needs_default", OPTIONS,
                         ids=[f"{c}:{n}" for c, n, *_ in OPTIONS])
def test_every_option_has_help_and_a_default(command, name, text, needs_default):
    assert text.strip(), f"{command} {name}: no help"
    if needs_default:
        assert "default" in text, f"{command} {name}: help names no default: {text!r}"


def test_formatter_shows_zero_none_and_switch_defaults():
    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="seed")
    parser.add_argument("--delta", type=float, default=0.0, help="delta")
    parser.add_argument("--valid", help="validation file")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--unset-flag", action="store_const", const=True, default=None, help="a switch")
    parser.add_argument("--lr", type=float, default=0.1, help="rate (default 0.1)")
    text = " ".join(parser.format_help().split())
    for expected in ("seed (default: 0)", "delta (default: 0.0)", "validation file (default: none)",
                     "a switch (default: off) --unset-flag", "rate (default 0.1)"):
        assert expected in text, expected


def test_python_dash_m_boltzkit_runs():
    done = subprocess.run([sys.executable, "-m", "boltzkit", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "usage: boltzkit" in done.stdout
