"""authkit: user authentication for small web services, on the standard library alone."""

from __future__ import annotations

__version__ = "0.1.0"
