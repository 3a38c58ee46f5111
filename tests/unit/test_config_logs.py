"""`[stack.logs]`: the log store's fsync policy and retention."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from supervisor import config

BASE = '[containers.web]\nimage = "host"\ncommand = ["true"]\n'


def load(tmp_path: Path, text: str) -> config.Stack:
    path = tmp_path / "stack.toml"
    path.write_text(text)
    return config.load_stack(path, {}, project="p")


def test_defaults(tmp_path: Path) -> None:
    logs = load(tmp_path, BASE).stack.logs
    assert (logs.fsync, logs.max_size, logs.max_age) == ("1s", None, None)


def test_values(tmp_path: Path) -> None:
    logs = load(tmp_path, '[stack.logs]\nfsync = "always"\nmax_size = "1g"\nmax_age = "168h"\n'
                + BASE).stack.logs
    assert (logs.fsync, logs.max_size, logs.max_age) == ("always", 1 << 30, 7 * 86400.0)


@pytest.mark.parametrize(("text", "message"), [
    ('[stack.logs]\nfsync = "sometimes"\n',
     "stack.toml: stack.logs.fsync: expected '1s', 'always' or 'never', got 'sometimes'"),
    ('[stack.logs]\nmax_size = "big"\n',
     "stack.toml: stack.logs.max_size: expected a size such as '256m', got 'big'"),
    ('[stack.logs]\nretention = "1h"\n', "stack.toml: stack.logs.retention: unknown key"),
])
def test_bad_values_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "stack.toml"
    path.write_text(text + BASE)
    r = subprocess.run([sys.executable, "-m", "supervisor", "config", "stack.toml"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(message)
    assert "Traceback" not in r.stderr
