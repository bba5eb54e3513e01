"""Every code block of README.md runs: Python blocks are executed, shell blocks run their
commands (the setup steps — venv, pip, the test run itself — are what .ci/run does)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```(python|bash)\n(.*?)```", README.read_text("utf-8"), flags=re.S)
#: shell steps that set up the environment CI already runs in (and the test run that runs this file)
SETUP = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("readme")
    (path / "runs").mkdir()
    return path


def _commands(block: str) -> list[str]:
    lines = block.replace("\\\n", " ").splitlines()
    steps = [step.strip() for line in lines if line.strip() for step in line.split(" && ")]
    return [step for step in steps if not step.startswith(SETUP)]


def test_readme_has_the_two_first_commands():
    first, second = BLOCKS[0][1], BLOCKS[1][1]
    assert "boltzkit train --out runs/demo" in first and "pip install torch==2.13.0" in first
    assert "python -m pytest -q" in second
    assert "python -m pytest -q" in (Path(__file__).parents[1] / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, workdir, monkeypatch):
    language, code = BLOCKS[index]
    monkeypatch.chdir(workdir)
    if language == "python":
        exec(compile(code, f"README.md block {index}", "exec"), {"__name__": "__readme__"})
        return
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for command in _commands(code):
        done = subprocess.run(command, shell=True, cwd=workdir, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
