"""The examples in the transfer system's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import transfer

MODULES = sorted(m.name for m in pkgutil.walk_packages(transfer.__path__, "transfer."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
