"""What the host offers: logging, the plugin's config and secrets, the directory
and the cache. Inside a component only (these call the host)."""

from typing import List, Optional

from wit_world.imports import cache as _cache
from wit_world.imports import directory as _directory
from wit_world.imports import host as _host

Level = _host.Level


def log(level, message: str) -> None:
    """Logged by the host with the plugin's name and the webhook's correlation id."""
    _host.log(level, message)


def debug(message: str) -> None:
    _host.log(Level.DEBUG, message)


def info(message: str) -> None:
    _host.log(Level.INFO, message)


def warn(message: str) -> None:
    _host.log(Level.WARN, message)


def error(message: str) -> None:
    _host.log(Level.ERROR, message)


def config(key: str) -> Optional[str]:
    """A value of the plugin's [config] table in plugins.toml, or None."""
    return _host.config(key)


def config_bool(key: str, default: bool) -> bool:
    """A true/false setting; anything unreadable is `default`, with a warning."""
    raw = _host.config(key)
    if raw is None:
        return default
    value = parse_bool(raw)
    if value is None:
        warn(f"config {key} = {raw!r} is not true or false; using {default}")
        return default
    return value


def secret(key: str) -> Optional[str]:
    """A value of the plugin's [secrets] table, or None. Never log it."""
    value = _host.secret(key)
    return value if value and value.strip() else None


def secret_list(key: str) -> List[str]:
    """A comma-separated secret as a list (several during a rotation)."""
    return split_list(_host.secret(key) or "")


def split_list(raw: str) -> List[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def parse_bool(raw: str) -> Optional[bool]:
    text = raw.strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    return None


def source_key(tenant_id: int, kind: str) -> Optional[str]:
    """The provider key a tenant mapped for `kind` (lead_sources)."""
    return _directory.source_key(tenant_id, kind)


def source_secret(kind: str, key: str, name: str) -> Optional[str]:
    """A credential kept with a source (`portico source add --secret NAME=...`)."""
    return _directory.source_secret(kind, key, name)


def source_setting(kind: str, key: str, name: str) -> Optional[str]:
    """A setting kept with a source (`--setting NAME=VALUE`)."""
    return _directory.source_setting(kind, key, name)


def cache_get(key: str) -> Optional[str]:
    return _cache.get(key)


def cache_put(key: str, value: str, ttl_ms: int) -> None:
    _cache.put(key, value, ttl_ms)
