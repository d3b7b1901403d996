"""The standard component library (filled by the components work)."""

from reflowpy.network.registry import Registry


def register_all(registry: Registry) -> None:
    """Register every standard component in ``registry``."""
