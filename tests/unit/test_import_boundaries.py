"""The import boundaries of pyproject's [tool.importlinter], checked by the test command too.

`.ci/run` runs `lint-imports` on its own; this runs it again so that a plain `pytest` (the
README's command) also fails when a library module reaches mitmproxy or the addons, the
engine reaches the rest of the sidecar, or bench reaches the tests.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The contracts this test exists for; pyproject may add more, never drop these.
BOUNDARIES = {
    "mitmproxy-only-in-glue",
    "engine-stands-alone",
    "bench-without-tests",
    "library-without-glue",
}


def test_import_boundaries_hold():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    missing = BOUNDARIES - {contract["id"] for contract in config["contracts"]}
    assert not missing, f"contracts gone from pyproject: {sorted(missing)}"
    lint_imports = Path(sys.executable).parent / "lint-imports"
    assert lint_imports.exists(), "lint-imports comes with the test dependencies (import-linter)"
    result = subprocess.run([str(lint_imports), "--no-cache", "--no-logo"], cwd=ROOT,
                            capture_output=True, text=True, check=False, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout
