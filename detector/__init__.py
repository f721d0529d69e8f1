"""gpuwatch: find tenants training large AI models on your GPUs from restricted jurisdictions."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """`__version__`, looked up on first use (importlib.metadata costs start-up time)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gpuwatch")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+unknown"
