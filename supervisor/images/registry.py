"""A client of the OCI distribution API (Docker's Registry HTTP API V2), for push and pull.

- A registry on this machine (``localhost``, ``127.0.0.0/8``, ``::1``) is spoken to in plain
  HTTP, as Docker's default "insecure registry" for loopback; every other one in HTTPS.
  ``docker.io`` is served by ``registry-1.docker.io``.
- Authentication follows the registry's challenge (``WWW-Authenticate``): ``Basic`` sends the
  stored credentials; ``Bearer`` fetches a token from the realm for the repository's scope
  (with the credentials, if any; anonymously otherwise), as Docker Hub wants even for pulls.
- Blobs are uploaded monolithically (POST for a session, one streamed PUT with the digest);
  a blob the repository already holds is skipped (HEAD), one held by another repository of the
  same registry is mounted (POST ?mount=&from=) without sending a byte.

httpx is imported here only, when a push or pull needs it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

from supervisor.images import oci
from supervisor.images.auth import Credentials
from supervisor.images.store import ImageError

if TYPE_CHECKING:
    import httpx

MANIFEST_ACCEPT = ", ".join((oci.OCI_MANIFEST, oci.OCI_INDEX, oci.DOCKER_MANIFEST,
                             oci.DOCKER_MANIFEST_LIST))
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class RegistryError(ImageError):
    """The registry refused, or could not be reached."""


def is_loopback(domain: str) -> bool:
    host = domain
    if host.startswith("["):
        host = host[1:host.find("]")]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(domain: str) -> str:
    host = "registry-1.docker.io" if domain == "docker.io" else domain
    return ("http://" if is_loopback(domain) else "https://") + host


class Registry:
    """One repository of one registry, for the length of a push or a pull."""

    def __init__(self, domain: str, repository: str, *, creds: Credentials | None,
                 actions: str = "pull") -> None:
        import httpx

        self.domain = domain
        self.repository = repository
        self.creds = creds
        self.actions = actions
        self.root = base_url(domain) + "/v2/"
        self.base = f"{self.root}{repository}/"
        self._auth: str | None = None
        self._basic_tried = False
        self.http = httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0),
                                 follow_redirects=True,
                                 headers={"User-Agent": "supervise"})

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    # -- requests and authentication -----------------------------------------------------

    def _send(self, method: str, url: str, *, headers: dict[str, str] | None = None,
              content: bytes | Iterable[bytes] | None = None, stream: bool = False,
              ) -> httpx.Response:
        import httpx

        replayable = content is None or isinstance(content, bytes)
        for attempt in range(2):
            h = dict(headers or {})
            if self._auth:
                h["Authorization"] = self._auth
            request = self.http.build_request(method, url, headers=h, content=content)
            try:
                response = self.http.send(request, stream=stream)
            except httpx.HTTPError as e:
                raise RegistryError(f"{self.domain}: {_describe(e)}") from e
            if response.status_code != 401 or attempt == 1 or not replayable:
                return response
            response.close()
            if not self._authenticate(response.headers.get("WWW-Authenticate", "")):
                return response
        raise AssertionError("unreachable")

    def _authenticate(self, challenge: str) -> bool:
        """Answers a 401's challenge; False when there is nothing more to try."""
        scheme, _, rest = challenge.partition(" ")
        params = dict(_CHALLENGE_RE.findall(rest))
        if scheme.lower() == "basic":
            if self.creds is None or self._basic_tried:
                return False
            import base64

            pair = f"{self.creds.username}:{self.creds.password}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
            self._basic_tried = True
            return True
        if scheme.lower() == "bearer" and "realm" in params:
            token = self._token(params)
            self._auth = f"Bearer {token}"
            return True
        return False

    def _token(self, params: dict[str, str]) -> str:
        import httpx

        query = {"scope": params.get("scope")
                 or f"repository:{self.repository}:{self.actions}"}
        if "service" in params:
            query["service"] = params["service"]
        auth = (self.creds.username, self.creds.password) if self.creds else None
        try:
            r = self.http.get(params["realm"], params=query, auth=auth)
        except httpx.HTTPError as e:
            raise RegistryError(f"{self.domain}: token from {params['realm']}: "
                                f"{_describe(e)}") from e
        if r.status_code != 200:
            raise RegistryError(f"{self.domain}: token from {params['realm']}: HTTP "
                                f"{r.status_code}" + (" (wrong username or password?)"
                                                      if r.status_code == 401 else ""))
        try:
            body = r.json()
        except ValueError:  # JSONDecodeError, or a body that is not UTF-8
            body = None
        if not isinstance(body, dict):
            raise RegistryError(f"{self.domain}: token from {params['realm']}: not a JSON "
                                "object")
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str):
            raise RegistryError(f"{self.domain}: token from {params['realm']}: no token")
        return token

    def _fail(self, response: httpx.Response, what: str) -> RegistryError:
        response.read()
        message = f"HTTP {response.status_code}"
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            errors: list[dict[str, Any]] = response.json()["errors"]
            message = "; ".join(str(e.get("message") or e.get("code")) for e in errors)
        if response.status_code == 401:
            message += (" (wrong username or password?)" if self.creds else
                        f" (log in with `supervise login {self.domain}`)")
        return RegistryError(f"{what}: {message}")

    # -- the API -------------------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: checks the registry speaks V2 and settles authentication up front."""
        r = self._send("GET", self.root)
        r.close()
        if r.status_code == 401:
            raise self._fail(r, self.domain)
        if r.status_code not in (200, 404):  # some registries answer the bare root 404
            raise self._fail(r, self.domain)

    def blob_exists(self, digest: str) -> bool:
        r = self._send("HEAD", f"{self.base}blobs/{digest}")
        if r.status_code == 200:
            return True
        if r.status_code == 404:
            return False
        raise self._fail(r, f"{self.repository}: blob {digest}")

    def start_upload(self) -> str:
        """A new upload session's URL."""
        location = self._post_upload(f"{self.base}blobs/uploads/", mounting=False)
        assert location is not None
        return location

    def mount(self, digest: str, source: str) -> str | None:
        """Mounts a blob from another repository of this registry: None when done, else the
        URL of the upload session the registry opened instead."""
        query = urlencode({"mount": digest, "from": source})
        return self._post_upload(f"{self.base}blobs/uploads/?{query}", mounting=True)

    def _post_upload(self, url: str, *, mounting: bool) -> str | None:
        r = self._send("POST", url)
        r.close()
        if r.status_code == 201 and mounting:
            return None
        if r.status_code != 202 or "Location" not in r.headers:
            raise self._fail(r, f"{self.repository}: starting an upload")
        return urljoin(self.base, str(r.headers["Location"]))

    def upload(self, location: str, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        sep = "&" if "?" in location else "?"
        r = self._send("PUT", f"{location}{sep}{urlencode({'digest': digest})}",
                       headers={"Content-Type": "application/octet-stream",
                                "Content-Length": str(size)}, content=chunks)
        r.close()
        if r.status_code != 201:
            raise self._fail(r, f"{self.repository}: blob {digest}")

    def get_manifest(self, reference: str) -> tuple[bytes, str]:
        r = self._send("GET", f"{self.base}manifests/{reference}",
                       headers={"Accept": MANIFEST_ACCEPT})
        if r.status_code != 200:
            raise self._fail(r, f"{self.domain}/{self.repository}:{reference}")
        media = r.headers.get("Content-Type", "").split(";")[0].strip()
        return r.content, media

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> str | None:
        r = self._send("PUT", f"{self.base}manifests/{reference}",
                       headers={"Content-Type": media_type}, content=data)
        r.close()
        if r.status_code not in (200, 201):
            raise self._fail(r, f"{self.domain}/{self.repository}:{reference}")
        answered = r.headers.get("Docker-Content-Digest")
        return str(answered) if answered else None

    @contextlib.contextmanager
    def blob(self, digest: str) -> Iterator[Iterator[bytes]]:
        r = self._send("GET", f"{self.base}blobs/{digest}", stream=True)
        try:
            if r.status_code != 200:
                raise self._fail(r, f"{self.repository}: blob {digest}")
            yield r.iter_bytes(1 << 20)
        finally:
            r.close()


def _describe(e: Exception) -> str:
    """httpx's errors, one line: the cause (Connection refused...), not the traceback."""
    cause = e.__cause__ or e.__context__
    text = str(e) or type(e).__name__
    while cause is not None and not str(text).strip():
        text = str(cause)
        cause = cause.__cause__
    return f"cannot reach the registry ({text})"
