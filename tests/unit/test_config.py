"""The stack file: good configs decode to the right values; bad ones give one exact line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import msgspec
import pytest

from supervisor.config import (
    Backoff,
    Container,
    DependsOn,
    Healthcheck,
    RestartPolicy,
    Stack,
    TmpfsSpec,
    Ulimit,
    VolumesFrom,
    VolumeSpec,
    container_from_mapping,
    load_stack,
    parse_duration,
    parse_restart,
    parse_signal,
    parse_size,
    parse_tmpfs,
    parse_volume,
    render,
)
from supervisor.config_keys import struct_fields
from supervisor.errors import ConfigError, UsageError
from supervisor.interpolate import InterpolationError, interpolate

ROOT = Path(__file__).resolve().parents[2]
WEB = '[containers.web]\nimage = "alpine"\n'
DB = '[containers.db]\nimage = "redis"\n'
MiB = 1 << 20


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in a fresh folder, so that `stack.toml` is the name as the user gives it."""
    folder = tmp_path / "shop"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def load(text: str, environ: dict[str, str] | None = None, **kw: str) -> Stack:
    Path("stack.toml").write_text(text)
    return load_stack(Path("stack.toml"), environ or {}, **kw)


def web(text: str, environ: dict[str, str] | None = None) -> Container:
    return load(WEB + text, environ).containers["web"]


# -- the bad-config corpus --------------------------------------------------------------------

