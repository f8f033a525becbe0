"""Import every module of a package, so that each file's ``@register_…`` decorator runs.

A geometry or projector is one file that registers itself by decorator; its package's
``__init__.py`` calls :func:`import_submodules` instead of listing the files by hand, so a new file
can never be missing from ``sp.load`` because somebody forgot an import line.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable


def import_submodules(package: str, path: Iterable[str]) -> list[str]:
    """Import ``package.<name>`` for every module found on ``path`` (a package's ``__path__``).

    Returns the imported module names, sorted. Private modules (``_name``) are skipped.
    """
    names = sorted(info.name for info in pkgutil.iter_modules(list(path)) if not info.name.startswith("_"))
    for name in names:
        importlib.import_module(f"{package}.{name}")
    return [f"{package}.{name}" for name in names]
