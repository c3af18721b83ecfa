"""The method parameters as keyword arguments: one definition, the dataclass.

:class:`~daskreg.params.RegistrationParams` is the single list of the method's
parameters, their types and defaults. :func:`takes_params` turns a function's
``**params`` into those parameters, keyword-only and typed, in the signature that
:func:`inspect.signature`, ``help()``, IPython/Jupyter completion and Sphinx read, and
refuses an unknown keyword before the function runs (:func:`check_names`), naming the
closest valid one. Writing the parameters out again in each signature would give each
function its own copy of the defaults to drift apart. :func:`forwards_options` does the
same for a function that hands its keyword options on to another one.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar

from daskreg.errors import ParameterError
from daskreg.params import RegistrationParams

__all__ = [
    "PARAM_NAMES",
    "METHOD_PARAMETERS",
    "check_names",
    "takes_params",
    "same_parameters",
    "forwards_options",
]

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")

# ``extra`` carries what older saved results held; it is not an argument of the method.
_NOT_ARGUMENTS = frozenset({"extra"})
_HINTS = typing.get_type_hints(RegistrationParams)

#: Every method parameter, keyword-only, typed, with the dataclass's default.
METHOD_PARAMETERS: tuple[inspect.Parameter, ...] = tuple(
    inspect.Parameter(
        f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=_HINTS[f.name]
    )
    for f in dataclasses.fields(RegistrationParams)
    if f.name not in _NOT_ARGUMENTS
)
#: Names of the method parameters, in the dataclass's order.
PARAM_NAMES: tuple[str, ...] = tuple(p.name for p in METHOD_PARAMETERS)


def check_names(given: Iterable[str], valid: Sequence[str], where: str) -> None:
    """Raise :class:`~daskreg.errors.ParameterError` for a keyword not in ``valid``.

    The message names each unknown keyword, the closest valid name (by
    :func:`difflib.get_close_matches`) and every valid name.

    Parameters
    ----------
    given : iterable of str
        Keywords passed.
    valid : sequence of str
        Keywords accepted, in the order to list them.
    where : str
        The call, for the message (e.g. ``"register()"``).
    """
    unknown = [name for name in given if name not in valid]
    if not unknown:
        return
    named = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ParameterError(
        f"{where} got unknown parameter(s) {', '.join(named)}; valid names are {', '.join(valid)}"
    )


def takes_params(
    func: F | None = None, *, options: Sequence[inspect.Parameter] = ()
) -> F | Callable[[F], F]:
    """Expose a function's ``**params`` as the method parameters, and check their names.

    ``func`` must end in ``**params``, which it passes on to
    :class:`~daskreg.params.RegistrationParams`. The returned function has the same
    behaviour, a signature in which ``**params`` is replaced by ``options`` and every
    method parameter (:data:`METHOD_PARAMETERS`), and raises
    :class:`~daskreg.errors.ParameterError` for an unknown keyword before ``func`` is
    called.

    Parameters
    ----------
    func : callable
        A function or method whose last parameter is ``**params``. Omitted: the
        decorator itself, for ``@takes_params(options=...)``.
    options : sequence of inspect.Parameter, optional
        Keyword-only parameters defined elsewhere that ``func`` also takes in
        ``**params`` (the execution options,
        :data:`daskreg.parallel.execution.EXECUTION_PARAMETERS`), listed before the method
        parameters.

    Returns
    -------
    callable
        The wrapped function (or, without ``func``, the decorator).
    """
    if func is None:
        return functools.partial(takes_params, options=options)
    public, annotations = _replace_var_keyword(
        func, lambda head: [*head, *options, *METHOD_PARAMETERS]
    )
    return typing.cast(F, _checked(func, public, annotations))


def same_parameters(source: Callable[P, Any]) -> Callable[[Callable[..., R]], Callable[P, R]]:
    """Give the decorated function the parameters of ``source`` (its own return type).

    For two entry points that take the same arguments and differ in what they return
    (:func:`daskreg.register`, :func:`daskreg.register_series`): type checkers see
    ``source``'s parameters, :func:`inspect.signature` shows them, unknown keywords
    raise :class:`~daskreg.errors.ParameterError`.

    Parameters
    ----------
    source : callable
        The function whose parameters are copied (typically one made by
        :func:`takes_params`).

    Returns
    -------
    callable
        The decorator.
    """

    def decorate(func: Callable[..., R]) -> Callable[P, R]:
        returns = inspect.signature(func, eval_str=True).return_annotation
        public = inspect.signature(source).replace(return_annotation=returns)
        annotations = {**source.__annotations__, "return": returns}
        return typing.cast(Callable[P, R], _checked(func, public, annotations))

    return decorate


def forwards_options(source: Callable[..., Any]) -> Callable[[F], F]:
    """Show the keyword-only options of ``source`` in place of a function's ``**options``.

    For a function that hands its options on to ``source`` (or to what ``source``
    calls), so that they and their defaults are written once, in ``source``: the
    decorated function's signature, its type hints and ``help()`` list ``source``'s
    keyword-only parameters before its own, it receives every one of them (those not
    passed at ``source``'s default), and an unknown keyword raises
    :class:`~daskreg.errors.ParameterError` naming the closest valid one. If ``source``
    ends in ``**kwargs`` too, so does the signature, and ``source`` checks the names.

    Parameters
    ----------
    source : callable
        The function whose keyword-only parameters are shown.

    Returns
    -------
    callable
        The decorator, for functions that end in ``**options``.
    """
    given = inspect.signature(source, eval_str=True).parameters.values()
    forwarded = [p for p in given if p.kind is p.KEYWORD_ONLY]
    rest = [p for p in given if p.kind is p.VAR_KEYWORD]
    defaults = {p.name: p.default for p in forwarded}

    def arrange(head: list[inspect.Parameter]) -> list[inspect.Parameter]:
        own = [p for p in head if p.kind is p.KEYWORD_ONLY]
        return [*(p for p in head if p not in own), *forwarded, *own, *rest]

    def decorate(func: F) -> F:
        public, annotations = _replace_var_keyword(func, arrange)
        return typing.cast(F, _checked(func, public, annotations, defaults, check=not rest))

    return decorate


def _replace_var_keyword(
    func: Callable[..., Any],
    arrange: Callable[[list[inspect.Parameter]], list[inspect.Parameter]],
) -> tuple[inspect.Signature, dict[str, Any]]:
    """The signature and type hints of ``func`` with its final ``**kwargs`` replaced.

    ``arrange`` is given the parameters before ``**kwargs`` and returns all of them.
    """
    signature = inspect.signature(func, eval_str=True)
    *head, last = signature.parameters.values()
    if last.kind is not inspect.Parameter.VAR_KEYWORD:
        raise TypeError(f"{func.__qualname__} must end in **kwargs to take the options shown")
    parameters = arrange(head)
    annotations = {k: v for k, v in func.__annotations__.items() if k != last.name}
    annotations.update((p.name, p.annotation) for p in parameters if p not in head)
    return signature.replace(parameters=parameters), annotations


def _checked(
    func: Callable[..., Any],
    public: inspect.Signature,
    annotations: dict[str, Any],
    defaults: dict[str, Any] | None = None,
    *,
    check: bool = True,
) -> Callable[..., Any]:
    """``func`` showing ``public`` as its signature and refusing keywords not in it.

    ``defaults`` are passed to ``func`` unless given; ``check=False`` leaves the names
    to what ``func`` calls.
    """
    # The options and method parameters are listed and suggested; a positional
    # argument (stack, detector) may also be passed by name.
    options = [p.name for p in public.parameters.values() if p.kind is p.KEYWORD_ONLY]
    positional = [p.name for p in public.parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    # "Registration", not "Registration.__init__": what the user wrote.
    where = func.__qualname__.removesuffix(".__init__") + "()"
    defaults = defaults or {}

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if check:
            check_names((k for k in kwargs if k not in positional), options, where)
        return func(*args, **{**defaults, **kwargs})

    checked.__signature__ = public  # type: ignore[attr-defined]
    checked.__annotations__ = annotations
    return checked
