"""Fixtures of the commerce tests."""
import pytest


@pytest.fixture
def small_commerce_lake(lake_root, instance, spark, monkeypatch, run_lake):
    """``(defs, storage, run)`` of a lake of hand-written raw files: ``run()`` is `lake run`'s path for
    commerce, asserted to succeed. Days of a few rows put one bad row far above the quarantine-rate
    thresholds, which are not what these tests are about: lifted."""
    monkeypatch.setenv("LAKE_QUARANTINE_RATE_ERROR", "1.0")
    monkeypatch.setenv("LAKE_QUARANTINE_RATE_WARN", "1.0")
    from lake_assets.definitions import build_defs

    defs = build_defs(lake_root)

    def run():
        out = run_lake(defs, instance, "commerce")
        assert out.success, [r.failures for r in out.runs]
        return out

    return defs, defs.resources["lake"].storage, run
