"""Runs that travel between machines: bundles (bundle.py) and remotes with the auto-pusher (remote.py).
Independent of data.analysis (import-linter contract in pyproject.toml)."""
