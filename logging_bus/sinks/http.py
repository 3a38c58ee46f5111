"""One HTTP client for the HTTP outputs (Loki, Elasticsearch): httpx's home in the log bus.

httpx is imported when the first HTTP output opens, so a stack without one never loads it.
Errors come out as ``SinkError`` (retry: the receiver or its configuration may be fixed —
401/403 an expired token, 404 a proxy path, 5xx, 408, 429) or ``SinkRejected`` (400/422:
this very payload would be refused again); ``PayloadTooLarge`` (413) asks the forwarder to
send the batch in smaller pieces.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from logging_bus.sinks import PayloadTooLarge, SinkError, SinkRejected

if TYPE_CHECKING:
    import httpx


class HttpPoster:
    def __init__(self, url: str, *, headers: dict[str, str], timeout: float) -> None:
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self._client: httpx.AsyncClient | None = None

    async def post(self, body: bytes, content_type: str) -> bytes:
        """POST ``body``; the response body of a 2xx, else ``SinkError``/``SinkRejected``."""
        import httpx

        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout, headers=self.headers)
            response = await self._client.post(self.url, content=body,
                                               headers={"Content-Type": content_type})
        except httpx.HTTPError as e:
            raise SinkError(f"POST {self.url}: {_reason(e)}") from e
        except (UnicodeError, ValueError) as e:  # a header or URL httpx cannot send: said
            raise SinkError(f"POST {self.url}: {e}") from e  # and retried, nothing skipped
        if response.is_success:
            return response.content
        text = response.text.strip().replace("\n", " ")[:200]
        message = f"POST {self.url}: {response.status_code} {response.reason_phrase}" + \
            (f": {text}" if text else "")
        if response.status_code == 413:
            raise PayloadTooLarge(message)
        if response.status_code in (400, 422):
            raise SinkRejected(message)
        raise SinkError(message)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


def _reason(e: Exception) -> str:
    cause: BaseException | None = e
    for _ in range(10):  # the OSError under httpx's, httpcore's and trio's wrappers
        if cause is None:
            break
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            if cause.errno and cause.errno > 0:
                return os.strerror(cause.errno).lower()
            return str(cause.strerror).lower()  # gaierror's errno is negative: its own text
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        else:
            cause = cause.__cause__ or cause.__context__
    return str(e) or type(e).__name__