BAD: list[tuple[str, str, str]] = [
    ("toml-syntax", 'a = 1\nb = = 2\n', "stack.toml: line 2, column 5: Invalid value"),
    ("toml-eof", "a = [1,", "stack.toml: end of file: Invalid value"),
    ("unknown-top", "contaners = 1\n",
     "stack.toml: contaners: unknown key, expected [stack] or [containers.NAME]"),
    ("unknown-key", WEB + "bogus = 1\n", "stack.toml: containers.web.bogus: unknown key"),
    ("typo-key", WEB + 'mem_limt = "1g"\n',
     "stack.toml: containers.web.mem_limt: unknown key (did you mean 'mem_limit'?)"),
    ("port-short", WEB + 'ports = ["8080:"]\n',
     "stack.toml: containers.web.ports[0]: expected '[IP:][HOST:]CONTAINER[/tcp|udp]' such as "
     "'8080:3000', got '8080:'"),
    ("port-range", WEB + 'ports = ["80", "70000:80"]\n',
     "stack.toml: containers.web.ports[1]: host port 70000 is out of range 1-65535, "
     "got '70000:80'"),
    ("port-proto", WEB + 'ports = ["53:53/sctp"]\n',
     "stack.toml: containers.web.ports[0]: expected the protocol 'tcp' or 'udp', got '53:53/sctp'"),
    ("port-ip", WEB + 'ports = ["localhost:80:80"]\n',
     "stack.toml: containers.web.ports[0]: expected an IP address before the host port, "
     "got 'localhost:80:80'"),
    ("port-twice", WEB + 'ports = ["80:80", "80:81"]\n',
     "stack.toml: containers.web.ports[1]: host port 80/tcp is published twice"),
    ("ports-host-mode", WEB + 'network_mode = "host"\nports = ["80:80"]\n',
     "stack.toml: containers.web.ports: publishing ports needs network_mode 'bridge', "
     "got 'host'"),
    ("network-mode", WEB + 'network_mode = "overlay"\n',
     "stack.toml: containers.web.network_mode: expected 'bridge', 'none', 'host' or "
     "'container:NAME', got 'overlay'"),
    ("network-mode-peer", WEB + 'network_mode = "container:db"\n',
     "stack.toml: containers.web.network_mode: no container named 'db' in this stack"),
    ("link-missing", WEB + 'links = ["db:database"]\n',
     "stack.toml: containers.web.links[0]: no container named 'db' in this stack"),
    ("link-form", WEB + 'links = ["db:data:base"]\n',
     "stack.toml: containers.web.links[0]: expected 'NAME' or 'NAME:ALIAS' such as "
     "'redis_primary:db', got 'db:data:base'"),
    ("expose-form", WEB + 'expose = ["80-90"]\n',
     "stack.toml: containers.web.expose[0]: expected 'PORT[/tcp|udp]' such as '6379', "
     "got '80-90'"),
    ("extra-hosts-ip", WEB + 'extra_hosts = ["db:10.0.0.300"]\n',
     "stack.toml: containers.web.extra_hosts[0]: expected an IP address for 'db', "
     "got '10.0.0.300'"),
    ("subnet", '[stack.network]\nsubnet = "10.0.0.0/33"\n' + WEB,
     "stack.toml: stack.network.subnet: expected an IPv4 subnet such as '10.88.0.0/16', "
     "got '10.0.0.0/33'"),
    ("labels-type", WEB + 'labels = { tier = ["a"] }\n',
     "stack.toml: containers.web.labels.tier: expected a string, got a list"),
    ("subnet-slirp", '[stack.network]\nsubnet = "10.0.0.0/8"\n' + WEB,
     "stack.toml: stack.network.subnet: overlaps 10.0.2.0/24, where outbound access "
     "(slirp4netns) lives; choose another subnet or set outbound = false"),
    ("outbound-type", '[stack.network]\noutbound = "yes"\n' + WEB,
     "stack.toml: stack.network.outbound: expected a boolean, got 'yes'"),
    ("image-and-rootfs", WEB + 'rootfs = "./r"\n',
     "stack.toml: containers.web: expected exactly one of 'image' or 'rootfs', got both"),
    ("no-image", "[containers.web]\ntty = true\n",
     "stack.toml: containers.web: expected exactly one of 'image' or 'rootfs', got neither"),
    ("bad-size", WEB + 'mem_limit = "256 potatoes"\n',
     "stack.toml: containers.web.mem_limit: expected a size such as '256m', got '256 potatoes'"),
    ("tiny-memory", WEB + 'mem_limit = "1k"\n',
     "stack.toml: containers.web.mem_limit: expected at least 6m, got '1k'"),
    ("swap-below-memory", WEB + 'mem_limit = "1g"\nmemswap_limit = "512m"\n',
     "stack.toml: containers.web.memswap_limit: expected -1 or a size of at least mem_limit "
     "(1g), got '512m'"),
    ("swap-alone", WEB + 'memswap_limit = "512m"\n',
     "stack.toml: containers.web.memswap_limit: needs mem_limit to be set as well"),
    ("bad-duration", WEB + 'stop_grace_period = "5 minutes"\n',
     "stack.toml: containers.web.stop_grace_period: expected a duration such as '10s' or "
     "'1m30s', got '5 minutes'"),
    ("bad-signal", WEB + 'stop_signal = "SIGFOO"\n',
     "stack.toml: containers.web.stop_signal: expected a signal such as 'SIGTERM' or 15, "
     "got 'SIGFOO'"),
    ("zero-cpus", WEB + "cpus = 0\n",
     "stack.toml: containers.web.cpus: expected a number of CPUs greater than 0 such as 0.5, "
     "got 0"),
    ("pids-not-int", WEB + 'pids_limit = "abc"\n',
     "stack.toml: containers.web.pids_limit: expected an integer, got 'abc'"),
    ("bool-yes", WEB + 'tty = "yes"\n',
     "stack.toml: containers.web.tty: expected a boolean, got 'yes'"),
    ("bool-int", WEB + "init = 1\n", "stack.toml: containers.web.init: expected a boolean, got 1"),
    ("volumes-from-missing", WEB + 'volumes_from = ["db"]\n',
     "stack.toml: containers.web.volumes_from[0]: no container named 'db' in this stack"),
    ("volumes-from-self", WEB + 'volumes_from = ["web:ro"]\n',
     "stack.toml: containers.web.volumes_from[0]: a container cannot take volumes from itself"),
    ("volumes-from-cycle",
     '[containers.a]\nimage = "x"\nvolumes_from = ["b"]\n'
     '[containers.b]\nimage = "x"\nvolumes_from = ["a"]\n',
     "stack.toml: containers: dependency cycle: a -> b -> a"),
    # -- restart, restart_backoff, depends_on, healthcheck
    ("restart-word", WEB + 'restart = "sometimes"\n',
     "stack.toml: containers.web.restart: expected 'no', 'always', 'unless-stopped', "
     "'on-failure' or 'on-failure:N', got 'sometimes'"),
    ("restart-count-syntax", WEB + 'restart = "on-failure:-1"\n',
     "stack.toml: containers.web.restart: expected 'no', 'always', 'unless-stopped', "
     "'on-failure' or 'on-failure:N', got 'on-failure:-1'"),
    ("restart-bool", WEB + "restart = false\n",
     "stack.toml: containers.web.restart: expected 'no', 'always', 'unless-stopped', "
     "'on-failure' or 'on-failure:N', got false"),
    ("backoff-max-below-initial", WEB + 'restart_backoff = { initial = "2s", max = "1500ms" }\n',
     "stack.toml: containers.web.restart_backoff.max: expected a duration of at least initial "
     "(2s), got '1.5s'"),
    ("backoff-typo", WEB + 'restart_backoff = { inital = "1s" }\n',
     "stack.toml: containers.web.restart_backoff.inital: unknown key (did you mean 'initial'?)"),
    ("backoff-duration", WEB + 'restart_backoff = { reset_after = "a while" }\n',
     "stack.toml: containers.web.restart_backoff.reset_after: expected a duration such as '10s' "
     "or '1m30s', got 'a while'"),
    ("backoff-not-table", WEB + 'restart_backoff = "1s"\n',
     "stack.toml: containers.web.restart_backoff: expected a table, got '1s'"),
    ("depends-on-missing", WEB + 'depends_on = ["db"]\n',
     "stack.toml: containers.web.depends_on.db: no container named 'db' in this stack"),
    ("depends-on-self", WEB + 'depends_on = { web = {} }\n',
     "stack.toml: containers.web.depends_on.web: a container cannot depend on itself"),
    ("depends-on-string", WEB + 'depends_on = "db"\n' + DB,
     "stack.toml: containers.web.depends_on: expected a list of container names or a table of "
     "them, got 'db'"),
    ("depends-on-twice", WEB + 'depends_on = ["db", "db"]\n' + DB,
     "stack.toml: containers.web.depends_on[1]: 'db' is listed twice"),
    ("depends-on-condition", WEB + 'depends_on = { db = { condition = "service_ready" } }\n' + DB,
     "stack.toml: containers.web.depends_on.db.condition: expected 'service_started', "
     "'service_healthy' or 'service_completed_successfully', got 'service_ready'"),
    ("depends-on-key", WEB + "depends_on = { db = { wait = true } }\n" + DB,
     "stack.toml: containers.web.depends_on.db.wait: unknown key"),
    ("depends-on-restart-type", WEB + 'depends_on.db.restart = "yes"\n' + DB,
     "stack.toml: containers.web.depends_on.db.restart: expected a boolean, got 'yes'"),
    ("healthy-without-check", WEB + 'depends_on.db.condition = "service_healthy"\n' + DB,
     "stack.toml: containers.web.depends_on.db: condition 'service_healthy' needs a "
     "healthcheck on 'db'"),
    ("healthy-check-disabled", WEB + 'depends_on.db.condition = "service_healthy"\n' + DB
     + 'healthcheck = { test = "redis-cli ping", disable = true }\n',
     "stack.toml: containers.web.depends_on.db: condition 'service_healthy' needs a "
     "healthcheck on 'db'"),
    ("depends-on-cycle", WEB + 'depends_on = ["db"]\n' + DB + 'depends_on = ["web"]\n',
     "stack.toml: containers: dependency cycle: web -> db -> web"),
    ("mixed-cycle", WEB + 'depends_on = ["db"]\n' + DB + 'volumes_from = ["cache:ro"]\n'
     '[containers.cache]\nimage = "x"\ndepends_on = { web = { condition = '
     '"service_completed_successfully" } }\n',
     "stack.toml: containers: dependency cycle: web -> db -> cache -> web"),
    ("health-test-kind", WEB + 'healthcheck.test = ["curl", "-f", "http://localhost/"]\n',
     "stack.toml: containers.web.healthcheck.test[0]: expected 'CMD', 'CMD-SHELL' or 'NONE', "
     "got 'curl'"),
    ("health-cmd-alone", WEB + 'healthcheck.test = ["CMD"]\n',
     "stack.toml: containers.web.healthcheck.test: expected a program after 'CMD', got none"),
    ("health-shell-args", WEB + 'healthcheck.test = ["CMD-SHELL", "curl", "-f"]\n',
     "stack.toml: containers.web.healthcheck.test: expected one command line after "
     "'CMD-SHELL', got 2"),
    ("health-none-args", WEB + 'healthcheck.test = ["NONE", "x"]\n',
     "stack.toml: containers.web.healthcheck.test[1]: expected nothing after 'NONE', got 'x'"),
    ("health-no-test", WEB + 'healthcheck = { interval = "5s" }\n',
     "stack.toml: containers.web.healthcheck: missing key 'test'"),
    ("health-empty-test", WEB + 'healthcheck.test = " "\n',
     "stack.toml: containers.web.healthcheck.test: expected a command, got ' '"),
    ("health-retries", WEB + 'healthcheck = { test = "true", retries = -1 }\n',
     "stack.toml: containers.web.healthcheck.retries: expected a number of retries of 0 or "
     "more, got -1"),
    ("health-tiny-interval", WEB + 'healthcheck = { test = "true", interval = "500us" }\n',
     "stack.toml: containers.web.healthcheck.interval: expected a duration of at least 1ms, "
     "got '500us'"),
    ("health-typo", WEB + 'healthcheck = { test = "true", start_intervall = "1s" }\n',
     "stack.toml: containers.web.healthcheck.start_intervall: unknown key (did you mean "
     "'start_interval'?)"),
    ("health-not-table", WEB + 'healthcheck = "curl -f http://localhost/"\n',
     "stack.toml: containers.web.healthcheck: expected a table, got 'curl -f http://localhost/'"),
    ("volumes-from-syntax", WEB + 'volumes_from = ["db:rx"]\n',
     "stack.toml: containers.web.volumes_from[0]: expected 'NAME', 'NAME:ro' or 'NAME:rw', "
     "got 'db:rx'"),
    ("volume-relative-target", WEB + 'volumes = ["data:data"]\n',
     "stack.toml: containers.web.volumes[0]: expected an absolute container path, got 'data'"),
    ("volume-mode", WEB + 'volumes = ["/a:/b:z"]\n',
     "stack.toml: containers.web.volumes[0]: expected mode 'ro' or 'rw', got 'z'"),
    ("volume-name", WEB + 'volumes = ["my vol:/data"]\n',
     "stack.toml: containers.web.volumes[0]: expected a volume name such as 'data' or a path "
     "starting with '/', '.' or '~', got 'my vol'"),
    ("volume-duplicate", WEB + 'volumes = ["/a:/data"]\ntmpfs = "/data"\n',
     "stack.toml: containers.web.tmpfs[0]: duplicate mount point '/data'"),
    ("volume-long-key", WEB + 'volumes = [{ type = "bind", source = ".", target = "/x", '
     'mode = "ro" }]\n', "stack.toml: containers.web.volumes[0].mode: unknown key"),
    ("volume-type", WEB + "volumes = [5]\n",
     "stack.toml: containers.web.volumes[0]: expected a string or a table, got 5"),
    ("tmpfs-option", WEB + 'tmpfs = ["/run:noexec"]\n',
     "stack.toml: containers.web.tmpfs[0]: expected options 'size=SIZE' and 'mode=OCTAL', "
     "got 'noexec'"),
    ("ulimit-name", WEB + "ulimits = { nofiles = 1 }\n",
     "stack.toml: containers.web.ulimits.nofiles: expected a ulimit name such as 'nofile', "
     "got 'nofiles'"),
    ("ulimit-order", WEB + "ulimits = { nofile = { soft = 10, hard = 5 } }\n",
     "stack.toml: containers.web.ulimits.nofile: expected soft <= hard, got soft 10 above "
     "hard 5"),
    ("ulimit-missing", WEB + "ulimits = { nofile = { soft = 10 } }\n",
     "stack.toml: containers.web.ulimits.nofile: missing key 'hard'"),
    ("ulimit-type", WEB + 'ulimits.nproc = "many"\n',
     "stack.toml: containers.web.ulimits.nproc: expected an integer or a table, got 'many'"),
    ("cap-unknown", WEB + 'cap_add = ["FLY"]\n',
     "stack.toml: containers.web.cap_add[0]: expected a capability such as 'NET_ADMIN' or "
     "'ALL', got 'FLY'"),
    ("cap-item-type", WEB + 'cap_drop = ["NET_RAW", 5]\n',
     "stack.toml: containers.web.cap_drop[1]: expected a string, got 5"),
    ("cap-not-list", WEB + 'cap_add = "NET_ADMIN"\n',
     "stack.toml: containers.web.cap_add: expected a list, got 'NET_ADMIN'"),
    ("env-item", WEB + 'environment = ["=x"]\n',
     "stack.toml: containers.web.environment[0]: expected 'KEY=VALUE' or 'KEY', got '=x'"),
    ("env-value", WEB + "environment = { A = [1] }\n",
     "stack.toml: containers.web.environment.A: expected a string, got a list"),
    ("env-file-missing", WEB + 'env_file = ["missing.env"]\n',
     "stack.toml: containers.web.env_file[0]: no such file 'missing.env'"),
    ("working-dir", WEB + 'working_dir = "app"\n',
     "stack.toml: containers.web.working_dir: expected an absolute path, got 'app'"),
    ("container-name", '[containers."my web"]\nimage = "x"\n',
     "stack.toml: containers.\"my web\": expected a container name of letters, digits, '_', '.' "
     "and '-', starting with a letter or digit, got 'my web'"),
    ("command-quote", WEB + "command = \"echo 'hi\"\n",
     "stack.toml: containers.web.command: no closing quotation, expected a command line such as "
     "'redis-server --port 7777', got \"echo 'hi\""),
    ("command-item", WEB + 'command = ["echo", 1]\n',
     "stack.toml: containers.web.command[1]: expected a string, got 1"),
    ("entrypoint-type", WEB + "entrypoint = { a = 1 }\n",
     "stack.toml: containers.web.entrypoint: expected a string or a list, got a table"),
    ("hostname", WEB + 'hostname = "a b"\n',
     "stack.toml: containers.web.hostname: expected a host name such as 'web-1', got 'a b'"),
    ("user", WEB + 'user = "a:b:c"\n',
     "stack.toml: containers.web.user: expected 'uid[:gid]' or 'name[:group]', got 'a:b:c'"),
    ("image-name", '[containers.web]\nimage = "Alpine"\n',
     "stack.toml: containers.web.image: expected an image such as 'alpine:3.19' or 'host', "
     "got 'Alpine'"),
    ("date-value", WEB + "read_only = 2024-01-01\n",
     "stack.toml: containers.web.read_only: expected a boolean, got a date"),
    ("shm-zero", WEB + "shm_size = 0\n",
     "stack.toml: containers.web.shm_size: expected a size greater than 0, got 0"),
    ("required-var", '[containers.web]\nimage = "redis:${TAG:?set TAG to a redis version}"\n',
     "stack.toml: containers.web.image: required variable TAG is missing a value: set TAG to a "
     "redis version"),
    ("bad-interpolation", '[containers.web]\nimage = "redis:${TAG"\n',
     "stack.toml: containers.web.image: invalid interpolation, expected '${NAME}', "
     "'${NAME:-default}', '${NAME:?message}' or '$$' for a '$', got '${TAG'"),
    ("containers-not-table", "containers = 5\n", "stack.toml: containers: expected a table, got 5"),
    ("container-not-table", '[containers]\nweb = "alpine"\n',
     "stack.toml: containers.web: expected a table, got 'alpine'"),
    ("no-containers", '[stack]\nname = "shop"\n',
     "stack.toml: expected at least one [containers.NAME] table, got none"),
    ("project-name", '[stack]\nname = "My Shop"\n' + WEB,
     "stack.toml: stack.name: expected a project name of lower-case letters, digits, '_' and "
     "'-', starting with a letter or digit, got 'My Shop'"),
    ("stack-network-table", '[stack]\nnetwork = "10.0.0.0/24"\n' + WEB,
     "stack.toml: stack.network: expected a table, got '10.0.0.0/24'"),
    ("stack-name-type", "[stack]\nname = 5\n" + WEB,
     "stack.toml: stack.name: expected a string, got 5"),
]


