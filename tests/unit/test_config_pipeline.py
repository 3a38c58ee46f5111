"""The log pipeline in the stack file: `filters` and `[stack.logs.outputs.NAME]`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from logging_bus.specs import (
    AddFieldsFilter,
    ConsoleOutput,
    ElasticsearchOutput,
    FileOutput,
    JsonFilter,
    LokiOutput,
    MultilineFilter,
    RegexFilter,
    SyslogOutput,
)
from supervisor import config
from supervisor.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
BASE = '[containers.redis]\nimage = "host"\ncommand = ["true"]\n'
GOOD = """
[[stack.logs.filters]]
type = "add_fields"
fields = { env = "prod" }

[stack.logs.outputs.screen]
type = "console"

[stack.logs.outputs.archive]
type = "file"
path = "out/all.jsonl"
max_size = "1m"
max_files = 3
containers = ["redis"]

[stack.logs.outputs.rsyslog]
type = "syslog"
address = "tcp://127.0.0.1:1514"
facility = "local3"

[stack.logs.outputs.grafana]
type = "loki"
url = "http://127.0.0.1:3100"
labels = { team = "a" }
retry_max = "5s"

[stack.logs.outputs.search]
type = "elasticsearch"
url = "http://127.0.0.1:9200"
index = "logs"
start = "end"
batch = 200

[containers.redis]
image = "host"
command = ["true"]

[[containers.redis.logs.filters]]
type = "regex"
pattern = '^(?P<pid>\\d+):(?P<role>[XCSM]) '

[[containers.redis.logs.filters]]
type = "multiline"
start = '^\\S'
timeout = "500ms"

