"""One HTTP client for the HTTP outputs (Loki, Elasticsearch): httpx's home in the log bus.

httpx is imported when the first HTTP output opens, so a stack without one never loads it.
Errors come out as ``SinkError`` (retry) or ``SinkRejected`` (a 4xx other than 408/429:
the same request would be refused again).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from logging_bus.sinks import SinkError, SinkRejected

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

        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, headers=self.headers)
        try:
            response = await self._client.post(self.url, content=body,
                                               headers={"Content-Type": content_type})
        except httpx.HTTPError as e:
            raise SinkError(f"POST {self.url}: {_reason(e)}") from e
        if response.is_success:
            return response.content
        text = response.text.strip().replace("\n", " ")[:200]
        message = f"POST {self.url}: {response.status_code} {response.reason_phrase}" + \
            (f": {text}" if text else "")
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
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
            return (os.strerror(cause.errno) if cause.errno else str(cause.strerror)).lower()
        if isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        else:
            cause = cause.__cause__ or cause.__context__
    return str(e) or type(e).__name__
