"""Reading requests: headers, query parameters, the hub handshake."""

from urllib.parse import parse_qsl


def header(req, name: str):
    """A header's value (names are matched case-insensitively), or None.

    `req` is the host's request (its `headers` is a list of (name, value))."""
    wanted = name.lower()
    for key, value in req.headers:
        if key.lower() == wanted:
            return value
    return None


def query_param(query: str, name: str):
    """A query parameter, percent-decoded, or None."""
    for key, value in parse_qsl(query or "", keep_blank_values=True):
        if key == name:
            return value
    return None


def hub_challenge(query: str, verify_token):
    """Meta's subscription handshake: the `hub.challenge` to echo when `hub.mode` is
    `subscribe` and `hub.verify_token` matches, else None (answer 403)."""
    from .signature import constant_time_eq

    if not verify_token:
        return None
    if query_param(query, "hub.mode") != "subscribe":
        return None
    given = query_param(query, "hub.verify_token") or ""
    if not constant_time_eq(given, verify_token):
        return None
    return query_param(query, "hub.challenge")