@pytest.mark.parametrize(("text", "message"), [pytest.param(t, m, id=i) for i, t, m in BAD])
def test_bad_config(here: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(text)
    assert str(caught.value) == message
    assert caught.value.exit_code == 2


def _cli_env() -> dict[str, str]:
    # A clean environment: no TAG or SUPERVISE_PROJECT of the caller's leaks in.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}


def test_bad_corpus_through_the_cli(tmp_path: Path) -> None:
    """Every corpus case, through `supervise config`: exit 2, exactly one line, no traceback."""
    assert len(BAD) >= 25
    runs = []
    for case, text, message in BAD:
        folder = tmp_path / case
        folder.mkdir()
        (folder / "stack.toml").write_text(text)
        command = [sys.executable, "-m", "supervisor", "config", "stack.toml"]
        proc = subprocess.Popen(command, cwd=folder, env=_cli_env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        runs.append((case, message, proc))
    for case, message, proc in runs:
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in err, case
        assert (case, proc.returncode, err, out) == (case, 2, message + "\n", "")


def test_file_named_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/stack.toml").write_text(WEB + 'env_file = "web.env"\n')
    with pytest.raises(ConfigError, match=r"^sub/stack.toml: containers.web.env_file: no such "
                       r"file 'sub/web.env'$"):  # fmt: skip
        load_stack(Path("sub/stack.toml"), {})
    (tmp_path / "sub/web.env").write_text("A=1\nnot a line\n")
    with pytest.raises(ConfigError) as caught:
        load_stack(Path("sub/stack.toml"), {})
    assert str(caught.value) == "sub/web.env: line 2: expected KEY=VALUE, got 'not a line'"
    with pytest.raises(ConfigError, match=r"^missing.toml: no such file$"):
        load_stack(Path("missing.toml"), {})
    with pytest.raises(ConfigError, match=r"^sub: is a folder, expected a stack file$"):
        load_stack(Path("sub"), {})


def test_bad_dotenv(here: Path) -> None:
    Path(".env").write_text("# settings\nTAG=7\nTAG2=${TAG\n")
    with pytest.raises(ConfigError) as caught:
        load(WEB)
    assert str(caught.value).startswith(".env: line 3: invalid interpolation, expected")


def test_missing_file_through_the_cli(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "supervisor", "config", "nope.toml"], cwd=tmp_path,
                       env=_cli_env(), capture_output=True, text=True)  # fmt: skip
    assert (r.returncode, r.stderr, r.stdout) == (2, "nope.toml: no such file\n", "")


# -- units ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "size"), [
    ("256m", 256 * MiB), ("256M", 256 * MiB), ("1g", 1 << 30), ("512k", 512 << 10),
    ("100b", 100), (1024, 1024), ("1024", 1024), ("1.5g", 1536 * MiB), ("256MiB", 256 * MiB),
    ("256mb", 256 * MiB), ("2 G", 2 << 30), (0, 0),
])  # fmt: skip
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["256 potatoes", "-1", -1, "m", "", "1.5.2g", "1kk", True])
def test_parse_size_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"^expected a size such as '256m', got ") as caught:
        parse_size(text)
    if text == "256 potatoes":
        assert str(caught.value) == "expected a size such as '256m', got '256 potatoes'"


