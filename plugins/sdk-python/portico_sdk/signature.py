"""Signature checks providers use, all compared in constant time.

- `verify_hmac_hex` / `verify_hmac_base64`: HMAC-SHA256 of the body, as hex or base64.
- `verify_hub_sha256`: Meta's `X-Hub-Signature-256: sha256=<hex>`.
- `verify_standard_webhook`: standardwebhooks.com (`webhook-id`, `-timestamp`, `-signature`).
"""

import base64
import binascii
import hashlib
import hmac
import re
# hmac imports `warnings` lazily, and componentize-py only bundles what is
# imported when the component is built: import it here, or `hmac` fails at
# run time with "No module named 'warnings'".
import warnings  # noqa: F401

# Compiled at import: a component's modules are imported when it is built (the
# snapshot every instance starts from), so an instance never compiles them again.
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_UNIX_SECONDS = re.compile(r"[+-]?[0-9]+")

#: How far a Standard Webhooks timestamp may be from now, either way (seconds).
STANDARD_TOLERANCE_SECS = 5 * 60


class SignatureError(Exception):
    """Why a request was refused; the text is safe to show the caller."""


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, hashlib.sha256).digest()


def hmac_sha256_hex(key: bytes, message: bytes) -> str:
    return hmac_sha256(key, message).hex()


def hmac_sha256_base64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac_sha256(key, message)).decode("ascii")


def constant_time_eq(a, b) -> bool:
    """True when a == b, in time that does not depend on where they differ."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)


def _key(secret) -> bytes:
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def verify_hmac_hex(secret, body: bytes, given: str) -> bool:
    """`given` is the lower- or upper-case hex HMAC-SHA256 of `body`."""
    expected = hmac_sha256_hex(_key(secret), body)
    return constant_time_eq(expected, (given or "").strip().lower())


def verify_hmac_base64(secret, body: bytes, given: str) -> bool:
    """`given` is the base64 HMAC-SHA256 of `body`."""
    expected = hmac_sha256_base64(_key(secret), body)
    return constant_time_eq(expected, (given or "").strip())


def _secrets(secrets) -> list:
    """One secret or several (a rotation), blanks left out."""
    if isinstance(secrets, (str, bytes, bytearray)):
        secrets = [secrets]
    return [s for s in (secrets or []) if s]


def verify_hub_sha256(app_secrets, body: bytes, header_value) -> None:
    """Meta's `X-Hub-Signature-256: sha256=<hex HMAC of the body with the app secret>`.
    `app_secrets`: one secret or several (during a rotation), each checked in
    constant time. Raises SignatureError naming what is wrong."""
    secrets = _secrets(app_secrets)
    if not secrets:
        raise SignatureError("the app secret is not set")
    if header_value is None:
        raise SignatureError("missing X-Hub-Signature-256")
    value = header_value.strip()
    given = value[len("sha256="):] if value.startswith("sha256=") else ""
    if not _HEX64.fullmatch(given):
        raise SignatureError("X-Hub-Signature-256 must be sha256=<64 hex digits>")
    matched = False
    for secret in secrets:
        matched |= verify_hmac_hex(secret, body, given)
    if not matched:
        raise SignatureError("X-Hub-Signature-256 does not match the body")


def standard_webhook_key(secret: str) -> bytes:
    """The key inside a `whsec_<base64>` secret (the prefix is optional)."""
    text = secret.strip()
    if text.startswith("whsec_"):
        text = text[len("whsec_"):]
    # Padding is optional, as in the Rust and JavaScript adapters.
    text = text.rstrip("=")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    # An empty key would let anyone sign.
    if not key:
        raise SignatureError("the signing secret must be whsec_ followed by base64")
    return key


def verify_standard_webhook(header, body: bytes, secrets, now: int,
                            tolerance: int = STANDARD_TOLERANCE_SECS) -> None:
    """Standard Webhooks: `v1,<base64 HMAC of "{id}.{timestamp}.{body}">`, several
    space-separated during key rotation; timestamps over `tolerance` seconds from
    `now` are refused (a captured request cannot be replayed later).

    `header(name)` returns a header's value or None; `secrets` are `whsec_...`
    strings. Raises SignatureError naming what is wrong."""
    values = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = header(name)
        if value is None:
            raise SignatureError(f"missing {name} header")
        values[name] = value.strip()
    # ASCII digits only, as Rust reads them (int() would take "1_700" and other scripts' digits).
    if not _UNIX_SECONDS.fullmatch(values["webhook-timestamp"]):
        raise SignatureError("webhook-timestamp must be unix seconds")
    stamp = int(values["webhook-timestamp"])
    skew = stamp - now
    if abs(skew) > tolerance:
        raise SignatureError(
            f"webhook-timestamp is {skew} s from now; at most {tolerance} s is accepted")
    secrets = _secrets(secrets)
    if not secrets:
        raise SignatureError("no signing secret is set")
    signed = (values["webhook-id"] + "." + values["webhook-timestamp"] + ".").encode() + bytes(body)
    given = [s[3:] for s in values["webhook-signature"].split() if s.startswith("v1,")]
    matched = False
    for secret in secrets:
        expected = hmac_sha256_base64(standard_webhook_key(secret), signed)
        for signature in given:
            matched |= constant_time_eq(expected, signature)
    if not matched:
        raise SignatureError("no v1 signature in webhook-signature matches")
