"""JSON helpers whose errors name the field path, e.g. `data.source_key is missing`."""

import json


class FieldError(Exception):
    """A problem with one field: `path` is dotted (`data.fields.city`), `$` for the document."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path} {problem}")
        self.path = path
        self.problem = problem


def _no_constant(name):
    # NaN and Infinity are not JSON (Python reads them unless told not to).
    raise ValueError(f"{name} is not a JSON value")


# Made at import, so that they are in the snapshot every instance starts from
# (json.loads/dumps with options would build a new decoder or encoder per call).
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                            allow_nan=False)


def parse_json(raw):
    """Parse bytes or text as JSON (strictly: no NaN or Infinity); the error says what is wrong."""
    try:
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode("utf-8")
        return _DECODER.decode(raw)
    except UnicodeDecodeError as e:
        raise FieldError("$", f"is not UTF-8: {e}") from None
    except json.JSONDecodeError as e:
        raise FieldError("$", f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise FieldError("$", "is not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise FieldError("$", f"is not valid JSON: {e}") from None


def to_json(value) -> str:
    """Compact JSON with keys sorted and text as UTF-8, as the Rust adapters write it
    (serde_json): the same fields make the same `fields_json` whatever the language."""
    return _ENCODER.encode(value)


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def at(value, path: str):
    """The value at a dotted path (`a.0.b`: numbers index arrays); null counts as missing."""
    current = value
    for part in path.split("."):
        if isinstance(current, dict):
            current = current.get(part)
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            current = None
        if current is None:
            raise FieldError(path, "is missing")
    return current


def str_at(value, path: str) -> str:
    """A string at `path`; numbers are accepted and written out (ids often come as either)."""
    found = at(value, path)
    if isinstance(found, str):
        return found
    if isinstance(found, (int, float)) and not isinstance(found, bool):
        return str(found)
    raise FieldError(path, f"must be a string, not {_kind(found)}")


def opt_str_at(value, path: str):
    """Like `str_at`, but a missing field or a blank string is None."""
    try:
        found = str_at(value, path)
    except FieldError as e:
        if e.problem == "is missing":
            return None
        raise
    return found if found.strip() else None


def obj_at(value, path: str, default=None):
    """An object at `path`; missing or null is `default` (an empty dict unless given)."""
    try:
        found = at(value, path)
    except FieldError:
        return {} if default is None else default
    if not isinstance(found, dict):
        raise FieldError(path, f"must be an object, not {_kind(found)}")
    return found
