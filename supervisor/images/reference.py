"""Image references in Docker's grammar: ``[domain[:port]/]path[:tag][@digest]``.

``redis:7`` is ``docker.io/library/redis:7``; a first component with a ``.`` or a ``:``, or
``localhost``, is a registry (``localhost:5000/app:1``).  A reference without tag or digest
means ``:latest``.  The store keys tags by the full form; people see the familiar one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor.config_keys import IMAGE_RE
from supervisor.errors import UsageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAINS = ("index.docker.io", "registry-1.docker.io")
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        """The full form, as the store's index names it."""
        out = self.repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def familiar_repository(self) -> str:
        if self.domain != DEFAULT_DOMAIN:
            return self.repository
        return self.path.removeprefix("library/")

    def familiar(self) -> str:
        """What `images` shows and people type: `redis:7`, `localhost:5000/app:1`."""
        out = self.familiar_repository
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)


def parse(text: str, *, where: str = "image") -> Reference:
    """A reference, normalized (domain and tag filled in); a UsageError if malformed."""
    if not IMAGE_RE.fullmatch(text):
        raise UsageError(f"{where}: expected a reference such as 'redis:7' or "
                         f"'localhost:5000/app:1', got {text!r}")
    rest, _, digest = text.partition("@")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, remainder
    else:
        domain, path = DEFAULT_DOMAIN, rest
    if domain in LEGACY_DOMAINS:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if digest and not DIGEST_RE.fullmatch(digest):
        raise UsageError(f"{where}: expected a sha256 digest after '@', got {digest!r}")
    if tag is None and not digest:
        tag = "latest"
    return Reference(domain, path, tag, digest or None)


def try_parse(text: str) -> Reference | None:
    try:
        return parse(text)
    except UsageError:
        return None
