"""The pipeline's settings: each filter and each output a Struct tagged by ``type``.

They live here, at the bottom of the log bus, so that ``supervisor.config`` can decode the
stack file into them and ``filters``/``sinks`` can run them, with no upward import.  A field
whose value the stack file spells with a unit carries a marker in its ``msgspec.Meta``
(``extra={"unit": "size" | "duration" | "path"}``): the config reader converts ``"10m"``,
``"1s"`` or ``"./out.jsonl"`` before the Struct is built, this module needs no parser of its own.

Checks across a field's value are in ``__post_init__`` and raise ``SpecError`` naming the key,
so a Struct decoded from JSON (``msgspec.json.decode(..., type=Stack)``) is checked the same.
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec

Size = Annotated[int, msgspec.Meta(extra={"unit": "size"})]
Duration = Annotated[float, msgspec.Meta(extra={"unit": "duration"})]
HostPath = Annotated[str, msgspec.Meta(extra={"unit": "path"})]

FACILITIES = {name: code for code, name in enumerate(
    ["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
     "authpriv", "ftp"])}
FACILITIES |= {f"local{i}": 16 + i for i in range(8)}
SYSLOG_SCHEMES = ("udp", "tcp", "unix")
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # Prometheus/Loki label names
_INDEX_BAD = set('\\/*?"<>| ,#:')


class SpecError(ValueError):
    """A bad value of ``key`` in one filter or output; the config names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def compile_regex(key: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise SpecError(key, f"expected a regular expression, got {pattern!r} ({e})") from None


def _positive(key: str, value: float) -> None:
    if value <= 0:
        raise SpecError(key, f"expected a number greater than 0, got {value!r}")


def syslog_address(address: str) -> tuple[str, str, int]:
    """``udp://host:port``, ``tcp://host:port`` (port 514 if left out) or ``unix:///path``
    -> (scheme, host or path, port); ValueError with the message tail otherwise."""
    scheme, sep, rest = address.partition("://")
    expected = ("expected 'udp://HOST:PORT', 'tcp://HOST:PORT' or 'unix:///PATH', "
                f"got {address!r}")
    if not sep or scheme not in SYSLOG_SCHEMES or not rest:
        raise ValueError(expected)
    if scheme == "unix":
        if not rest.startswith("/"):
            raise ValueError(expected)
        return scheme, rest, 0
    host, colon, port = rest.rpartition(":")
    if not colon:
        host, port = rest, "514"
    host = host.strip("[]")  # [::1]:514
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(expected)
    return scheme, host, int(port)


# -- filters ---------------------------------------------------------------------------------


class FilterSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                 tag_field="type"):
    """A filter: the first arrow of the pipeline (see ``logging_bus.filters``)."""


class JsonFilter(FilterSpec, tag="json", frozen=True):
    """A line that is a JSON object: its keys into the event's fields (or under ``target``)."""

    field: str = "line"
    target: str | None = None


class RegexFilter(FilterSpec, tag="regex", frozen=True):
    """Named groups of ``pattern`` (searched in ``field``) into fields."""

    pattern: str
    field: str = "line"

    def __post_init__(self) -> None:
        if not compile_regex("pattern", self.pattern).groupindex:
            raise SpecError("pattern", "expected named groups such as (?P<level>\\w+), got "
                                       f"{self.pattern!r}")


class MultilineFilter(FilterSpec, tag="multiline", frozen=True):
    """A line matching ``start`` begins an event; the lines after it are joined to it, until
    the next start, ``max_lines``, or ``timeout`` without a line from that source."""

    start: str
    timeout: Duration = 1.0
    max_lines: int = 500

    def __post_init__(self) -> None:
        compile_regex("start", self.start)
        _positive("timeout", self.timeout)
        _positive("max_lines", self.max_lines)


class DropFilter(FilterSpec, tag="drop", frozen=True):
    """Drop the events where ``match`` is found in ``field``."""

    match: str
    field: str = "line"

    def __post_init__(self) -> None:
        compile_regex("match", self.match)


class KeepFilter(FilterSpec, tag="keep", frozen=True):
    """Keep only the events where ``match`` is found in ``field``."""

    match: str
    field: str = "line"

    def __post_init__(self) -> None:
        compile_regex("match", self.match)


class AddFieldsFilter(FilterSpec, tag="add_fields", frozen=True):
    fields: dict[str, str]


