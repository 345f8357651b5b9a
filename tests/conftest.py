"""Markers of the tests in this folder (registered here, not in pyproject.toml)."""

from typing import Any


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers", "browser: drives headless Chromium (/usr/bin/chromium) with Playwright; skipped without it"
    )
    config.addinivalue_line(
        "markers", "multihost: hosts in network namespaces (needs root, iproute2, PostgreSQL); skipped without them"
    )
