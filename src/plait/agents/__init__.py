"""Agents: the built-in deterministic ones and adapters for real coding-agent CLIs."""
