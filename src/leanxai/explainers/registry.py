"""The one list of explanation methods.

Each method registers once, with :func:`register`, in the module that defines it: its name, its
aliases, the model families it applies to, what it returns and whether it runs a backward pass.
:func:`leanxai.explain`, every CLI command (``explain``, ``benchmark``, ``attribute``,
``methods``), the benchmarks and DeepACTIF's ranking baselines read it; names are normalised in
one place, :func:`normalize`.

A name may be registered for several families with a different factory for each (``"ig"`` is an
image explainer for ``cnn`` and a feature ranking for ``recurrent``): entries are keyed by
``(family, name)``.

Examples
--------
>>> from leanxai.explainers import registry
>>> registry.get("Grad-CAM++", "cnn").name
'gradcam++'
>>> [m.name for m in registry.methods("recurrent", output="feature ranking")][:2]
['deepactif', 'ig']
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from leanxai.core.errors import InputError, InputTypeError

__all__ = [
    "OUTPUTS",
    "MethodInfo",
    "default_method",
    "get",
    "methods",
    "names",
    "normalize",
    "register",
]

Output = Literal[
    "spatial map", "token scores", "time x feature map", "node/edge scores", "feature ranking"
]
Backward = Literal["no", "if needed", "yes", "many"]

OUTPUTS: tuple[str, ...] = (
    "spatial map",
    "token scores",
    "time x feature map",
    "node/edge scores",
    "feature ranking",
)
"""What a method returns; :func:`methods` filters by it."""

# The modules that register methods, imported on first use of the registry (not at import of
# leanxai, so that a family's optional dependencies load only when its methods are asked for).
_PROVIDERS: tuple[str, ...] = (
    "leanxai.explainers.cam",
    "leanxai.explainers.baselines",
    "leanxai.explainers.deepactif",
    "leanxai.explainers.recurrent",
    "leanxai.explainers.graph",
    "leanxai.explainers.vision_transformer",
    "leanxai.explainers.text",
)

_DEFAULTS: dict[str, str] = {"cnn": "gradcam", "recurrent": "deepactif_map"}


@dataclass(frozen=True)
class MethodInfo:
    """One registered method for one family.

    Attributes
    ----------
    name
        The canonical name (``"gradcam++"``).
    family
        The model family this entry applies to (``"cnn"``, ``"recurrent"``...).
    factory
        Called as ``factory(model, **options)``; returns an object with the method's verb
        (``explain`` for maps, ``attribute`` for rankings).
    output
        One of :data:`OUTPUTS`.
    backward
        ``"no"`` (forward passes only), ``"if needed"`` (no backward pass when an exact forward
        path applies), ``"yes"`` (one backward pass) or ``"many"`` (one per step or sample).
    aliases
        Other spellings accepted (after :func:`normalize`).
    summary
        One line for ``leanxai methods``.
    """

    name: str
    family: str
    factory: Callable[..., Any] = field(repr=False)
    output: Output
    backward: Backward
    aliases: tuple[str, ...] = ()
    summary: str = ""


_ENTRIES: dict[tuple[str, str], MethodInfo] = {}
_loaded = False

T = TypeVar("T")


def normalize(name: object) -> str:
    """The one way names are compared: lower case, ``-``, ``_`` and spaces dropped."""
    if not isinstance(name, str):
        raise InputTypeError(f"method must be a str, got {type(name).__name__}")
    return name.strip().lower().replace("-", "").replace("_", "").replace(" ", "")


def register(
    name: str,
    *,
    families: tuple[str, ...] | str,
    output: Output,
    backward: Backward,
    aliases: tuple[str, ...] = (),
    summary: str = "",
) -> Callable[[T], T]:
    """Class or function decorator: register ``name`` for each of ``families``.

    Registering the same ``(family, name)`` twice with another factory is a programming error.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    family_list = (families,) if isinstance(families, str) else tuple(families)

    def decorate(factory: T) -> T:
        for family in family_list:
            info = MethodInfo(
                name=name,
                family=family,
                factory=factory,  # type: ignore[arg-type]
                output=output,
                backward=backward,
                aliases=tuple(aliases),
                summary=summary,
            )
            key = (family, normalize(name))
            old = _ENTRIES.get(key)
            if old is not None and old.factory is not factory:
                raise RuntimeError(f"method {name!r} is registered twice for family {family!r}")
            _ENTRIES[key] = info
        return factory

    return decorate


