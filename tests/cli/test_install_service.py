"""`edgerm install-service`: the units it writes pass `systemd-analyze verify` (systemd's own
checker: unknown keys, bad values, a program that is not there) and keep a low exposure score
(`systemd-analyze security --offline`); the user is really created (`useradd --prefix` into a
staged root); configs are written once; bad input changes nothing."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from edgerm_cli.install_service import Plan, render_unit

UNITS = Path("etc/systemd/system")


def _analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not on PATH (Debian: apt-get install systemd)",
                    pytrace=False)
    return tool


def _staged_root(tmp_path: Path) -> Path:
    """A root with the files useradd --prefix edits (as a fresh image has them)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).write_text("")
    return root


def _edgerm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgerm_cli", *args], capture_output=True,
                          text=True, timeout=60)


def _verify(unit: Path) -> None:
    proc = subprocess.run([_analyze(), "verify", str(unit)], capture_output=True, text=True,
                          timeout=60)
    # verify exits 0 on mere warnings (an unknown key is "ignoring"): any line naming the
    # unit is a defect too.
    assert proc.returncode == 0 and unit.name not in proc.stderr + proc.stdout, proc.stderr


def _exposure_at_most(unit: Path, level: float) -> None:
    proc = subprocess.run([_analyze(), "security", "--offline=true",
                           f"--threshold={round(level * 10)}", unit.name], cwd=unit.parent,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr


def test_master_and_agent_units_verify_and_are_hardened(tmp_path: Path) -> None:
    root = _staged_root(tmp_path)
    master = _edgerm("install-service", "master", "--root", str(root))
    assert master.returncode == 0, master.stderr
    agent = _edgerm("install-service", "agent", "--root", str(root), "--master",
                    "coap://192.0.2.10:5683")
    assert agent.returncode == 0, agent.stderr

    users = {line.split(":")[0]: line.split(":") for line in
             (root / "etc/passwd").read_text().splitlines()}
    for service in ("master", "agent"):
        entry = users[f"edgerm-{service}"]
        assert int(entry[2]) < 1000, entry                        # a system user
        assert entry[5:] == [f"/var/lib/edgerm-{service}", "/usr/sbin/nologin"], entry

    for service, level in (("master", 1.5), ("agent", 2.0)):
        unit = root / UNITS / f"edgerm-{service}.service"
        text = unit.read_text()
        for line in (f"User=edgerm-{service}", f"StateDirectory=edgerm-{service}",
                     "Restart=on-failure", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "PrivateTmp=yes", "RestartPreventExitStatus=2"):
            assert line in text.splitlines(), (service, line)
        exec_path = next(ln for ln in text.splitlines() if ln.startswith("ExecStart="))
        assert exec_path.split("=", 1)[1].split()[0] == str(
            Path(sys.executable).parent / f"edgerm-{service}"), exec_path
        assert "@" not in text.replace("@system-service", "").replace("@privileged", "") \
            .replace("@resources", ""), text          # every placeholder filled in
        _verify(unit)
        _exposure_at_most(unit, level)

    # The agent's config carries the master's token (read from the master's config).
    master_cfg = tomllib.loads((root / "etc/edgerm/master.toml").read_text())
    agent_cfg = tomllib.loads((root / "etc/edgerm/agent.toml").read_text())
    assert agent_cfg["master"] == {"url": "coap://192.0.2.10:5683",
                                   "token": master_cfg["agent_tokens"][0]}
    assert agent_cfg["work_dir"] == "/var/lib/edgerm-agent"
    assert oct((root / "etc/edgerm/master.toml").stat().st_mode & 0o777) == "0o640"


def test_the_configs_load_in_the_services(tmp_path: Path) -> None:
    """What install-service writes is a valid config for the master and the agent."""
    from edgerm_agent.config import load_config
    from edgerm_master.config import parse_args

    root = _staged_root(tmp_path)
    assert _edgerm("install-service", "master", "--root", str(root)).returncode == 0
    assert _edgerm("install-service", "agent", "--root", str(root), "--master",
                   "ws://192.0.2.10:5690/agent").returncode == 0
    config, _ = parse_args(["--config", str(root / "etc/edgerm/master.toml")])
    assert config.host == "0.0.0.0" and len(config.agent_tokens) == 1
    agent = load_config(root / "etc/edgerm/agent.toml")
    assert str(agent.work_dir) == "/var/lib/edgerm-agent"


def test_reinstall_keeps_the_config_and_the_user(tmp_path: Path) -> None:
    root = _staged_root(tmp_path)
    assert _edgerm("install-service", "master", "--root", str(root)).returncode == 0
    cfg = root / "etc/edgerm/master.toml"
    cfg.write_text(cfg.read_text() + "heartbeat_ms = 1000\n")    # the operator's edit
    passwd = (root / "etc/passwd").read_text()
    again = _edgerm("install-service", "master", "--root", str(root))
    assert again.returncode == 0, again.stderr
    assert "kept" in again.stdout and "heartbeat_ms = 1000" in cfg.read_text()
    assert (root / "etc/passwd").read_text() == passwd


def test_agent_without_a_token_changes_nothing(tmp_path: Path) -> None:
    root = _staged_root(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    proc = _edgerm("install-service", "agent", "--root", str(root), "--master",
                   "coap://192.0.2.10:5683")
    assert proc.returncode == 2
    assert "--token" in proc.stderr and "agent_tokens" in proc.stderr, proc.stderr
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before


def test_protect_home_is_relaxed_only_for_a_program_below_home(tmp_path: Path) -> None:
    outside = Plan("master", tmp_path, "edgerm-master", "/usr/local/bin/edgerm-master")
    assert "ProtectHome=yes" in render_unit(outside).splitlines()
    script = tmp_path / "edgerm-master"
    script.write_text("#!/home/op/venv/bin/python3\n")
    inside = Plan("master", tmp_path, "edgerm-master", str(script))
    assert "ProtectHome=read-only" in render_unit(inside).splitlines()


def test_tls_files_are_checked_copied_and_named_in_the_configs(tmp_path: Path) -> None:
    from edgerm.devca import ensure_dev_certificates
    from edgerm_master.config import parse_args

    dev = ensure_dev_certificates(tmp_path / "pki")
    root = _staged_root(tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    wrong = _edgerm("install-service", "master", "--root", str(root), "--tls-cert",
                    str(dev.cert_file), "--tls-key", str(tmp_path / "pki" / "ca.key"))
    assert wrong.returncode == 2
    assert wrong.stderr == (f"edgerm install-service: --tls-key '{tmp_path / 'pki' / 'ca.key'}'"
                            f" is not the private key of cert = '{dev.cert_file}'; give the key "
                            "the certificate was made for\n")
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before   # nothing changed

    master = _edgerm("install-service", "master", "--root", str(root), "--tls-cert",
                     str(dev.cert_file), "--tls-key", str(dev.key_file))
    assert master.returncode == 0, master.stderr
    tls = root / "etc/edgerm/tls"
    assert (tls / "master.pem").read_bytes() == dev.cert_file.read_bytes()
    assert oct((tls / "master.key").stat().st_mode & 0o777) == "0o640"
    text = (root / "etc/edgerm/master.toml").read_text()
    assert tomllib.loads(text)["tls"] == {"cert": "/etc/edgerm/tls/master.pem",
                                          "key": "/etc/edgerm/tls/master.key"}
    # The master takes it once the paths are where the service sees them.
    staged = text.replace("/etc/edgerm/tls", str(tls))
    (tmp_path / "staged.toml").write_text(staged)
    config, _ = parse_args(["--config", str(tmp_path / "staged.toml")])
    assert config.tls_cert == str(tls / "master.pem")

    agent = _edgerm("install-service", "agent", "--root", str(root), "--master",
                    "wss://192.0.2.10:5690/agent", "--ca-file", str(dev.ca_file))
    assert agent.returncode == 0, agent.stderr
    assert (tls / "ca.pem").read_bytes() == dev.ca_file.read_bytes()
    agent_cfg = tomllib.loads((root / "etc/edgerm/agent.toml").read_text())
    assert agent_cfg["master"]["ca_file"] == "/etc/edgerm/tls/ca.pem"
    assert agent_cfg["master"]["url"] == "wss://192.0.2.10:5690/agent"
