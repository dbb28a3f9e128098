"""Lazy public namespaces (PEP 562): a package lists what it exports and from where; a name's module is imported
the first time the name is used. So ``import lightning_bestpractices.normalization`` loads the normalization core
and nothing else: no Lightning, no torchvision, no W&B.

Examples:
    >>> import sys
    >>> __getattr__, __dir__, __all__ = attach("json", {".decoder": ["JSONDecoder"]})
    >>> __all__, __getattr__("JSONDecoder").__name__
    (['JSONDecoder'], 'JSONDecoder')
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["attach"]


def attach(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``(__getattr__, __dir__, __all__)`` for ``package``, from ``{".module": ["Name", ...]}``.

    Values are looked up on every access (not cached in the package), so a module attribute that is rebound
    (``normalization.NORM_TYPES`` after ``register_norm``) is always current.
    """
    where = {name: module for module, names in exports.items() for name in names}
    names = list(where)
    pkg = importlib.import_module(package)
    for name, module in where.items():
        if module == "." + name:  # `regularization.sparsity` the function, in `.sparsity` the module: importing
            # the submodule binds the module to the package's attribute, so bind the function over it now
            setattr(pkg, name, getattr(importlib.import_module(module, package), name))

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(set(names) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__, names