def _load() -> None:
    global _loaded
    if not _loaded:
        for module in _PROVIDERS:
            importlib.import_module(module)
        _loaded = True


def methods(family: str | None = None, output: str | None = None) -> list[MethodInfo]:
    """Registered methods, in registration order, optionally for one family or output kind."""
    _load()
    return [
        info
        for info in _ENTRIES.values()
        if (family is None or info.family == family) and (output is None or info.output == output)
    ]


def names(family: str | None = None, output: str | None = None) -> tuple[str, ...]:
    """Canonical names of :func:`methods` (each once)."""
    return tuple(dict.fromkeys(info.name for info in methods(family, output)))


def families() -> tuple[str, ...]:
    """Families that have at least one method."""
    return tuple(dict.fromkeys(info.family for info in methods()))


def get(name: str, family: str | None = None) -> MethodInfo:
    """The entry for ``name`` (any alias or spelling) in ``family``.

    Without ``family`` the name must be unambiguous. An unknown name raises an
    :class:`~leanxai.core.errors.InputError` that lists the known ones.
    """
    key = normalize(name)
    found = [
        info
        for info in methods(family)
        if key == normalize(info.name) or key in {normalize(a) for a in info.aliases}
    ]
    if not found:
        known = ", ".join(names(family))
        where = f" for {family} models" if family else ""
        raise InputError(f"unknown method {name!r}{where}; choose from {known}")
    if len(found) > 1:
        raise InputError(
            f"method {name!r} exists for several families "
            f"({', '.join(info.family for info in found)}); pass family="
        )
    return found[0]


def default_method(family: str) -> str:
    """The method :func:`leanxai.explain` uses for ``family`` when none is named."""
    if family not in _DEFAULTS:
        known = ", ".join(sorted(_DEFAULTS))
        raise InputError(f"no default method for family {family!r}; known families: {known}")
    return _DEFAULTS[family]


def set_default(family: str, method: str) -> None:
    """Declare ``method`` the default of ``family`` (called by a family's module)."""
    _DEFAULTS[family] = method


def create(
    name: str,
    model: Any,
    family: str,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> Any:
    """Build method ``name`` of ``family`` for ``model`` with ``options``.

    ``seed`` is passed to factories that take one (and not already in ``options``). Unknown
    options raise an :class:`~leanxai.core.errors.InputError` naming them and the ones the
    method takes, before any work is done.
    """
    info = get(name, family)
    kwargs = dict(options or {})
    accepted = parameters(info.factory)
    if accepted is not None:
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            raise InputError(
                f"method {info.name!r} takes no option(s) {', '.join(unknown)}; "
                f"it takes {', '.join(sorted(accepted)) or 'none'}"
            )
        if seed is not None and "seed" not in kwargs and "seed" in accepted:
            kwargs["seed"] = seed
    return info.factory(model, **kwargs)


def parameters(factory: Callable[..., Any]) -> set[str] | None:
    """The keyword options ``factory`` takes besides the model; ``None`` when it takes ``**``."""
    import functools
    import inspect

    target = factory
    bound: set[str] = set()
    if isinstance(factory, functools.partial):
        target = factory.func
        bound = set(factory.keywords)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    names: set[str] = set()
    for index, parameter in enumerate(signature.parameters.values()):
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return None
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL or parameter.name == "self":
            continue
        if index == 0 or parameter.name == "model":
            continue
        if parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            names.add(parameter.name)
    return names - bound - {"model", "method"}
