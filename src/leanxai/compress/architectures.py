"""Architectures a compressed file can rebuild by name: a small protocol and its registry.

Storage knows no model class. A class whose instances :func:`~leanxai.compress.save_compressed`
should be able to rebuild without a skeleton

1. implements :class:`Describable`: ``describe()`` returns the keyword arguments of its
   constructor as JSON values (numbers, strings, booleans, None, lists, string-keyed dicts);
2. registers its constructor under a name with :func:`register_architecture`, in the module
   that defines it (so importing that module registers it).

A file then records the name, the arguments and that module. :func:`build_architecture`, used
by :func:`~leanxai.compress.load_compressed`, calls the registered constructor with the
arguments; when the name is not registered yet it imports the recorded module first, but only a
module of leanxai itself (``leanxai.`` and dotted identifiers): a file never names arbitrary
code to import, and nothing in it is evaluated. Architectures of other packages load once their
module has been imported by the caller.

The zoo's :class:`~leanxai.zoo.SmallCNN`, :class:`~leanxai.zoo.VGGStyle` and
:class:`~leanxai.zoo.recurrent.RecurrentClassifier` are registered this way.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from torch import nn

from leanxai.core.errors import InputError, InputTypeError, ModelLoadError

__all__ = [
    "Architecture",
    "Describable",
    "architecture_of",
    "build_architecture",
    "register_architecture",
    "registered_architectures",
]

_IMPORTABLE = re.compile(r"leanxai(\.[A-Za-z_][A-Za-z0-9_]*)+")
"""Modules a file may ask to import: leanxai's own, by dotted name."""


