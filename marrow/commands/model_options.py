"""Options of commands that take any model by name (`prior-check`, `sbc`, `sensitivity --refit`), read from
the registry: the MODEL argument's choices and one option per model option, shared across the models that
declare it. Light: the descriptors only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from marrow.descriptor import REGISTRY, Option


def model_argument(func: Callable) -> Callable:
    """MODEL, one of the registered models."""
    return click.argument("model", type=click.Choice(list(REGISTRY.names())))(func)


def _declaring(name: str) -> list[tuple[str, Option]]:
    return [(d.name, o) for d in REGISTRY for o in d.options if o.name == name]


def model_options(names: tuple[str, ...]) -> Callable[[Callable], Callable]:
    """One click option per model option in `names` (those no registered model declares are left out).

    Every option defaults to None, "not given": the model's own default applies, and a value given to a model
    that does not take it is a usage error (ModelSpec's check names the model's options)."""

    def decorate(func: Callable) -> Callable:
        for name in reversed(names):
            declaring = _declaring(name)
            if not declaring:
                continue
            first = declaring[0][1]
            if len(declaring) == 1:
                text = f"{first.help} ({declaring[0][0]} model)"
            else:  # per model: its choices, or its own help
                text = "; ".join(
                    f"{m}: {', '.join(o.choices) if o.choices else o.help.rstrip('.')}" for m, o in declaring
                )
                text += " (default: the model's own)"
            if isinstance(first.default, bool):
                flag = {"is_flag": True} if first.default is False else {}  # a --x/--no-x pair is a flag already
                option = click.option(first.flag, name, default=None, help=text, **flag)
            else:
                choices = tuple(dict.fromkeys(c for _, o in declaring for c in o.choices))
                kind = click.Choice(list(choices)) if choices else type(first.default)
                option = click.option(first.flag, name, type=kind, default=None, help=text)
            func = option(func)
        return func

    return decorate


def given(options: dict[str, Any]) -> dict[str, Any]:
    """The model options the user gave (those not None), for `ModelSpec(model, **given(...))`."""
    return {k: v for k, v in options.items() if v is not None}
