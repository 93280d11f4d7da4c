"""The browser modules' unit tests (jstests/*.test.mjs) under Node's built-in test runner.

They need no package beyond Node itself: `jstests/register.mjs` resolves the import-map names
("cryptostock/format") from the templates' import maps, so the modules load as the browser loads
them. Node's output is the failure message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
JSTESTS = REPO_ROOT / "jstests"
# `module.register` (the resolution hook) and a stable `node --test` came with Node 20.6.
MINIMUM_NODE = (20, 6)


def node_or_skip() -> str:
    node = shutil.which("node")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout if node else ""
    found = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if node is None or found < MINIMUM_NODE:
        wanted = ".".join(map(str, MINIMUM_NODE))
        message = f"the JavaScript unit tests need Node.js {wanted} or newer (found: {version.strip() or 'none'})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return node


def test_the_javascript_unit_tests_pass() -> None:
    node = node_or_skip()
    files = sorted(str(path) for path in JSTESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs in {JSTESTS}"

    result = subprocess.run(
        [node, "--disable-warning=ExperimentalWarning", "--import", str(JSTESTS / "register.mjs"), "--test", *files],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=180,
    )  # fmt: skip

    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert re.search(r"^# pass [1-9]", result.stdout, re.MULTILINE), result.stdout