@pytest.mark.parametrize(("text", "seconds"), [
    ("1m30s", 90.0), ("500ms", 0.5), ("10s", 10.0), ("1h", 3600.0), ("2us", 2e-6),
    ("1.5s", 1.5), ("1h2m3.5s", 3723.5), (10, 10.0), (0.25, 0.25), ("10", 10.0), ("0", 0.0),
    ("100ns", 1e-7), ("3µs", 3e-6),
])  # fmt: skip
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5 minutes", "1d", "-1s", -1, "s", "1m 30s", "", True,
                                  float("inf")])  # fmt: skip
def test_parse_duration_refuses(text: str | float) -> None:
    with pytest.raises(ValueError, match=r"^expected a duration such as '10s' or '1m30s', got "):
        parse_duration(text)


@pytest.mark.parametrize(("text", "number"), [
    ("SIGTERM", 15), ("TERM", 15), ("sigterm", 15), (15, 15), ("9", 9), ("SIGKILL", 9),
    ("SIGRTMIN+3", 37), ("SIGRTMAX", 64), ("SIGUSR1", 10),
])  # fmt: skip
def test_parse_signal(text: str | int, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["SIGFOO", "", 0, 65, -9, "SIG", "SIGRTMIN+99", True])
def test_parse_signal_refuses(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"^expected a signal such as 'SIGTERM' or 15, got "):
        parse_signal(text)


def test_units_print_back_exactly() -> None:
    from supervisor.units import format_duration, format_size, signal_name

    for seconds in (0.0, 0.5, 1.5, 2e-6, 90.0, 3723.5, 7200.0, 0.1234567891234, 1e-9):
        assert parse_duration(format_duration(seconds)) == seconds
    assert format_duration(90.0) == "1m30s" and format_duration(0.5) == "500ms"
    for size in (0, 100, 1024, 256 * MiB, 1536 * MiB, 3 << 40, 12345):
        assert parse_size(format_size(size)) == size
    assert format_size(256 * MiB) == "256m"
    for number in (1, 9, 15, 34, 37, 64):
        assert parse_signal(signal_name(number)) == number


def test_parse_volume(tmp_path: Path) -> None:
    assert parse_volume("/host/path:/ctr", base=tmp_path) == VolumeSpec(
        type="bind", source="/host/path", target="/ctr")
    assert parse_volume("./rel:/ctr:ro", base=tmp_path) == VolumeSpec(
        type="bind", source=str(tmp_path / "rel"), target="/ctr", read_only=True)
    assert parse_volume("../up/x:/ctr:rw", base=tmp_path / "a") == VolumeSpec(
        type="bind", source=str(tmp_path / "up/x"), target="/ctr")
    assert parse_volume("data:/var/lib/data/:ro") == VolumeSpec(
        type="volume", source="data", target="/var/lib/data", read_only=True)
    assert parse_volume("/cache") == VolumeSpec(type="anonymous", source=None, target="/cache")
    assert parse_volume("~/x:/x").source == os.path.expanduser("~/x")
    for bad in ("", "a:b:c:d", "data:/", "/a:rel", ".:/x:rox", "-x:/y"):
        with pytest.raises(ValueError, match=r"^expected .*, got "):
            parse_volume(bad)


def test_parse_tmpfs() -> None:
    assert parse_tmpfs("/run") == TmpfsSpec(target="/run")
    assert parse_tmpfs("/run:size=64m,mode=1777") == TmpfsSpec(
        target="/run", size=64 * MiB, mode=0o1777)
    for bad in ("run", "/run:size=x", "/run:mode=999", "/run:size=0", "/run:exec"):
        with pytest.raises(ValueError, match=r"^expected .*, got "):
            parse_tmpfs(bad)


# -- good configs ---------------------------------------------------------------------------

FULL = """
[stack]
name = "shop"

[containers.db]
image = "redis:7.2"
command = "redis-server --save '' --port 6379"
volumes = ["data:/data", "./conf:/usr/local/etc/redis:ro", "/scratch",
           { type = "bind", source = "logs", target = "/logs", read_only = true }]
mem_limit = "256m"
memswap_limit = "512m"
ulimits = { nofile = 20000, nproc = { soft = 100, hard = 200 }, core = -1 }
stop_signal = "sigint"
stop_grace_period = "1m30s"
shm_size = "64m"
restart = "unless-stopped"
healthcheck.test = ["CMD", "redis-cli", "ping"]
healthcheck.interval = "10s"
healthcheck.start_period = "1m"
healthcheck.start_interval = "1s"

[containers.web]
rootfs = "rootfs"
entrypoint = ["/bin/sh", "-c"]
command = ["exec httpd -f"]
hostname = "web-1"
working_dir = "/srv/"
user = "1000:1000"
volumes_from = ["db:ro"]
tmpfs = "/run:size=64m,mode=1777"
cap_add = ["cap_net_admin", "SYS_TIME", "NET_ADMIN"]
cap_drop = ["all"]
cpus = 1.5
pids_limit = 32
tty = true
stdin_open = "true"
init = true
read_only = true
restart = "on-failure:3"
restart_backoff = { initial = "0s", max = "5s" }
depends_on = { db = { condition = "service_healthy", restart = true } }
"""


