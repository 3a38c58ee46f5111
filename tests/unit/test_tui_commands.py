"""The shell's command language: the CLI's parser, completion, history; and its pure parts
(the log pane's search and position, the text helpers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from logging_bus.record import LogLine
from supervisor.protocol import Event
from supervisor.tui import fmt
from supervisor.tui.commands import (
    HISTORY_LIMIT,
    Builtin,
    Commands,
    Invalid,
    Text,
    Verb,
    append_history,
    history_path,
    load_history,
)
from supervisor.tui.model import LogPane

NAMES = ["web", "db", "worker"]


@pytest.fixture(scope="module")
def commands() -> Commands:
    return Commands("shop")


def test_a_line_is_a_cli_command_line(commands: Commands) -> None:
    assert commands.parse("restart -t 1 web db") == Verb(["restart", "-t", "1", "web", "db"],
                                                          "restart", terminal=False)
    assert commands.parse("supervise ps -a") == Verb(["ps", "-a"], "ps", terminal=False)
    assert commands.parse("  ") is None
    assert commands.parse("# a comment") is None
    assert commands.parse("exec -it web sh") == Verb(["exec", "-it", "web", "sh"], "exec",
                                                     terminal=True)
    assert commands.parse("stack.toml") == Verb(["up", "stack.toml"], "up", terminal=False)
    assert commands.parse("follow web") == Builtin("follow", ["web"])


def test_a_bad_line_is_one_line_in_the_cli_words(commands: Commands) -> None:
    for line, message in (
        ("bogus web", "shell: bogus: unknown command; `help` lists them"),
        ("restart", "supervise restart: the following arguments are required: NAME"),
        ("restart -t soon web", "supervise restart: argument -t/--time: invalid int value: "
                                "'soon'"),
        ("ps --format yaml", "supervise ps: argument --format: invalid choice: 'yaml' "
                             "(choose from table, json)"),
        ("logs 'web", "shell: no closing quotation"),
        ("shell", "shell: already in the shell"),
        ("_serve", "shell: _serve: unknown command; `help` lists them"),
    ):
        parsed = commands.parse(line)
        assert isinstance(parsed, Invalid), line
        assert parsed.message.replace("'table', 'json'", "table, json") == message
        assert "\n" not in parsed.message


def test_help_is_text_not_an_exit(commands: Commands) -> None:
    parsed = commands.parse("logs --help")
    assert isinstance(parsed, Text) and "--follow" in parsed.text
    text = commands.help([])
    assert "restart" in text and "follow" in text and "n/N" in text
    assert "_serve" not in text and "\n  shell " not in text
    assert "--tail" in commands.help(["logs"])


def complete(commands: Commands, before: str) -> list[str]:
    return [c.text for c in commands.complete(before, NAMES)]


def test_completion_of_verbs_flags_values_and_names(commands: Commands) -> None:
    assert complete(commands, "re") == ["restart"]
    assert set(complete(commands, "")) >= {"ps", "logs", "restart", "follow", "help", "quit"}
    assert "_serve" not in complete(commands, "") and "shell" not in complete(commands, "")
    assert complete(commands, "restart ") == NAMES
    assert complete(commands, "restart w") == ["web", "worker"]
    assert complete(commands, "restart -t 5 d") == ["db"]  # -t's value is not a name
    assert complete(commands, "restart -t ") == []
    assert complete(commands, "ps --format ") == ["table", "json"]
    assert "--follow" in complete(commands, "logs --f")
    assert complete(commands, "logs -f web d") == ["db"]
    assert complete(commands, "follow ") == [*NAMES, "all"]
    assert complete(commands, "volume ") == ["ls", "inspect", "rm"]
    assert complete(commands, "volume rm -") == ["-h", "--help", "-f", "--force"]
    assert complete(commands, "cp w") == ["web:", "worker:"]
    assert complete(commands, "exec web ") == []  # the command inside is the user's
    assert complete(commands, "run ") == []  # an image or rootfs, not a container
    assert complete(commands, "supervise sto") == ["stop"]
    cands = commands.complete("lo", NAMES)
    assert cands[0].start == -2 and "logs" in cands[0].meta


def test_history_file(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert history_path(state, {"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "x")}
                        ) == tmp_path / "x" / "supervise" / "history"
    state.mkdir()
    path = history_path(state)
    assert path == state / "shell_history"
    assert load_history(path) == []
    append_history(path, "ps -a")
    append_history(path, "   ")
    append_history(path, "logs -f web\n")
    assert load_history(path) == ["ps -a", "logs -f web"]
    path.write_text("".join(f"ps {i}\n" for i in range(HISTORY_LIMIT + 10)))
    assert load_history(path)[0] == "ps 10"
    assert len(path.read_text().splitlines()) == HISTORY_LIMIT
    append_history(tmp_path / "file" / "sub" / "h", "x")  # best effort: no error
    (tmp_path / "ro").write_text("")
    append_history(tmp_path / "ro" / "h", "x")  # a file where a folder should be


def line(seq: int, text: str, container: str = "web") -> LogLine:
    return LogLine(seq=seq, time=1000.0 + seq, container=container, source="stdout",
                   line=text)


def test_log_pane_follows_pauses_and_skips_repeats() -> None:
    pane = LogPane(limit=5)
    for i in range(1, 8):
        assert pane.add_log(line(i, f"line {i}"))
    assert not pane.add_log(line(7, "again"))  # a resumed stream repeats the last ones
    assert pane.dropped == 2 and pane.end == 7 and pane.bottom_index() == 7
    pane.pause()
    pane.add_log(line(8, "line 8"))
    assert pane.bottom_index() == 7 and pane.unseen == 1
    pane.scroll(-2)
    assert pane.bottom_index() == 5
    pane.scroll(10)
    assert pane.following and pane.bottom_index() == 8
    pane.add_event(Event(seq=1, time=2000.0, action="die", container="web",
                         attributes={"exitCode": "1"}))
    assert pane.get(pane.end - 1).text == "die exitCode=1"  # type: ignore[union-attr]


def test_log_search_is_incremental_smart_case_and_wraps() -> None:
    pane = LogPane()
    for i, text in enumerate(["boot", "Error one", "ok", "error two", "ok", "done"], 1):
        pane.add_log(line(i, text))
    pane.search("err")  # the newest match first, and the view holds there
    assert pane.match == 3 and not pane.following
    assert pane.match_count() == (2, 2)
    assert pane.next(-1) and pane.match == 1  # n: older
    assert pane.next(-1) and pane.match == 3  # wraps round to the newest
    assert pane.next(1) and pane.match == 1  # N: newer, wrapping to the oldest
    pane.search("Err")  # a capital: case matters
    assert pane.match == 1 and pane.match_count() == (1, 1)
    pane.search("nothing")
    assert pane.match is None and pane.match_count() == (0, 0) and not pane.next(-1)
    pane.search("web")  # the container's name matches too
    assert pane.match_count()[1] == 6
    pane.search("")
    assert pane.pattern is None


def test_text_helpers() -> None:
    assert fmt.size(512) == "512B" and fmt.size(12.5 * 2**20) == "12.5M"
    assert fmt.size(256 * 2**20) == "256M" and fmt.size(3 * 2**30) == "3.0G"
    assert fmt.duration(59) == "59s" and fmt.duration(3600 * 5) == "5h"
    assert fmt.bar(0.5, 4) == "██░░" and fmt.bar(2, 2) == "██" and fmt.bar(0.1, 0) == ""
    assert fmt.sparkline([0, 50, 100, None], 100) == "▁▅█ "
    assert fmt.buckets([(0.5, 1.0), (0.6, 3.0), (2.5, 2.0)], 0, 4, 4) == [3.0, None, 2.0, None]
    assert fmt.clean("\x1b[31mred\x1b[0m\tx\x07\r\n") == "red x?"
    assert fmt.clean("\x1b]0;title\x07ok") == "ok"
    assert fmt.clean("x" * 5000).endswith("…")
    assert fmt.fit("abcdef", 4) == "abc…" and fmt.fit("ab", 4) == "ab  "


def test_log_pane_keeps_the_supervisors_time_order() -> None:
    pane = LogPane(limit=3)
    pane.add_log(line(1, "before"))  # time 1001
    pane.add_event(Event(seq=1, time=1003.0, action="die", container="web"))
    pane.add_log(line(2, "printed before it died"))  # time 1002, read in a later batch
    assert [e.text for e in pane.entries] == ["before", "printed before it died", "die"]
    pane.add_log(line(5, "after"))
    assert [e.text for e in pane.entries] == ["printed before it died", "die", "after"]
    assert pane.dropped == 1 and pane.end == 4
