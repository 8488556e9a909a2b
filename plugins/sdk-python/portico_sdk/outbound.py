"""Outbound HTTP through the host (only to the plugin's `allowed_hosts`)."""

import json
from typing import List, Optional, Tuple

from componentize_py_types import Err
from wit_world.imports import outbound as _outbound


class OutboundError(Exception):
    """A call that got no answer: `kind` is not_allowed, timeout or failed."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class Response:
    def __init__(self, status: int, headers: List[Tuple[str, str]], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> Optional[str]:
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def json(self):
        from .fields import parse_json

        return parse_json(self.body)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def send(method: str, url: str, headers=None, body: bytes = b"",
         timeout_ms: Optional[int] = None) -> Response:
    """Send a request; raises OutboundError when no answer came (any status is an answer)."""
    req = _outbound.OutboundRequest(
        method=method, url=url, headers=list(headers or []), body=bytes(body),
        timeout_ms=timeout_ms)
    try:
        res = _outbound.send(req)
    except Err as e:
        value = e.value
        kind = {
            _outbound.OutboundError_NotAllowed: "not_allowed",
            _outbound.OutboundError_Timeout: "timeout",
        }.get(type(value), "failed")
        raise OutboundError(kind, value.value) from None
    return Response(res.status, res.headers, res.body)


def send_json(method: str, url: str, value, headers=None, timeout_ms=None) -> Response:
    """Send `value` as a JSON body."""
    all_headers = [("content-type", "application/json")] + list(headers or [])
    return send(method, url, all_headers, json.dumps(value).encode(), timeout_ms)
