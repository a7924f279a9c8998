"""Plug-ins by entry point or import path: how operators, sources and verifiers are found (one loader for all)."""

from __future__ import annotations

import warnings
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any


def load_group(group: str, kind: str) -> dict[str, Any]:
    """Every entry point of `group`, loaded, by name. One that fails to load is reported by name (a warning) instead
    of hiding every other plug-in."""
    found: dict[str, Any] = {}
    for ep in entry_points(group=group):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must not hide the others
            warnings.warn(f"{kind} {ep.name!r} ({ep.value}) cannot be loaded: {exc}", stacklevel=2)
    return found


def import_path(path: str, kind: str, base: type | None = None) -> Any:
    """The object at `package.module:Name`; ValueError naming it when it cannot be imported or is not a `base`."""
    module, _, attr = path.partition(":")
    try:
        obj = getattr(import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import {kind} {path!r}: {exc}") from exc
    if base is not None and not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"{path!r} is not a {base.__name__} subclass")
    return obj
