"""Shared test configuration. pytest-trio runs every async test (trio_mode = true)."""
