"""scripts/lib/venv.sh, as scripts/test.sh and scripts/cluster.sh use it: on a stock Debian 12 /
Ubuntu 24.04 python3, whose pip refuses to install (PEP 668), packages go into ./.venv; an
interpreter whose pip may install (a virtualenv, pyenv, CI's) is used as it is.

These run the real shell code with the real /usr/bin/python3 (Debian's, EXTERNALLY-MANAGED), and
install nothing from PyPI: a virtualenv's own pip is only checked, never run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")


def externally_managed(python: Path) -> bool:
    if not python.exists():
        return False
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True, text=True, check=True).stdout.strip()
    return (Path(out) / "EXTERNALLY-MANAGED").exists()


needs_pep668_python = pytest.mark.skipif(
    not externally_managed(SYSTEM_PYTHON),
    reason="needs a PEP 668 (EXTERNALLY-MANAGED) /usr/bin/python3, as on Debian 12 / Ubuntu 24.04")


def user_env(**extra: str) -> dict[str, str]:
    """A login shell's environment with /usr/bin first (the system python3), no virtualenv, no
    PYTHONPATH: what a new user has."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHON", "PYTHONPATH", "PYTHONHOME", "EDGERM_VENV_DIR")}
    env["PATH"] = "/usr/bin:" + os.environ.get("PATH", "")
    env.update(extra)
    return env


def pick_python(cwd: Path, env: dict[str, str]) -> tuple[str, str, str]:
    """Run edgerm_python in `cwd`: (PYTHON, EDGERM_VENV, what it said on stderr)."""
    script = f'. {REPO / "scripts" / "lib" / "venv.sh"}; edgerm_python; ' \
             'printf "%s\\n%s\\n" "$PYTHON" "$EDGERM_VENV"; command -v python3'
    done = subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    python, venv, python3 = done.stdout.splitlines()
    if venv:
        assert python3 == f"{venv}/bin/python3"    # on PATH for the scripts' child processes
    return python, venv, done.stderr


@needs_pep668_python
def test_a_refusing_system_python_gets_a_virtualenv_made_once(tmp_path: Path) -> None:
    python, venv, said = pick_python(tmp_path, user_env())
    assert venv == str(tmp_path / ".venv") and python == f"{venv}/bin/python", said
    assert "making a virtualenv in .venv" in said
    # Its pip may install (it is a virtualenv), and it is the system Python's.
    check = subprocess.run([python, "-c", "import sys, pip; print(sys.base_prefix)"],
                           capture_output=True, text=True, check=True)
    assert check.stdout.strip() == "/usr"
    # A second run reuses it.
    again = pick_python(tmp_path, user_env())
    assert again[:2] == (python, venv) and "making" not in again[2]


def test_an_interpreter_whose_pip_may_install_is_used_as_it_is(tmp_path: Path) -> None:
    # The developer's or CI's interpreter (here the one running the tests, pyenv on CI).
    python, venv, said = pick_python(tmp_path, user_env(PYTHON=sys.executable))
    assert (python, venv) == (sys.executable, ""), said
    assert not (tmp_path / ".venv").exists()


def test_an_active_virtualenv_is_used(tmp_path: Path) -> None:
    made = tmp_path / "mine"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(made)], check=True)
    env = user_env(VIRTUAL_ENV=str(made))
    env["PATH"] = f"{made}/bin:{env['PATH']}"
    python, venv, said = pick_python(tmp_path, env)
    assert (python, venv) == ("python3", ""), said     # python3 is the active virtualenv's
    assert not (tmp_path / ".venv").exists()


@needs_pep668_python
def test_cluster_sh_under_the_system_python_runs_from_the_virtualenv(tmp_path: Path) -> None:
    # A clone whose .venv an earlier run filled (here: one seeing the test interpreter's packages
    # and this checkout, so nothing is downloaded). cluster.sh must pick it, not try pip on the
    # system Python nor make another virtualenv.
    shutil.copytree(REPO / "scripts", tmp_path / "scripts")
    venv = tmp_path / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # The packages the tests run with: the base interpreter's own site-packages (pyenv) are
    # seen through --system-site-packages, but when the suite itself runs in a virtualenv
    # (scripts/test.sh under a stock Debian python3) they are that virtualenv's.
    outer = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    Path(site, "edgerm-checkout.pth").write_text("".join(f"{p}\n" for p in (REPO, *outer)))
    env = user_env()
    assert shutil.which("micropython", path=env["PATH"]), "micropython is a test dependency"
    done = subprocess.run(["bash", str(tmp_path / "scripts" / "cluster.sh"), "--help"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m edgerm_cli.cluster" in done.stdout
    assert "pip install" not in done.stderr and "making a virtualenv" not in done.stderr
    assert not (tmp_path / ".edgerm" / "venv").exists()
