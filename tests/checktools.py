"""Finding the offline checkers (yamllint, zizmor, ...) that the deployment tests run.

A missing tool skips its test, naming the install command, unless
NEWSBOT_REQUIRE_TOOLS=1 (CI sets it) makes that a failure. `bash .ci/tools.sh`
installs every tool.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("NEWSBOT_REQUIRE_TOOLS") == "1"
INSTALL = "bash .ci/tools.sh"


def missing(reason: str) -> None:
    """Skip the test for a missing tool, or fail it when tools are required."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (NEWSBOT_REQUIRE_TOOLS=1)")
    pytest.skip(reason)


def find_tool(name: str, package: str) -> str:
    """Return the path of a console script, preferring this interpreter's."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} is not installed: pip install {package} (or {INSTALL})")
    return str(found)


def import_yaml() -> object:
    """PyYAML, or skip the whole module (fail it in CI) when it is not installed."""
    try:
        import yaml
    except ImportError:  # pragma: no cover - depends on the machine
        if REQUIRE_TOOLS:
            raise
        pytest.skip(
            f"PyYAML is not installed: pip install pyyaml (or {INSTALL})", allow_module_level=True
        )
    return yaml
