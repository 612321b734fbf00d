"""Package data for `plait demo`: `project/` is the small "authkit" repository the demo starts
from, and `plan.yaml` is the ten-task plan the built-in `script` agent carries out on it.

The demo copies both into a fresh directory, so nothing here is imported at run time; the
module exists so `importlib.resources.files("plait.demo")` can find the data.
"""

from __future__ import annotations
