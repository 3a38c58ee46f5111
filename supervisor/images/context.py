"""The build context: a folder, minus what `.dockerignore` (or `.containerignore`) excludes,
and the sources a COPY/ADD names in it, with a digest of their content for the build cache.

The digest covers paths, modes, file contents and symlink targets, not times: touching a
file does not invalidate the cache (as BuildKit's).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import UsageError
from supervisor.linux.init import SetupError, secure_join

IGNORE_FILES = (".containerignore", ".dockerignore")


@dataclass(frozen=True)
class Rule:
    regex: re.Pattern[str]
    exclude: bool  # False for a `!` exception


def _pattern(text: str) -> re.Pattern[str]:
    """Go's filepath.Match plus `**`, anchored at the context root; a match of a directory
    covers what is under it."""
    text = os.path.normpath(text.strip().lstrip("/"))
    out = []
    i = 0
    while i < len(text):
        if text.startswith("**", i):
            out.append(".*")
            i += 2
            if text.startswith("/", i):
                out[-1] = "(?:.*/)?"
                i += 1
            continue
        c = text[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = text.find("]", i)
            if end < 0:
                out.append(re.escape(c))
            else:
                out.append(fnmatch.translate(text[i:end + 1])[4:-3])
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + "(?:/.*)?")


def read_ignore(root: Path) -> list[Rule]:
    for name in IGNORE_FILES:
        path = root / name
        if path.is_file():
            rules = []
            for line in path.read_text().splitlines():
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                exclude = not line.startswith("!")
                rules.append(Rule(_pattern(line.lstrip("!")), exclude))
            return rules
    return []


class Context:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        if not self.root.is_dir():
            raise UsageError(f"supervise build: {root}: no such folder")
        self.rules = read_ignore(self.root)

    def ignored(self, rel: str) -> bool:
        result = False
        for rule in self.rules:
            if rule.regex.fullmatch(rel):
                result = rule.exclude
        return result

    def select(self, sources: list[str], where: str) -> list[tuple[Path, str]]:
        """(path, name) for each source: its matches in the context, not ignored.  `name` is
        the basename a file keeps at a directory destination ("" for a directory's
        contents)."""
        out: list[tuple[Path, str]] = []
        for src in sources:
            rel = os.path.normpath(src.lstrip("/"))
            if rel == ".." or rel.startswith("../"):
                raise UsageError(f"{where}: {src}: outside the build context")
            if any(c in rel for c in "*?["):
                found = [p for p in self._all() if fnmatch.fnmatchcase(p, rel)]
            elif rel == ".":
                found = [rel]
            else:
                inside = self._inside(rel, f"{where}: {src}")
                found = [inside] if inside is not None else []
            found = [p for p in found if p == "." or not self.ignored(p)]
            if not found:
                raise UsageError(f"{where}: {src}: no such file in the build context")
            for p in found:
                path = self.root / p if p != "." else self.root
                # A symlink source is copied as the symlink (never what it points to).
                is_dir = path.is_dir() and not path.is_symlink()
                out.append((path, "" if is_dir else os.path.basename(p)))
        return out

    def _inside(self, rel: str, where: str) -> str | None:
        """`rel` with its parent folders' symlinks resolved inside the context (BuildKit's
        scoped resolution: `ln -s /etc evil` then `evil/passwd` names ctx/etc/passwd), as a
        path of real folders under the root; None when nothing is there."""
        head, _, base = rel.rpartition("/")
        try:
            parent = secure_join(str(self.root), head) if head else str(self.root)
        except SetupError as e:
            raise UsageError(f"{where}: {e}") from e
        path = os.path.join(parent, base)
        if not os.path.lexists(path):
            return None
        found = os.path.relpath(path, self.root)
        return None if found == "." else found

    def _all(self) -> list[str]:
        names = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = os.path.relpath(dirpath, self.root)
            for n in dirnames + filenames:
                names.append(n if base == "." else f"{base}/{n}")
        return sorted(names)

    def files_under(self, directory: Path) -> list[tuple[Path, str]]:
        """Everything under a source directory that is not ignored, sorted, parents first."""
        out = []
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for n in sorted(dirnames + filenames):
                path = Path(dirpath) / n
                rel_ctx = str(path.relative_to(self.root))
                if self.ignored(rel_ctx):
                    if n in dirnames:
                        dirnames.remove(n)  # exceptions inside an ignored folder are not
                    continue               # looked for (Docker looks; rare enough)
                out.append((path, str(path.relative_to(directory))))
        return out

    def digest(self, selected: list[tuple[Path, str]]) -> str:
        h = hashlib.sha256()
        for path, name in selected:
            h.update(f"source {path.relative_to(self.root)} {name}\n".encode())
            entries = self.files_under(path) if path.is_dir() and not path.is_symlink() \
                else [(path, name)]
            for p, rel in entries:
                st = os.lstat(p)
                h.update(f"{rel} {st.st_mode:o}\n".encode())
                if stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(p).encode())
                elif stat.S_ISREG(st.st_mode):
                    with open(p, "rb") as f:
                        while chunk := f.read(1 << 20):
                            h.update(chunk)
                h.update(b"\n")
        return "sha256:" + h.hexdigest()
