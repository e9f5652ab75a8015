"""goldsmith builder: turns a template spec into a sealed, hardened disk image."""

__version__ = "0.1.0"
