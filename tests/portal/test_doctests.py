"""The examples in the portal's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import portal

MODULES = sorted(m.name for m in pkgutil.walk_packages(portal.__path__, "portal."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
