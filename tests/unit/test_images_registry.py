"""Registry pieces without root: addresses, the credentials file, progress lines, and a push
and pull through Debian's docker-registry answering with a token challenge."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from supervisor.images import auth, transfer
from supervisor.images.reference import parse
from supervisor.images.registry import RegistryError, base_url, is_loopback
from supervisor.images.store import Store
from tests.unit.test_images_archive import blobs_of, make_image

# bcrypt of "s3cret" (docker-registry's htpasswd takes only bcrypt)
HTPASSWD = "alice:$2b$05$abcdefghijklmnopqrstuuLK7U1u6pVRmL7L1BBM2aS35PSZnDXlK\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalRegistry:
    """Debian's docker-registry on a free loopback port with an access log; `auth` is
    "htpasswd" (alice/s3cret, Basic) or a token realm URL (its `silly` access controller:
    a Bearer challenge, any token accepted)."""

    def __init__(self, tmp: Path, *, auth: str) -> None:
        tmp.mkdir()
        self.port = free_port()
        self.address = f"localhost:{self.port}"
        if auth == "htpasswd":
            (tmp / "htpasswd").write_text(HTPASSWD)
            access = f"htpasswd: {{realm: test, path: {tmp / 'htpasswd'}}}"
        else:
            access = f"silly: {{realm: '{auth}', service: test}}"
        config = tmp / "registry.yml"
        config.write_text(f"""\
version: 0.1
log: {{level: warn}}
storage: {{filesystem: {{rootdirectory: {tmp / "storage"}}}}}
http: {{addr: "127.0.0.1:{self.port}"}}
auth: {{{access}}}
""")
        self.log = tmp / "registry.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["docker-registry", "serve", str(config)],
                                         stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:  # ready when it accepts connections
            with socket.socket() as s, contextlib.suppress(OSError):
                s.connect(("127.0.0.1", self.port))
                break
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "docker-registry did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def mark(self) -> int:
        return len(self.log.read_text().splitlines())

    def uploaded_since(self, mark: int) -> set[str]:
        """Digests of the blobs whose upload completed (PUT ...?digest=), from the access log."""
        out = set()
        for line in self.log.read_text().splitlines()[mark:]:
            m = re.search(r'"PUT /v2/\S+/blobs/uploads/\S*digest=sha256%3A([0-9a-f]{64}) '
                          r'HTTP/1.1" 201', line)
            if m:
                out.add("sha256:" + m.group(1))
        return out


@pytest.mark.parametrize(("domain", "url"), [
    ("localhost:5000", "http://localhost:5000"),
    ("127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("[::1]:5000", "http://[::1]:5000"),
    ("registry.localhost", "http://registry.localhost"),
    ("docker.io", "https://registry-1.docker.io"),
    ("quay.io", "https://quay.io"),
    ("10.0.0.1:5000", "https://10.0.0.1:5000"),
])
def test_plain_http_only_on_loopback(domain: str, url: str) -> None:
    assert base_url(domain) == url
    assert is_loopback(domain) == url.startswith("http:")


def test_credentials_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "cfg"), "DOCKER_CONFIG": str(tmp_path / "dk")}
    assert auth.lookup("localhost:5000", env) is None
    path = auth.store("localhost:5000", auth.Credentials("alice", "pa:ss"), env)
    assert path == tmp_path / "cfg/supervise/auth.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert auth.lookup("localhost:5000", env) == auth.Credentials("alice", "pa:ss")
    assert "pa:ss" not in repr(auth.lookup("localhost:5000", env))
    # Docker's file, read when ours has no entry; Docker Hub under its v1 key
    (tmp_path / "dk").mkdir()
    token = base64.b64encode(b"bob:hub").decode()
    (tmp_path / "dk/config.json").write_text(json.dumps(
        {"auths": {"https://index.docker.io/v1/": {"auth": token}}}))
    assert auth.lookup("docker.io", env) == auth.Credentials("bob", "hub")
    assert auth.remove("localhost:5000", env) and not auth.remove("localhost:5000", env)
    assert json.loads(path.read_text()) == {"auths": {}}


def test_progress_is_a_line_per_blob_off_a_terminal() -> None:
    out = io.StringIO()
    p = transfer.Progress(out)
    p.bar("sha256:" + "ab" * 32, "Pushing", 10, 100)  # no bars off a terminal
    p.line("sha256:" + "ab" * 32, "Pushed")
    assert out.getvalue() == "abababababab: Pushed\n"


@pytest.fixture
def token_server() -> Iterator[tuple[str, list[dict[str, list[str]]]]]:
    """The realm of a token challenge: hands out a token, records what was asked."""
    asked: list[dict[str, list[str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(parse_qs(urlparse(self.path).query))
            body = json.dumps({"token": "t0ken"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/token", asked
    server.shutdown()
    server.server_close()
    thread.join()


def test_push_and_pull_with_a_token_challenge(
        tmp_path: Path, token_server: tuple[str, list[dict[str, list[str]]]]) -> None:
    realm, asked = token_server
    registry = LocalRegistry(tmp_path / "registry", auth=realm)
    try:
        src = Store(tmp_path / "src")
        image = make_image(src, tmp_path)
        ref = parse(f"{registry.address}/team/app:1")
        out = io.StringIO()
        digest = transfer.push(src, image, ref, creds=None, progress=transfer.Progress(out))
        assert digest == image.manifest_digest
        assert out.getvalue().count(": Pushed\n") == 3
        assert asked[0] == {"scope": ["repository:team/app:pull,push"], "service": ["test"]}
        dest = Store(tmp_path / "dest")
        pulled = transfer.pull(dest, ref, creds=None, progress=transfer.Progress(io.StringIO()))
        assert pulled.manifest_digest == image.manifest_digest
        assert {"sha256:" + p.name for p in dest.blobs.iterdir()} == blobs_of(image)
        assert dest.tags() == {str(ref): image.manifest_digest}
        by_digest = parse(f"{registry.address}/team/app@{image.manifest_digest}")
        again = transfer.pull(dest, by_digest, creds=None,
                              progress=transfer.Progress(out := io.StringIO()))
        assert again.id == image.id and out.getvalue().count("Already exists") == 3
        with pytest.raises(RegistryError, match=r"team/app:2: manifest unknown"):
            transfer.pull(dest, parse(f"{registry.address}/team/app:2"), creds=None,
                          progress=transfer.Progress(io.StringIO()))
    finally:
        registry.stop()


def test_an_unreachable_registry_is_one_line(tmp_path: Path) -> None:
    store = Store(tmp_path)
    port = free_port()
    with pytest.raises(RegistryError, match=rf"^localhost:{port}: cannot reach the registry "
                                            r"\(.*Connection refused.*\)$"):
        transfer.pull(store, parse(f"localhost:{port}/app:1"), creds=None,
                      progress=transfer.Progress(io.StringIO()))