Filter = JsonFilter | RegexFilter | MultilineFilter | DropFilter | KeepFilter | AddFieldsFilter
FILTERS: dict[str, type[FilterSpec]] = {
    "json": JsonFilter, "regex": RegexFilter, "multiline": MultilineFilter, "drop": DropFilter,
    "keep": KeepFilter, "add_fields": AddFieldsFilter}


# -- outputs ---------------------------------------------------------------------------------


class OutputSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True,
                 tag_field="type"):
    """What every output has: which containers, where a new output starts, batching, retry."""

    containers: list[str] = []  # empty: every container
    start: str = "beginning"  # a new output ("end": only lines stored after it was added)
    batch: int = 1000  # lines per delivery at most
    retry_max: Duration = 30.0  # the cap of the exponential backoff between retries

    def __post_init__(self) -> None:
        if self.start not in ("beginning", "end"):
            raise SpecError("start", f"expected 'beginning' or 'end', got {self.start!r}")
        if not 1 <= self.batch <= 100_000:
            raise SpecError("batch", f"expected 1 to 100000 lines, got {self.batch!r}")
        _positive("retry_max", self.retry_max)


class ConsoleOutput(OutputSpec, tag="console", frozen=True):
    """JSON lines on the supervisor's standard output."""


class FileOutput(OutputSpec, tag="file", frozen=True):
    """JSON lines into ``path``; at ``max_size`` it becomes ``path.1`` (``max_files`` kept)."""

    path: HostPath
    max_size: Size = 10 << 20
    max_files: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.path.startswith("/"):
            raise SpecError("path", f"expected an absolute path, got {self.path!r}")
        _positive("max_size", self.max_size)
        _positive("max_files", self.max_files)
        if self.max_files > 1000:
            raise SpecError("max_files", f"expected at most 1000, got {self.max_files}")


class SyslogOutput(OutputSpec, tag="syslog", frozen=True):
    """RFC 5424 messages over UDP, TCP (octet counting) or a Unix datagram socket."""

    address: str
    facility: str = "daemon"
    hostname: str | None = None  # default: the host's name

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            syslog_address(self.address)
        except ValueError as e:
            raise SpecError("address", str(e)) from None
        if self.facility not in FACILITIES:
            raise SpecError("facility", f"expected a facility such as 'daemon' or 'local0', "
                                        f"got {self.facility!r}")
        if self.hostname is not None and not re.fullmatch(r"[!-~]{1,255}", self.hostname):
            raise SpecError("hostname", f"expected 1 to 255 printable ASCII characters, "
                                        f"got {self.hostname!r}")


class _HttpOutput(OutputSpec, frozen=True):
    url: str
    headers: dict[str, str] = {}  # e.g. Authorization
    timeout: Duration = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", self.url):
            raise SpecError("url", f"expected an http:// or https:// URL, got {self.url!r}")
        _positive("timeout", self.timeout)
        for name, value in self.headers.items():  # what HTTP/1.1 can carry, no CR/LF
            if not re.fullmatch(r"[!#-'*+.0-9A-Z^-z|~-]+", name) or \
                    not re.fullmatch(r"[ -~]*", value):
                raise SpecError("headers", f"expected printable ASCII names and values, "
                                           f"got {name!r}")


class LokiOutput(_HttpOutput, tag="loki", frozen=True):
    """POST /loki/api/v1/push: one stream per container and source, labelled with both and
    the project, plus ``labels``."""

    labels: dict[str, str] = {}

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in self.labels:
            if not _LABEL.fullmatch(name):
                raise SpecError("labels", f"expected label names of letters, digits and '_', "
                                          f"got {name!r}")


class ElasticsearchOutput(_HttpOutput, tag="elasticsearch", frozen=True):
    """POST /_bulk: one ``index`` action per line, ``_id`` = project-seq (so a redelivery
    overwrites instead of adding a copy)."""

    index: str = "supervise"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (not self.index or self.index != self.index.lower() or _INDEX_BAD & set(self.index)
                or self.index[0] in "-_+"):
            raise SpecError("index", f"expected a lower-case index name without spaces or "
                                     f"any of \\/*?\"<>|,#:, got {self.index!r}")


Output = ConsoleOutput | FileOutput | SyslogOutput | LokiOutput | ElasticsearchOutput
OUTPUTS: dict[str, type[OutputSpec]] = {
    "console": ConsoleOutput, "file": FileOutput, "syslog": SyslogOutput, "loki": LokiOutput,
    "elasticsearch": ElasticsearchOutput}
