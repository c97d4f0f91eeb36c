"""``scripts/demo`` installs the package only when needed, so that later runs work offline.

The script runs in a copy of the project whose ``.venv`` holds stand-ins for ``python`` and
``streams`` that record how they were called: no real install, no network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo", tmp_path / "scripts" / "demo")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "calls.log"
    # The stand-in python installs by creating the streams command, as pip would.
    python = bin_dir / "python"
    python.write_text(
        "#!/bin/sh\n"
        f'echo "python $*" >> {log}\n'
        f"printf '#!/bin/sh\\necho \"streams $*\" >> {log}\\n' > {bin_dir / 'streams'}\n"
        f"chmod +x {bin_dir / 'streams'}\n"
    )
    python.chmod(0o755)
    return tmp_path


def run_demo(project: Path, *args: str) -> list[str]:
    """Run scripts/demo in ``project``; return the calls it made, and forget them."""
    env = {**os.environ, "PIP_NO_INDEX": "1"}
    subprocess.run(["bash", "scripts/demo", *args], cwd=project, env=env, check=True, timeout=30)
    log = project / "calls.log"
    calls = log.read_text().splitlines()
    log.unlink()
    return calls


def test_demo_script_installs_once_then_runs_without_installing(project: Path) -> None:
    assert run_demo(project, "--seconds", "1") == [
        "python -m pip install --quiet -e .",
        "streams demo --seconds 1",
    ]
    assert run_demo(project) == ["streams demo"]
    assert run_demo(project, "--serve") == ["streams demo --serve"]


def test_demo_script_reinstalls_when_pyproject_changes(project: Path) -> None:
    run_demo(project)
    with (project / "pyproject.toml").open("a") as file:
        file.write("\n# a new dependency\n")
    assert run_demo(project) == ["python -m pip install --quiet -e .", "streams demo"]
    assert run_demo(project) == ["streams demo"]


def test_demo_script_reinstalls_when_the_command_is_missing(project: Path) -> None:
    run_demo(project)
    (project / ".venv" / "bin" / "streams").unlink()
    assert run_demo(project)[0] == "python -m pip install --quiet -e ."