@runtime_checkable
class Describable(Protocol):
    """A model that can say how to construct it again."""

    def describe(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this model's architecture, as JSON values."""
        ...


@dataclass(frozen=True)
class Architecture:
    """A registered architecture.

    Attributes
    ----------
    name : str
        The name files record.
    build : callable
        Called with the described keyword arguments; returns the untrained module.
    kind : type
        The class of the modules it builds; only models of exactly this class are described
        under ``name`` (a subclass may change the forward pass).
    module : str
        The module that registers it, recorded in files so that loading can import it.
    """

    name: str
    build: Callable[..., nn.Module]
    kind: type[nn.Module]
    module: str


_BY_NAME: dict[str, Architecture] = {}
_BY_KIND: dict[type[nn.Module], Architecture] = {}


def register_architecture(
    name: str,
    build: Callable[..., nn.Module],
    *,
    kind: type[nn.Module] | None = None,
    module: str | None = None,
) -> Architecture:
    """Register a constructor under ``name`` so that compressed files can rebuild its models.

    Parameters
    ----------
    name : str
        A Python identifier that is not a ``torch.nn`` class name (those name the standard layers
        files describe themselves).
    build : callable
        The class itself or a function of the keyword arguments ``describe()`` returns.
    kind : type, optional
        The class ``build`` returns; required when ``build`` is not a class. Its instances must
        implement :class:`Describable`.
    module : str, optional
        Module to import when a file names this architecture before it is registered; by default
        the one that defines ``kind``. Only modules of leanxai are ever imported that way.

    Returns
    -------
    Architecture
        The entry. Registering the same name, class and module again (a module reloaded) returns
        the new entry; a name or class already taken by another registration is refused.

    Raises
    ------
    InputError
        For a name that is not an identifier or is a ``torch.nn`` class name, or that is
        already registered for another class.
    InputTypeError
        For a ``build`` that is not callable or a ``kind`` that is not an ``nn.Module`` class.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise InputError(f"name must be a Python identifier, got {name!r}")
    if hasattr(nn, name):
        raise InputError(f"name {name!r} is a torch.nn class; choose another architecture name")
    if not callable(build):
        raise InputTypeError(f"build must be callable, got {type(build).__name__}")
    if kind is None:
        if not isinstance(build, type):
            raise InputError("kind (the class build returns) is needed when build is a function")
        kind = build
    if not (isinstance(kind, type) and issubclass(kind, nn.Module)):
        raise InputTypeError(f"kind must be an nn.Module class, got {kind!r}")
    if not callable(getattr(kind, "describe", None)):
        raise InputTypeError(f"{kind.__name__} must implement describe() (see Describable)")
    module = kind.__module__ if module is None else module
    if not isinstance(module, str) or not module:
        raise InputError(f"module must be a module name, got {module!r}")
    entry = Architecture(name=name, build=build, kind=kind, module=module)
    previous = _BY_NAME.get(name)
    if previous is not None and _identity(previous) != _identity(entry):
        raise InputError(
            f"architecture {name!r} is already registered for "
            f"{previous.kind.__module__}.{previous.kind.__qualname__}"
        )
    taken = _BY_KIND.get(kind)
    if taken is not None and taken.name != name:
        raise InputError(f"{kind.__qualname__} is already registered as {taken.name!r}")
    _BY_NAME[name] = entry
    _BY_KIND[kind] = entry
    return entry


def _identity(entry: Architecture) -> tuple[str, str, str]:
    # By qualified names, so that reloading a module (new class objects) re-registers it.
    return (entry.kind.__module__, entry.kind.__qualname__, entry.module)


def registered_architectures() -> dict[str, Architecture]:
    """The registered architectures by name (a copy)."""
    return dict(_BY_NAME)


def architecture_of(model: nn.Module) -> tuple[Architecture, dict[str, Any]] | None:
    """The registration of ``model``'s exact class and its ``describe()``, or None.

    None when the class is not registered (subclasses of a registered class are not: they may
    change the forward pass).

    Raises
    ------
    InputTypeError
        When ``describe()`` does not return a dict with string keys.
    """
    entry = _BY_KIND.get(type(model))
    if entry is None or not isinstance(model, Describable):
        return None
    arguments = model.describe()
    if not isinstance(arguments, dict) or not all(isinstance(k, str) for k in arguments):
        raise InputTypeError(
            f"{type(model).__name__}.describe() must return a dict with str keys, "
            f"got {type(arguments).__name__}"
        )
    return entry, arguments


def build_architecture(
    name: str, arguments: Mapping[str, Any], module: str | None = None
) -> nn.Module:
    """Build a registered architecture from a description read from a file.

    Parameters
    ----------
    name : str
        The registered name.
    arguments : mapping
        Keyword arguments of its constructor.
    module : str, optional
        The module that registers ``name``, imported first when ``name`` is not registered yet;
        only a module of leanxai (``leanxai.`` followed by dotted identifiers) is imported.

    Raises
    ------
    ModelLoadError
        When the name is unknown (and no allowed module registers it), the module may not be
        imported or fails to, or the constructor refuses the arguments.
    """
    entry = _BY_NAME.get(name)
    if entry is None and module is not None:
        if not isinstance(module, str) or _IMPORTABLE.fullmatch(module) is None:
            raise ModelLoadError(
                f"architecture {name!r} names module {module!r}; only modules of leanxai are "
                "imported to rebuild a model (import yours first to register it)"
            )
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise ModelLoadError(
                f"cannot import {module!r} for architecture {name!r}: {error}"
            ) from error
        entry = _BY_NAME.get(name)
    if entry is None:
        raise ModelLoadError(
            f"architecture {name!r} is not registered (known: "
            f"{', '.join(sorted(_BY_NAME)) or 'none'}); import the module that registers it "
            "or pass model= a skeleton"
        )
    try:
        built = entry.build(**arguments)
    except (TypeError, ValueError) as error:
        raise ModelLoadError(
            f"{name} does not accept the arguments {dict(arguments)}: {error}"
        ) from error
    if type(built) is not entry.kind:
        raise ModelLoadError(
            f"the constructor of {name!r} returned a {type(built).__name__}, "
            f"not a {entry.kind.__name__}"
        )
    return built
