"""Print `tests: N passed, N failed, N skipped` from a pytest junit XML file; exit accordingly.

    python scripts/junit_summary.py REPORT.xml PYTEST_EXIT_CODE

Each <testcase> counts once: failed if it has a <failure> or <error> (errors at collection,
setup or teardown count as failures), else skipped if it has <skipped>, else passed.
The exit code is pytest's when non-zero (5 = no tests collected), else 1 when anything
failed, else 5 when nothing ran at all, else 0.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) over the report's test cases."""
    passed = failed = skipped = 0
    for case in ET.parse(report).getroot().iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def exit_code(pytest_rc: int, passed: int, failed: int, skipped: int) -> int:
    """The test command's exit code (see the module docstring)."""
    if pytest_rc != 0:
        return pytest_rc
    if failed:
        return 1
    if passed + skipped == 0:
        return 5
    return 0


def main(argv: list[str]) -> int:
    report, pytest_rc = Path(argv[0]), int(argv[1])
    try:
        passed, failed, skipped = count(report)
    except (OSError, ET.ParseError) as exc:
        print(f"tests: 0 passed, 0 failed, 0 skipped (no junit report: {exc.__class__.__name__})")
        return pytest_rc or 1
    rc = exit_code(pytest_rc, passed, failed, skipped)
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    if rc == 5:
        print("no tests ran: failing (pytest exit code 5)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