def test_full_config(here: Path) -> None:
    stack = load(FULL)
    assert stack.project == "shop" and stack.path == str(here / "stack.toml")
    db, web_ = stack.containers["db"], stack.containers["web"]
    assert db == Container(
        name="db", image="redis:7.2", command=["redis-server", "--save", "", "--port", "6379"],
        volumes=[
            VolumeSpec(type="volume", source="data", target="/data"),
            VolumeSpec(type="bind", source=str(here / "conf"), target="/usr/local/etc/redis",
                       read_only=True),
            VolumeSpec(type="anonymous", source=None, target="/scratch"),
            VolumeSpec(type="bind", source=str(here / "logs"), target="/logs", read_only=True),
        ],
        mem_limit=256 * MiB, memswap_limit=512 * MiB, shm_size=64 * MiB,
        ulimits={"nofile": Ulimit(soft=20000, hard=20000), "nproc": Ulimit(soft=100, hard=200),
                 "core": Ulimit(soft=-1, hard=-1)},
        stop_signal=2, stop_grace_period=90.0, restart=RestartPolicy(name="unless-stopped"),
        healthcheck=Healthcheck(test=["CMD", "redis-cli", "ping"], interval=10.0,
                                start_period=60.0, start_interval=1.0),
    )  # fmt: skip
    assert web_ == Container(
        name="web", rootfs=str(here / "rootfs"), entrypoint=["/bin/sh", "-c"],
        command=["exec httpd -f"], hostname="web-1", working_dir="/srv", user="1000:1000",
        volumes_from=[VolumesFrom(container="db", read_only=True)],
        tmpfs=[TmpfsSpec(target="/run", size=64 * MiB, mode=0o1777)],
        cap_add=["NET_ADMIN", "SYS_TIME"], cap_drop=["ALL"], cpus=1.5, pids_limit=32,
        tty=True, stdin_open=True, init=True, read_only=True,
        restart=RestartPolicy(name="on-failure", max_retries=3),
        restart_backoff=Backoff(initial=0.0, max=5.0),
        depends_on={"db": DependsOn(condition="service_healthy", restart=True)},
    )  # fmt: skip


def test_defaults(here: Path) -> None:
    c = web("")
    assert (c.stop_signal, c.stop_grace_period, c.tty, c.init, c.read_only) == (
        15, 10.0, False, False, False)
    assert (c.environment, c.volumes, c.cap_add, c.ulimits, c.tmpfs) == ({}, [], [], {}, [])
    assert c.mem_limit is c.memswap_limit is c.cpus is c.pids_limit is c.shm_size is None
    assert web('memswap_limit = -1\npids_limit = -1\nstop_signal = 9\n').memswap_limit == -1
    assert (c.restart, c.restart_backoff, c.depends_on, c.healthcheck) == (
        RestartPolicy(name="no"), Backoff(initial=0.1, max=60.0, reset_after=10.0), {}, None)


@pytest.mark.parametrize(("text", "policy"), [
    ("no", RestartPolicy()), ("always", RestartPolicy(name="always")),
    ("unless-stopped", RestartPolicy(name="unless-stopped")),
    ("on-failure", RestartPolicy(name="on-failure")),
    ("on-failure:0", RestartPolicy(name="on-failure")),
    ("on-failure:3", RestartPolicy(name="on-failure", max_retries=3)),
])  # fmt: skip
def test_parse_restart(text: str, policy: RestartPolicy) -> None:
    assert parse_restart(text) == policy
    assert parse_restart(str(policy)) == policy


@pytest.mark.parametrize("text", ["never", "always:3", "on-failure:", "on-failure:x", "No",
                                  " always", "", 0, False])  # fmt: skip
def test_parse_restart_refuses(text: object) -> None:
    with pytest.raises(ValueError, match=r"^expected 'no', 'always', 'unless-stopped', "
                       r"'on-failure' or 'on-failure:N', got "):  # fmt: skip
        parse_restart(text)


def test_restart_policy_rules() -> None:
    assert str(RestartPolicy(name="on-failure", max_retries=5)) == "on-failure:5"
    with pytest.raises(ValueError, match=r"^a retry count needs 'on-failure', got 'always'"):
        RestartPolicy(name="always", max_retries=2)
    with pytest.raises(ValueError, match=r"^expected a retry count of 0 or more, got -1$"):
        RestartPolicy(name="on-failure", max_retries=-1)


def test_restart_backoff(here: Path) -> None:
    assert web('restart_backoff = { initial = "0s" }\n').restart_backoff == Backoff(initial=0.0)
    assert web('restart_backoff.max = "100ms"\n').restart_backoff == Backoff(max=0.1)
    assert web('restart_backoff = { initial = "250ms", max = "2m", reset_after = 30 }\n'
               ).restart_backoff == Backoff(initial=0.25, max=120.0, reset_after=30.0)


def test_depends_on_forms(here: Path) -> None:
    cache = '[containers.cache]\nimage = "x"\nhealthcheck.test = "true"\n'
    listed = web('depends_on = ["db", "cache"]\n' + DB + cache)
    assert listed.depends_on == {"db": DependsOn(), "cache": DependsOn()}
    assert list(listed.depends_on) == ["db", "cache"]  # the order written is kept
    table = web('depends_on = { db = {}, cache = { condition = "service_healthy", '
                'restart = "true", required = false } }\n' + DB + cache)
    assert table.depends_on == {"db": DependsOn(condition="service_started"), "cache": DependsOn(
        condition="service_healthy", restart=True, required=False)}  # fmt: skip
    done = web('depends_on.db.condition = "service_completed_successfully"\n' + DB)
    assert done.depends_on["db"].condition == "service_completed_successfully"


