"""scripts/setup.sh and scripts/test.sh do what they say (run on a copy, with apt faked)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _exe(path: Path, text: str) -> None:
    path.write_text("#!/bin/sh\n" + text)
    path.chmod(0o755)


def test_test_sh_before_setup_hints_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    r = subprocess.run(["bash", str(tmp_path / "scripts" / "test.sh"), "-q"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "run 'bash scripts/setup.sh' first" in r.stderr


def test_setup_keeps_services_from_starting_during_the_install(tmp_path: Path) -> None:
    """While apt-get installs, a policy-rc.d answering 101 exists; afterwards it is gone."""
    repo, bin_ = tmp_path / "repo", tmp_path / "bin"
    (repo / "scripts").mkdir(parents=True)
    bin_.mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", repo / "scripts" / "setup.sh")
    (repo / "pyproject.toml").write_text("")
    venv = repo / ".venv" / "bin"
    venv.mkdir(parents=True)
    _exe(venv / "python", 'case "$1" in --version) echo "Python 3.11";; esac\nexit 0\n')
    (repo / ".venv" / ".wasp-installed").touch()
    os.utime(repo / "pyproject.toml", (1, 1))
    policy = tmp_path / "policy-rc.d"
    seen = tmp_path / "seen"
    _exe(bin_ / "dpkg-query", "exit 1\n")  # nothing installed
    _exe(bin_ / "sudo", 'exec "$@"\n')
    _exe(bin_ / "systemctl", "exit 3\n")
    _exe(bin_ / "apt-get", f"""
case " $* " in *" install "*)
  if [ -x "{policy}" ]; then "{policy}" postgresql start; echo "policy $?" >> "{seen}"
  else echo "no policy" >> "{seen}"; fi;;
esac
exit 0
""")
    env = dict(os.environ, PATH=f"{bin_}:{os.environ['PATH']}", WASP_POLICY_RC_D=str(policy))
    r = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert seen.read_text() == "policy 101\n"
    assert not policy.exists()
    assert f"creating {policy}" in r.stderr and f"removed {policy}" in r.stderr
    # one there already (the machine's own) is used as it is and left in place
    _exe(policy, "exit 104\n")
    seen.unlink()
    r = subprocess.run(["bash", str(repo / "scripts" / "setup.sh")], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0 and seen.read_text() == "policy 104\n" and policy.exists()


def test_package_metadata_has_an_spdx_license() -> None:
    """`project.license` is an SPDX string (a table makes setuptools warn three times a build)."""
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "Apache-2.0"
    assert "setuptools>=77" in meta["build-system"]["requires"]
