"""Kept only for tests/test_signatures.py, which imports `loads` from here: JSON is read
by `mirrorlab.proxy.gojson` (remove this module once the test imports `decode` there)."""

from ..gojson import decode as loads

__all__ = ["loads"]