def test_dependencies_merge_depends_on_and_volumes_from(here: Path) -> None:
    stack = load(WEB + 'volumes_from = ["cache", "db:ro"]\n'
                 'depends_on = { db = { condition = "service_healthy" } }\n'
                 + DB + 'healthcheck.test = "redis-cli ping"\n[containers.cache]\nimage = "x"\n')
    assert stack.containers["web"].dependencies() == {
        "db": "service_healthy", "cache": "service_started"}
    assert stack.containers["db"].dependencies() == {}


@pytest.mark.parametrize(("text", "check"), [
    ('test = "curl -f http://localhost/"',
     Healthcheck(test=["CMD-SHELL", "curl -f http://localhost/"])),
    ('test = ["CMD", "pg_isready"]\ninterval = "5s"\ntimeout = "2s"\nretries = 5\n'
     'start_period = "1m"\nstart_interval = "500ms"',
     Healthcheck(test=["CMD", "pg_isready"], interval=5.0, timeout=2.0, retries=5,
                 start_period=60.0, start_interval=0.5)),
    # Docker reads 0 as "the default" for these
    ('test = "true"\nretries = 0\ninterval = "0s"\ntimeout = 0\nstart_interval = "0s"',
     Healthcheck(test=["CMD-SHELL", "true"])),
    ('test = ["CMD-SHELL", "exit 0"]\nretries = "2"',
     Healthcheck(test=["CMD-SHELL", "exit 0"], retries=2)),
    ('test = ["NONE"]', Healthcheck(test=["NONE"])),
    ("disable = true", Healthcheck(test=["NONE"], disable=True)),
    ('test = "true"\ndisable = true', Healthcheck(test=["CMD-SHELL", "true"], disable=True)),
])  # fmt: skip
def test_healthcheck(here: Path, text: str, check: Healthcheck) -> None:
    got = web("[containers.web.healthcheck]\n" + text + "\n").healthcheck
    assert got == check
    assert got.enabled == (check.test[0] != "NONE" and not check.disable)


def test_healthcheck_defaults_are_dockers() -> None:
    check = Healthcheck(test=["CMD", "true"])
    assert (check.interval, check.timeout, check.retries, check.start_period,
            check.start_interval, check.disable) == (30.0, 30.0, 3, 0.0, 5.0, False)


def test_stack_rules_hold_for_json_too() -> None:
    """A Stack from JSON (an API request, a record) is refused for the same reasons."""

    def stack(containers: Mapping[str, object]) -> bytes:
        return msgspec.json.encode({"project": "p", "path": "/s.toml", "containers": containers})

    cycle = {"a": {"name": "a", "image": "x", "depends_on": {"b": {}}},
             "b": {"name": "b", "image": "x", "volumes_from": [{"container": "a"}]}}
    with pytest.raises(msgspec.ValidationError, match=r"dependency cycle: a -> b -> a"):
        msgspec.json.decode(stack(cycle), type=Stack)
    unhealthy = {"a": {"name": "a", "image": "x",
                       "depends_on": {"b": {"condition": "service_healthy"}}},
                 "b": {"name": "b", "image": "x"}}
    with pytest.raises(msgspec.ValidationError, match=r"needs a healthcheck on 'b'"):
        msgspec.json.decode(stack(unhealthy), type=Stack)
    bad_test = {"a": {"name": "a", "image": "x", "healthcheck": {"test": ["curl"]}}}
    with pytest.raises(msgspec.ValidationError, match=r"expected 'CMD', 'CMD-SHELL' or 'NONE'"):
        msgspec.json.decode(stack(bad_test), type=Stack)
    bad_backoff = {"a": {"name": "a", "image": "x", "restart_backoff": {"initial": 5, "max": 1}}}
    with pytest.raises(msgspec.ValidationError, match=r"at least initial \(5s\)"):
        msgspec.json.decode(stack(bad_backoff), type=Stack)


