"""Portico's guest library for adapters written in Python.

The pure helpers (`signature`, `fields`, `http`) import nothing from the host,
so an adapter's logic built on them is unit-tested with plain `python3 -m
unittest`. `host`, `outbound` and `adapter` call the host through the bindings
componentize-py generates from wit/adapter.wit; they work inside a component.
"""

from .fields import FieldError, parse_json, to_json, at, str_at, opt_str_at, obj_at  # noqa: F401
from .signature import (  # noqa: F401
    SignatureError,
    constant_time_eq,
    hmac_sha256,
    hmac_sha256_hex,
    hmac_sha256_base64,
    verify_hmac_hex,
    verify_hmac_base64,
    verify_hub_sha256,
    verify_standard_webhook,
    standard_webhook_key,
)
from .http import header, query_param, hub_challenge  # noqa: F401

__all__ = [
    "FieldError", "parse_json", "to_json", "at", "str_at", "opt_str_at", "obj_at",
    "SignatureError", "constant_time_eq", "hmac_sha256", "hmac_sha256_hex",
    "hmac_sha256_base64", "verify_hmac_hex", "verify_hmac_base64",
    "verify_hub_sha256", "verify_standard_webhook", "standard_webhook_key",
    "header", "query_param", "hub_challenge",
]
