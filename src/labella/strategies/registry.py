"""Name → strategy class lookup used by the services (project settings store a name + params)."""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from labella.strategies.base import INPUT_NAMES, QueryStrategy

_REGISTRY: dict[str, type[QueryStrategy]] = {}

StrategyT = TypeVar("StrategyT", bound=type[QueryStrategy])


class UnknownStrategyError(KeyError, ValueError):
    """No strategy is registered under the requested name.

    A KeyError (it is a failed lookup) and a ValueError (it is bad user input), so callers that
    map ValueError to a 4xx response need no special case.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def register(cls: StrategyT) -> StrategyT:
    """Class decorator adding a concrete :class:`QueryStrategy` to the registry under ``cls.name``.

    Re-registering the same class is a no-op; a different class under a taken name is an error.
    """
    if not (isinstance(cls, type) and issubclass(cls, QueryStrategy)):
        raise TypeError(f"register() expects a QueryStrategy subclass, got {cls!r}")
    if inspect.isabstract(cls):
        raise TypeError(f"{cls.__name__} is abstract and cannot be registered")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__name__} must define a non-empty class attribute 'name'")
    unknown_inputs = set(cls.requires) - INPUT_NAMES
    if unknown_inputs:
        raise ValueError(
            f"{cls.__name__}.requires names unknown inputs {sorted(unknown_inputs)}; "
            f"allowed: {sorted(INPUT_NAMES)}"
        )
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"strategy name '{name}' is already registered by {existing.__module__}."
            f"{existing.__qualname__}"
        )
    _REGISTRY[name] = cls
    return cls


def available_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def strategy_class(name: str) -> type[QueryStrategy]:
    """The class registered under ``name``; :class:`UnknownStrategyError` lists the known names."""
    cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(available_strategies())
        raise UnknownStrategyError(
            f"unknown query strategy {name!r}; available strategies: {known}"
        )
    return cls


def get_strategy(name: str, **params: Any) -> QueryStrategy:
    """Instantiate the strategy registered under ``name`` with keyword hyperparameters.

    Raises:
        UnknownStrategyError: no such strategy (message lists the available ones).
        ValueError: a parameter the strategy does not take, or an invalid value.
    """
    cls = strategy_class(name)
    accepted = cls.param_names()
    unexpected = sorted(set(params) - set(accepted))
    if unexpected:
        allowed = ", ".join(accepted) if accepted else "none"
        raise ValueError(
            f"strategy '{name}' got unknown parameter(s) {', '.join(unexpected)}; "
            f"accepted parameters: {allowed}"
        )
    return cls(**params)