def test_relative_paths_are_against_the_config_folder(here: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    Path("web.env").write_text("A=1\n")
    Path("stack.toml").write_text('[containers.web]\nrootfs = "../rootfs"\n'
                                  'env_file = "web.env"\nvolumes = ["./data:/data"]\n')
    monkeypatch.chdir("/")
    c = load_stack(here / "stack.toml", {}).containers["web"]
    assert c.rootfs == str(tmp_path / "rootfs")
    assert c.env_file == [str(here / "web.env")]
    assert c.volumes[0].source == str(here / "data")


def test_environment_merging(here: Path) -> None:
    Path("a.env").write_text('# first\nA=from-a\nB=from-a\nexport C="quoted # not a comment"\n'
                             "D='single $NOT'\nE=plain # comment\nBARE\nMISSING\n")
    Path("b.env").write_text("B=from-b\nF=${HOME_DIR}/x\n")
    c = web('env_file = ["a.env", "b.env"]\nenvironment = { A = "mine", N = 5, T = true }\n',
            {"BARE": "bare-value", "HOME_DIR": "/home/me"})
    assert c.environment == {
        "A": "mine", "B": "from-b", "C": "quoted # not a comment", "D": "single $NOT",
        "E": "plain", "BARE": "bare-value", "F": "/home/me/x", "N": "5", "T": "true",
    }  # fmt: skip
    listed = web('environment = ["K=V=W", "EMPTY=", "FROM_ENV", "UNSET"]\n', {"FROM_ENV": "x"})
    assert listed.environment == {"K": "V=W", "EMPTY": "", "FROM_ENV": "x"}


def test_interpolation(here: Path) -> None:
    env = {"TAG": "7", "EMPTY": "", "WHO": "me"}
    c = web('hostname = "h-${TAG}-$TAG"\n'
            'environment = { a = "${MISSING:-d}", b = "${EMPTY:-d}", c = "${EMPTY-d}", '
            'd = "${TAG:+set}", e = "${MISSING+set}", f = "$$TAG costs $5", '
            'g = "${MISSING:-${WHO}}", h = "$MISSING", i = "${EMPTY?fine}" }\n'
            'command = ["echo", "$$HOME", "${WHO}"]\n', env)  # fmt: skip
    assert c.hostname == "h-7-7"
    assert c.environment == {"a": "d", "b": "d", "c": "", "d": "set", "e": "", "f": "$TAG costs $5",
                             "g": "me", "h": "", "i": ""}  # fmt: skip
    assert c.command == ["echo", "$HOME", "me"]
    with pytest.raises(ConfigError, match=r"^stack.toml: containers.web.environment.x: required "
                       r"variable EMPTY is missing a value$"):  # fmt: skip
        web('environment = { x = "${EMPTY:?}" }\n', env)
    with pytest.raises(ConfigError, match=r"^stack.toml: containers.web.command\[1\]: required"):
        web('command = ["a", "${NOPE?}"]\n', env)
    assert web('tty = "${TTY:-false}"\ncpus = "${CPUS:-0.5}"\n', env).cpus == 0.5


def test_interpolate_function() -> None:
    assert interpolate("a $ b $", {}) == "a $ b $"
    assert interpolate("${A:-${B:-${C}}}", {"C": "c"}) == "c"
    assert interpolate("${A:-x}}", {}) == "x}"
    with pytest.raises(InterpolationError):
        interpolate("${A:x}", {})
    with pytest.raises(InterpolationError):
        interpolate("${}", {})


def test_dotenv(here: Path) -> None:
    Path(".env").write_text('TAG=7\nMEM="512m"\nexport WHO=dotenv\nLINE="a\\nb"\n')
    stack = load('[containers.web]\nimage = "redis:${TAG}"\nmem_limit = "${MEM}"\n'
                 'environment = ["WHO", "LINE"]\n', {"TAG": "8"})  # fmt: skip
    c = stack.containers["web"]
    assert c.image == "redis:8"  # the environment wins over .env
    assert c.mem_limit == 512 * MiB
    assert c.environment == {"WHO": "dotenv", "LINE": "a\nb"}


def test_project_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "My_Shop.v2"
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert load(WEB).project == "my_shopv2"
    assert load('[stack]\nname = "named"\n' + WEB).project == "named"
    assert load(WEB, {"SUPERVISE_PROJECT": "fromenv"}).project == "fromenv"
    assert load(WEB, {"SUPERVISE_PROJECT": "fromenv"}, project="flag").project == "flag"
    with pytest.raises(UsageError, match=r"^-p/--project: expected a project name"):
        load(WEB, project="Bad Name")
    odd = tmp_path / "__"
    odd.mkdir()
    monkeypatch.chdir(odd)
    with pytest.raises(ConfigError, match=r"^stack.toml: cannot name the project after the "
                       r"folder '__', set \[stack\] name or use -p$"):  # fmt: skip
        load(WEB)


def test_container_from_mapping(tmp_path: Path) -> None:
    c = container_from_mapping(
        "run-1", {"image": "host", "command": ["redis-server"], "mem_limit": 64 * MiB,
                  "volumes": ["./x:/x"], "environment": ["A=1", "B"], "ulimits":
                  {"nofile": {"soft": 1, "hard": 2}}},
        where="supervise run", base=tmp_path, environ={"B": "b"})  # fmt: skip
    assert c.volumes[0].source == str(tmp_path / "x")
    assert c.environment == {"A": "1", "B": "b"}
    assert c.ulimits == {"nofile": Ulimit(soft=1, hard=2)}
    with pytest.raises(ConfigError) as caught:
        container_from_mapping("run-1", {"image": "host", "tmpfs": ["x"]}, where="supervise run")
    assert str(caught.value) == ("supervise run: tmpfs[0]: expected an absolute container path, "
                                 "got 'x'")  # fmt: skip
    with pytest.raises(ConfigError, match=r"^supervise run: expected exactly one of"):
        container_from_mapping("run-1", {}, where="supervise run")


# -- printing -------------------------------------------------------------------------------


def test_render_toml_loads_back_to_the_same_stack(here: Path) -> None:
    Path("web.env").write_text("FROM_FILE=1\n")
    original = load(FULL.replace('user = "1000:1000"', 'user = "1000:1000"\nenv_file = "web.env"'
                                 '\nenvironment = { PRICE = "$$5", Q = "a\\"b" }'))
    text = render(original, "toml")
    assert 'PRICE = "$$5"' in text and 'stop_grace_period = "1m30s"' in text
    Path("printed.toml").write_text(text)
    again = load_stack(Path("printed.toml"), {})
    assert again.containers == original.containers
    assert again.project == original.project
    assert render(again, "toml").splitlines()[1:] == text.splitlines()[1:]


def test_render_json_through_the_cli(here: Path) -> None:
    Path("stack.toml").write_text(FULL)
    r = subprocess.run([sys.executable, "-m", "supervisor", "config", "stack.toml", "--format",
                        "json"], env=_cli_env(), capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    decoded = msgspec.json.decode(r.stdout, type=Stack)
    assert decoded == load_stack(Path("stack.toml"), {})
    r = subprocess.run([sys.executable, "-m", "supervisor", "config", "stack.toml"],
                       env=_cli_env(), capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0 and r.stdout == render(decoded, "toml")


def test_json_decoding_runs_the_same_checks() -> None:
    bad = b'{"project": "p", "path": "/s.toml", "containers": {"web": {"name": "web"}}}'
    with pytest.raises(msgspec.ValidationError, match="exactly one of 'image' or 'rootfs'"):
        msgspec.json.decode(bad, type=Stack)


def test_every_field_has_a_reader() -> None:
    """Adding a key is adding an annotated field: each one of Container is read by a Field."""
    fields = struct_fields(Container)
    assert set(fields) == set(Container.__struct_fields__)
    assert all(meta is not None for name, (_, meta) in fields.items() if name != "name")
