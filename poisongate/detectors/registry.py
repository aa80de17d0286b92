"""Detectors by name: each module of this package registers its class with `@register` on import."""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from poisongate.detectors.base import Detector, DetectorOptions
from poisongate.errors import ConfigError

DETECTORS: dict[str, type[Detector]] = {}


def register(cls: type[Detector]) -> type[Detector]:
    if cls.name in DETECTORS and DETECTORS[cls.name] is not cls:
        raise TypeError(f"two detectors are named {cls.name!r}: {DETECTORS[cls.name].__name__} and {cls.__name__}")
    DETECTORS[cls.name] = cls
    return cls


def make(name: str, options: DetectorOptions | dict[str, Any] | None = None) -> Detector:
    """A detector by its params.yaml name, with options as validated by params.yaml's parser (or a plain dict)."""
    if name not in DETECTORS:
        raise ConfigError(f"params.yaml: unknown detector {name!r} in filter.detectors; known: {sorted(DETECTORS)}")
    cls = DETECTORS[name]
    return cls(options if isinstance(options, DetectorOptions) else cls.Options.model_validate(options or {}))


def _load_plugins() -> None:
    """Import every module of this package, so that adding a detector is adding a file."""
    package = importlib.import_module("poisongate.detectors")
    for module in pkgutil.iter_modules(package.__path__):
        if module.name not in ("base", "registry"):
            importlib.import_module(f"poisongate.detectors.{module.name}")


_load_plugins()
