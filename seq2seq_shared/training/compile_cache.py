"""JAX's persistent compile cache, kept in the model directory, so a resumed run compiles
nothing again; and how many programs this process compiled or loaded."""

from __future__ import annotations

import logging

from .. import backend


def use_compile_cache(path) -> None:
    """JAX: keep compiled programs in `path` (JAX's persistent compilation cache), so a
    resumed or repeated run loads them instead of compiling again; a cache directory the
    user set (JAX_COMPILATION_CACHE_DIR) wins. Programs are counted from here on
    (`compile_counts`). Elsewhere nothing: TensorFlow traces in seconds and keeps no cache."""
    if backend.name() != "jax":
        return
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    global _CACHE_SET_HERE
    # (Not the user's directory: theirs is kept.)
    if _CACHE_SET_HERE or not jax.config.jax_compilation_cache_dir:  # type: ignore[attr-defined]
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
        quiet = logging.getLogger(compilation_cache.reset_cache.__module__)
        level = quiet.level
        quiet.setLevel(logging.WARNING)  # its INFO line is noise
        compilation_cache.reset_cache()  # takes the new directory even after a compile
        quiet.setLevel(level)
        _CACHE_SET_HERE = True
    if not _COMPILES:
        _COMPILES.update(compiled=0, cached=0)
        jax.monitoring.register_event_listener(_count_compile)


_CACHE_SET_HERE = False  # the cache directory is a run's (so the next run moves it)
_COMPILES: dict[str, int] = {}
_COMPILE_EVENTS = {
    "/jax/compilation_cache/cache_misses": "compiled",
    "/jax/compilation_cache/cache_hits": "cached",
}


def _count_compile(event: str, **kwargs) -> None:
    if event in _COMPILE_EVENTS:
        _COMPILES[_COMPILE_EVENTS[event]] += 1


def compile_counts() -> dict[str, int]:
    """Programs compiled, and loaded from the compile cache, since `use_compile_cache`
    (JAX); empty elsewhere."""
    return dict(_COMPILES)
