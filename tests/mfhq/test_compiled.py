"""numba kernels compile where no cache can be written, with one warning."""
from __future__ import annotations


def test_kernels_compile_where_numba_cannot_cache(monkeypatch, caplog):
    """A read-only install with a read-only home leaves numba no cache locator, and it refuses
    `cache=True` at decoration: `mfhq.compiled` (used by the BRISQUE and curation kernels) then
    compiles without a cache, with one warning."""
    from numba.core import caching

    from mfhq import compiled

    monkeypatch.setattr(caching.CacheImpl, "_locator_classes", [])  # what numba finds there
    monkeypatch.setattr(compiled, "uncached", [])
    with caplog.at_level("WARNING", logger=compiled.__name__):
        twice = compiled.compiled()(lambda x: 2 * x)
        plus = compiled.compiled(error_model="numpy")(lambda x: x + 1)
    assert (twice(3), plus(3)) == (6, 4)
    assert len(caplog.records) == 1 and "NUMBA_CACHE_DIR" in caplog.text
    assert len(compiled.uncached) == 2
