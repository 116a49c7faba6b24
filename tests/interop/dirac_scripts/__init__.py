"""Python files run INSIDE the DIRAC client venv by ``dirac_call.py --script`` (see
tests/interop/dirac_env.py): each reads ``ARGS`` from its globals and sets ``RESULT``. They are
not test modules (pytest does not collect them) and import DIRAC, not pilotwms."""
