"""Fixtures of the ingestion tests."""
from __future__ import annotations

import pytest


class Crash(RuntimeError):
    """A simulated crash (a process killed between two writes)."""


@pytest.fixture
def crash_once(monkeypatch):
    """``crash_once(method, when)``: make ``LakeStorage.<method>`` raise :class:`Crash` once, the first time
    ``when(*args)`` holds; returns its state (``{"crashed": bool}``). ``crash_once.Crash`` is the error."""
    from lake_assets.lake import LakeStorage

    def _crash(method: str, when):
        real = getattr(LakeStorage, method)
        state = {"crashed": False}

        def wrapper(self, *args, **kwargs):
            if not state["crashed"] and when(*args):
                state["crashed"] = True
                raise Crash(f"simulated crash in {method}{args}")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(LakeStorage, method, wrapper)
        return state

    _crash.Crash = Crash
    return _crash