[[containers.redis.logs.filters]]
type = "json"
target = "doc"
"""


def load(folder: Path, text: str) -> config.Stack:
    (folder / "stack.toml").write_text(text)
    return config.load_stack(Path(os.path.relpath(folder / "stack.toml")), {}, project="p")


def test_good_pipeline(tmp_path: Path) -> None:
    stack = load(tmp_path, GOOD)
    logs = stack.stack.logs
    assert logs.filters == [AddFieldsFilter(fields={"env": "prod"})]
    assert logs.outputs == {
        "screen": ConsoleOutput(),
        "archive": FileOutput(path=str(tmp_path / "out/all.jsonl"), max_size=1 << 20,
                              max_files=3, containers=["redis"]),
        "rsyslog": SyslogOutput(address="tcp://127.0.0.1:1514", facility="local3"),
        "grafana": LokiOutput(url="http://127.0.0.1:3100", labels={"team": "a"},
                              retry_max=5.0),
        "search": ElasticsearchOutput(url="http://127.0.0.1:9200", index="logs", start="end",
                                      batch=200),
    }
    assert stack.containers["redis"].logs.filters == [
        RegexFilter(pattern=r"^(?P<pid>\d+):(?P<role>[XCSM]) "),
        MultilineFilter(start=r"^\S", timeout=0.5), JsonFilter(target="doc")]


def test_render_loads_back_toml_and_json(tmp_path: Path) -> None:
    stack = load(tmp_path, GOOD)
    again = load(tmp_path, config.render(stack, "toml"))
    assert again.stack.logs == stack.stack.logs and again.containers == stack.containers
    decoded = msgspec.json.decode(config.render(stack, "json"), type=config.Stack)
    assert decoded == stack


BAD = [
    ("[stack.logs.outputs.l]\ntype = 'loki'\nurl = 'http://127.0.0.1:3100'\n"
     "headers = { Authorization = 'Bearer \u2603' }\n",
     "stack.logs.outputs.l.headers: expected printable ASCII names and values, "
     "got 'Authorization'"),
    ("[stack.logs.outputs.f]\ntype = 'file'\npath = '/tmp/x.jsonl'\nmax_files = 5000\n",
     "stack.logs.outputs.f.max_files: expected at most 1000, got 5000"),
    ("[[stack.logs.filters]]\npattern = 'x'\n",
     "stack.logs.filters[0]: missing key 'type', expected one of 'json', 'regex', 'multiline', "
     "'drop', 'keep', 'add_fields'"),
    ("[[stack.logs.filters]]\ntype = 'grok'\n",
     "stack.logs.filters[0].type: expected one of 'json', 'regex', 'multiline', 'drop', "
     "'keep', 'add_fields', got 'grok'"),
    ("[[stack.logs.filters]]\ntype = 'regex'\npattern = '(?P<x>'\n",
     "stack.logs.filters[0].pattern: expected a regular expression, got '(?P<x>' "
     "(missing ), unterminated subpattern at position 0)"),
    ("[[stack.logs.filters]]\ntype = 'regex'\npattern = '\\d+'\n",
     "stack.logs.filters[0].pattern: expected named groups such as (?P<level>\\w+), "
     "got '\\\\d+'"),
    ("[[stack.logs.filters]]\ntype = 'regex'\n",
     "stack.logs.filters[0]: missing key 'pattern'"),
    ("[[stack.logs.filters]]\ntype = 'drop'\nmatch = 'x'\nfeild = 'level'\n",
     "stack.logs.filters[0].feild: unknown key (did you mean 'field'?)"),
    ("[[stack.logs.filters]]\ntype = 'multiline'\nstart = 'x'\ntimeout = 'soon'\n",
     "stack.logs.filters[0].timeout: expected a duration such as '10s' or '1m30s', got 'soon'"),
    ("[[stack.logs.filters]]\ntype = 'add_fields'\nfields = { n = 1 }\n",
     "stack.logs.filters[0].fields.n: expected a string, got 1"),
    ("[stack.logs.outputs.x]\ntype = 'syslog'\naddress = 'localhost:514'\n",
     "stack.logs.outputs.x.address: expected 'udp://HOST:PORT', 'tcp://HOST:PORT' or "
     "'unix:///PATH', got 'localhost:514'"),
    ("[stack.logs.outputs.x]\ntype = 'syslog'\naddress = 'udp://h'\nfacility = 'mine'\n",
     "stack.logs.outputs.x.facility: expected a facility such as 'daemon' or 'local0', "
     "got 'mine'"),
    ("[stack.logs.outputs.x]\ntype = 'loki'\nurl = 'loki:3100'\n",
     "stack.logs.outputs.x.url: expected an http:// or https:// URL, got 'loki:3100'"),
    ("[stack.logs.outputs.x]\ntype = 'loki'\nurl = 'http://l'\nlabels = { 'a-b' = 'c' }\n",
     "stack.logs.outputs.x.labels: expected label names of letters, digits and '_', "
     "got 'a-b'"),
    ("[stack.logs.outputs.x]\ntype = 'elasticsearch'\nurl = 'http://e'\nindex = 'Logs'\n",
     "stack.logs.outputs.x.index: expected a lower-case index name without spaces or any of "
     "\\/*?\"<>|,#:, got 'Logs'"),
    ("[stack.logs.outputs.x]\ntype = 'file'\npath = 'a'\nmax_size = 0\n",
     "stack.logs.outputs.x.max_size: expected a size greater than 0, got 0"),
    ("[stack.logs.outputs.x]\ntype = 'console'\nstart = 'now'\n",
     "stack.logs.outputs.x.start: expected 'beginning' or 'end', got 'now'"),
    ("[stack.logs.outputs.x]\ntype = 'console'\nbatch = 0\n",
     "stack.logs.outputs.x.batch: expected 1 to 100000 lines, got 0"),
    ("[stack.logs.outputs.x]\ntype = 'console'\ncontainers = ['web']\n",
     "stack.logs.outputs.x.containers[0]: no container named 'web' in this stack"),
    ("[stack.logs.outputs.'a b']\ntype = 'console'\n",
     "stack.logs.outputs.\"a b\": expected an output name of letters, digits, '_', '.' and "
     "'-', starting with a letter or digit, got 'a b'"),
    ("[stack.logs.outputs]\nx = 'console'\n",
     "stack.logs.outputs.x: expected a table with a 'type' of 'console', 'file', 'syslog', "
     "'loki', 'elasticsearch', got 'console'"),
    (BASE + "[[containers.redis.logs.filters]]\ntype = 'keep'\n",
     "containers.redis.logs.filters[0]: missing key 'match'"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_values_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                 message: str) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text if text.startswith(BASE) else text + BASE)
    assert str(caught.value) == "stack.toml: " + message


def test_bad_values_through_the_cli(tmp_path: Path) -> None:
    """A few of them through `supervise config`: exit 2, exactly one line, no traceback."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    for i, (text, message) in enumerate(BAD[::6]):
        folder = tmp_path / str(i)
        folder.mkdir()
        (folder / "stack.toml").write_text(text if text.startswith(BASE) else text + BASE)
        r = subprocess.run([sys.executable, "-m", "supervisor", "config", "stack.toml"],
                           capture_output=True, text=True, cwd=folder, env=env)
        assert (r.returncode, r.stderr, r.stdout) == (2, f"stack.toml: {message}\n", "")
