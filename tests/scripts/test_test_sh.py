"""scripts/test.sh and scripts/junit_summary.py: the counts line and the exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "test.sh"


def run_test_sh(*args: str) -> subprocess.CompletedProcess:
    # No plugin autoload (hypothesis alone takes seconds to import); timeout is in setup.cfg.
    env = dict(os.environ, GRAPHPACK_SKIP_SETUP="1", PYTHON=sys.executable, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    return subprocess.run(["bash", str(SCRIPT), *args, "-p", "pytest_timeout"], capture_output=True,
                          text=True, env=env, timeout=120)


def write(tmp_path: Path, source: str) -> Path:
    d = tmp_path / "suite"
    d.mkdir()
    (d / "test_sample.py").write_text(source)
    return d


def last_line(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_counts_and_success(tmp_path: Path) -> None:
    suite = write(tmp_path, "import pytest\n"
                            "def test_a(): assert 1\n"
                            "def test_b(): assert 2\n"
                            "@pytest.mark.skip(reason='not here')\n"
                            "def test_c(): pass\n")
    proc = run_test_sh(str(suite))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_line(proc.stdout) == "tests: 2 passed, 0 failed, 1 skipped"
    assert "not here" in proc.stdout  # -rs shows skip reasons


def test_failure_exits_non_zero(tmp_path: Path) -> None:
    suite = write(tmp_path, "def test_ok(): pass\ndef test_bad(): assert 0\n")
    proc = run_test_sh(str(suite))
    assert proc.returncode == 1
    assert last_line(proc.stdout) == "tests: 1 passed, 1 failed, 0 skipped"


def test_collection_error_counts_as_failed(tmp_path: Path) -> None:
    suite = write(tmp_path, "import no_such_module_here\n")
    proc = run_test_sh(str(suite))
    assert proc.returncode != 0
    assert last_line(proc.stdout) == "tests: 0 passed, 1 failed, 0 skipped"


def test_no_tests_fails_with_5(tmp_path: Path) -> None:
    suite = write(tmp_path, "X = 1\n")
    proc = run_test_sh(str(suite))
    assert proc.returncode == 5
    assert last_line(proc.stdout) == "tests: 0 passed, 0 failed, 0 skipped"


def test_extra_args_pass_through(tmp_path: Path) -> None:
    suite = write(tmp_path, "def test_one(): pass\ndef test_two(): pass\n")
    proc = run_test_sh(str(suite), "-k", "two")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert last_line(proc.stdout) == "tests: 1 passed, 0 failed, 0 skipped"


@pytest.mark.parametrize(("rc", "counts", "expected"), [
    (0, (3, 0, 1), 0),
    (0, (0, 0, 0), 5),
    (5, (0, 0, 0), 5),
    (1, (2, 1, 0), 1),
    (0, (2, 1, 0), 1),
    (0, (0, 0, 2), 0),
])
def test_exit_code_rules(rc: int, counts: tuple[int, int, int], expected: int) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from junit_summary import exit_code
    finally:
        sys.path.remove(str(REPO / "scripts"))
    assert exit_code(rc, *counts) == expected


def test_ci_run_calls_the_readme_test_command() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    commands = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "bash scripts/test.sh" in commands


def test_setup_steps_report_while_they_run(tmp_path: Path) -> None:
    """A long setup step is never silent: 'still running' lines name it while it works."""
    text = SCRIPT.read_text()
    start = text.index("# ---------------------------------------------------------------- setup steps")
    end = text.index("# ---------------------------------------------------------------- run the setup")
    steps = ('step_quick() { note "quick note"; }\n'
             'step_slow() { for i in 1 2 3 4; do echo "compiling part $i"; sleep 1; done; note "slow done"; }\n'
             'step_broken() { sleep 1; echo "it broke"; false; }\n')
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "lib.sh").write_text((REPO / "scripts" / "lib.sh").read_text())
    setup_only = text[:start] + steps + text[end:text.index("# ---------------------------------------------------------------- tests")]
    (scripts / "test.sh").write_text(setup_only)
    env = dict(os.environ, GRAPHPACK_HEARTBEAT="1", GRAPHPACK_CACHE=str(tmp_path / "cache"), PYTHON=sys.executable)
    env.pop("GRAPHPACK_SKIP_SETUP", None)  # this test is about the setup, whatever the outer run skips
    proc = subprocess.run(["bash", str(scripts / "test.sh")], capture_output=True, text=True, env=env, timeout=60)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1 and lines[-1] == "tests: 0 passed, 1 failed, 0 skipped (setup failed)"
    assert any(line.startswith("setup: quick") and "ok" in line and "quick note" in line for line in lines)
    assert any(line.startswith("setup: broken") and "FAILED" in line for line in lines)
    assert "  [broken] it broke" in lines
    still = [line for line in lines if line.startswith("setup: still running after")]
    assert still and all("slow" in line and "broken" not in line.split("(")[0] for line in still[1:]), lines
    assert any("compiling part" in line for line in still)
    assert lines.index(still[0]) < next(i for i, line in enumerate(lines) if line.startswith("setup: slow"))


def test_still_running_reports_a_long_command_and_keeps_its_status(tmp_path: Path) -> None:
    script = (f'REPO={REPO}; PYTHON={sys.executable}; source {REPO}/scripts/lib.sh; '
              'still_running "compiling" bash -c "sleep 2.5; exit 3"; echo "rc=$?"')
    env = dict(os.environ, GRAPHPACK_HEARTBEAT="1", GRAPHPACK_CACHE=str(tmp_path / "cache"))
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=30)
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["still compiling ... 1 s", "still compiling ... 2 s"] and lines[-1] == "rc=3", lines
