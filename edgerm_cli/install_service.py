"""`edgerm install-service master|agent`: set up a systemd service from the installed package.

What it does, for ROOT = `/` (or `--root DIR` to stage the files elsewhere, e.g. into an image):
- creates the service's system user (`useradd --system`, home = its state directory, no login
  shell) unless it exists; with `--root` the user goes into ROOT/etc/passwd (`useradd --prefix`);
- writes the config `/etc/edgerm/master.toml` or `agent.toml` only if it does not exist yet (an
  operator's edits are never overwritten): the master's gets fresh random agent and framework
  tokens, the agent's the master URL and agent token given (or the token from the master's
  config on the same machine);
- TLS: `--tls-cert`/`--tls-key` (master) are checked (edgerm_master/tls.py) and copied to
  `/etc/edgerm/tls/master.pem` and `master.key` (readable by the service's group only), which
  the master's config names in `[tls]`; `--ca-file` (agent) is copied to `/etc/edgerm/tls/ca.pem`,
  its `[master] ca_file`. Given again on a later run, they replace the copies (a renewal);
- writes the unit `/etc/systemd/system/edgerm-master.service` / `edgerm-agent.service` from the
  templates in `edgerm_cli/deploy/`, with the absolute path of the installed `edgerm-master` /
  `edgerm-agent` script;
- on a machine running systemd (and ROOT = `/`), `systemctl daemon-reload` and
  `systemctl enable --now` the service unless `--no-start`.

Bad input (an unknown service, no agent token to be found) changes nothing and exits 2 with the
next step to take. docs/gateway.md ("Deploying") describes the units' hardening and trade-offs.
"""

from __future__ import annotations

import argparse
import grp
import secrets
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

__all__ = ["InstallError", "Plan", "add_parser", "install", "install_command", "render_unit"]

DEPLOY = Path(__file__).resolve().parent / "deploy"
SERVICES = ("master", "agent")
# Where the TLS files given are copied (the configs name them there).
TLS_DIR = "/etc/edgerm/tls"


class InstallError(Exception):
    """Nothing can be installed as asked; the message says what to do."""


@dataclass
class Plan:
    service: str                 # "master" or "agent"
    root: Path
    user: str
    exec_path: str
    master_url: str = ""
    token: str = ""
    docker_group: str | None = None
    start: bool = True
    tls_cert: str = ""           # master: PEM certificate (then chain) to serve wss:// with
    tls_key: str = ""            # master: its private key
    ca_file: str = ""            # agent: the CA of the master's certificate

    @property
    def tls_dir(self) -> Path:
        return self.root / "etc/edgerm/tls"

    @property
    def unit_name(self) -> str:
        return f"edgerm-{self.service}.service"

    @property
    def unit_path(self) -> Path:
        return self.root / "etc/systemd/system" / self.unit_name

    @property
    def config_path(self) -> Path:
        return self.root / "etc/edgerm" / f"{self.service}.toml"

    @property
    def state_dir(self) -> str:
        return f"/var/lib/edgerm-{self.service}"


def render_unit(plan: Plan) -> str:
    text = (DEPLOY / plan.unit_name).read_text()
    groups = (f"SupplementaryGroups={plan.docker_group}" if plan.docker_group else
              "# (no docker group when installed: the Docker executor is not offered)")
    home = ("ProtectHome=yes" if not _under_home(plan.exec_path) else
            "# The program (or its interpreter) lives below a home directory: read-only, not\n"
            "# hidden (install edgerm outside /home and /root for ProtectHome=yes).\n"
            "ProtectHome=read-only")
    return (text.replace("@EXEC@", plan.exec_path).replace("@USER@", plan.user)
            .replace("@DOCKER_GROUP@", groups).replace("@PROTECT_HOME@", home))


def _under_home(exec_path: str) -> bool:
    """Whether the script or the interpreter of its #! line is below /home, /root or
    /run/user (ProtectHome=yes would hide it from the service)."""
    paths = [exec_path]
    try:
        with open(exec_path, "rb") as f:
            first = f.readline(512)
        if first.startswith(b"#!"):
            paths.append(first[2:].split()[0].decode(errors="replace"))
    except (OSError, IndexError):
        pass
    return any(p == top or p.startswith(top + "/")
               for p in paths for top in ("/home", "/root", "/run/user"))


def _master_config(plan: Plan) -> str:
    tls = ("[tls]\n"
           f'cert = "{TLS_DIR}/master.pem"\n'
           f'key = "{TLS_DIR}/master.key"\n') if plan.tls_cert else (
        "# TLS (wss:// and https://; docs/operations.md, \"TLS\"): run install-service again\n"
        "# with --tls-cert and --tls-key, or uncomment and point these at PEM files the\n"
        "# service's group may read.\n"
        "# [tls]\n"
        f'# cert = "{TLS_DIR}/master.pem"\n'
        f'# key = "{TLS_DIR}/master.key"\n')
    return (
        "# EdgeRM master (docs/master.md lists every key). Written once by\n"
        "# `edgerm install-service master`; yours to edit. Agents and frameworks need these\n"
        "# tokens: keep this file private.\n"
        'host = "0.0.0.0"\n'
        "coap_port = 5683\n"
        "ws_port = 5690\n"
        f'agent_tokens = ["{secrets.token_urlsafe(24)}"]\n'
        f'operator_tokens = ["{secrets.token_urlsafe(24)}"]\n'
        "# Framework principals: one line each, frameworks.principals.NAME = \"token\" (or a\n"
        "# list of tokens); a framework belongs to the principal whose token created it.\n"
        "# Edit and send SIGHUP to the master to add or revoke tokens (docs/operations.md).\n"
        f'frameworks.principals.default = "{secrets.token_urlsafe(24)}"\n' + tls)


def _agent_config(plan: Plan) -> str:
    return (
        "# EdgeRM agent (docs/agent.md lists every key; docs/gateway.md the [gateway] section).\n"
        "# Written once by `edgerm install-service agent`; yours to edit.\n"
        f'work_dir = "{plan.state_dir}"\n'
        "[master]\n"
        f'url = "{plan.master_url}"\n'
        f'token = "{plan.token}"\n'
        + (f'ca_file = "{TLS_DIR}/ca.pem"\n' if plan.ca_file else
           "# a wss:// master with a private CA: ca_file = \"/etc/edgerm/tls/ca.pem\"\n")
        + "[executors]\n"
        + ('enabled = ["docker", "wasm"]\n' if plan.docker_group else 'enabled = ["wasm"]\n'))


def _token_from_master_config(root: Path) -> str:
    path = root / "etc/edgerm/master.toml"
    try:
        tokens = tomllib.loads(path.read_text()).get("agent_tokens") or []
    except (OSError, tomllib.TOMLDecodeError):
        return ""
    return str(tokens[0]) if tokens else ""


def _user_exists(root: Path, user: str) -> bool:
    try:
        lines = (root / "etc/passwd").read_text().splitlines()
    except FileNotFoundError:
        return False
    return any(line.split(":", 1)[0] == user for line in lines)


def _create_user(plan: Plan) -> bool:
    """`useradd --system` (into ROOT's /etc/passwd with `--prefix`); False if it existed."""
    if _user_exists(plan.root, plan.user):
        return False
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    argv = [useradd, "--system", "--user-group", "--no-create-home", "--home-dir",
            plan.state_dir, "--shell", "/usr/sbin/nologin", "--comment",
            f"EdgeRM {plan.service}", plan.user]
    if plan.root != Path("/"):
        argv[1:1] = ["--prefix", str(plan.root)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InstallError(f"useradd {plan.user} failed: {proc.stderr.strip()} "
                           "(run as root, or create the user yourself and run this again)")
    return True


def _check_tls(plan: Plan) -> None:
    """The TLS files given, checked before anything is written."""
    if plan.service == "master" and (plan.tls_cert or plan.tls_key):
        from edgerm_master.config import ConfigError
        from edgerm_master.tls import check_server_files
        if not (plan.tls_cert and plan.tls_key):
            raise InstallError("give both --tls-cert and --tls-key (PEM files)")
        try:
            check_server_files(plan.tls_cert, plan.tls_key)
        except ConfigError as e:
            raise InstallError(str(e).replace("[tls] cert =", "--tls-cert").replace(
                "[tls] key =", "--tls-key")) from None
    if plan.ca_file and not Path(plan.ca_file).is_file():
        raise InstallError(f"--ca-file {plan.ca_file}: no such file (the PEM certificate of the "
                           "CA that signed the master's)")


def _copy_tls(plan: Plan, out: TextIO) -> None:
    """Copy the TLS files given into /etc/edgerm/tls: keys readable by the service's group."""
    copies = ([(plan.tls_cert, "master.pem", 0o644), (plan.tls_key, "master.key", 0o640)]
              if plan.tls_cert else [])
    if plan.ca_file:
        copies.append((plan.ca_file, "ca.pem", 0o644))
    for source, name, mode in copies:
        plan.tls_dir.mkdir(parents=True, exist_ok=True)
        target = plan.tls_dir / name
        shutil.copyfile(source, target)
        target.chmod(mode)
        if plan.root == Path("/") and mode == 0o640:
            shutil.chown(target, "root", plan.user)
        print(f"copied {source} to {target}", file=out)


def install(plan: Plan, out: TextIO) -> None:
    """Carry `plan` out (see the module docstring), reporting each step on `out`."""
    _check_tls(plan)
    if plan.service == "agent" and not plan.token:
        plan.token = _token_from_master_config(plan.root)
    if plan.service == "agent" and not plan.config_path.exists():
        if not plan.token:
            raise InstallError("the agent needs the master's agent token: give --token TOKEN "
                               "(it is in agent_tokens of the master's /etc/edgerm/master.toml)")
        if not plan.master_url:
            raise InstallError("the agent needs the master's address: give --master URL, "
                               "e.g. coap://192.0.2.10:5683 or ws://192.0.2.10:5690/agent")
    if _create_user(plan):
        print(f"created system user {plan.user}", file=out)
    _copy_tls(plan, out)
    plan.config_path.parent.mkdir(parents=True, exist_ok=True)
    if plan.config_path.exists():
        print(f"kept {plan.config_path} (already there)", file=out)
    else:
        text = _master_config(plan) if plan.service == "master" else _agent_config(plan)
        plan.config_path.write_text(text)
        plan.config_path.chmod(0o640)
        if plan.root == Path("/"):
            shutil.chown(plan.config_path, "root", plan.user)
        print(f"wrote {plan.config_path}", file=out)
    plan.unit_path.parent.mkdir(parents=True, exist_ok=True)
    plan.unit_path.write_text(render_unit(plan))
    print(f"wrote {plan.unit_path}", file=out)
    if plan.root != Path("/") or not Path("/run/systemd/system").is_dir():
        print(f"systemd is not running here: start it later with "
              f"`systemctl enable --now {plan.unit_name}`", file=out)
        return
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    if plan.start:
        subprocess.run(["systemctl", "enable", "--now", plan.unit_name], check=True)
        print(f"started {plan.unit_name} (journalctl -u {plan.unit_name} shows its log)",
              file=out)


def _script(name: str) -> str:
    """The absolute path of the installed console script `name` (next to this interpreter
    first: a virtualenv's scripts are not always on PATH)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise InstallError(f"{name} is not installed (pip install edgerm, then run this again)")
    return str(Path(found).resolve())


def _docker_group(wanted: bool) -> str | None:
    if not wanted:
        return None
    try:
        return grp.getgrnam("docker").gr_name
    except KeyError:
        return None


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("install-service", help="set up the systemd unit of a master or an agent",
                       description="Create the service user, /etc/edgerm/<service>.toml (if "
                                   "missing) and /etc/systemd/system/edgerm-<service>.service, "
                                   "then enable and start it. Example: edgerm install-service "
                                   "agent --master coap://192.0.2.10:5683 --token T")
    p.add_argument("service", choices=SERVICES)
    p.add_argument("--master", default="", help="agent: the master's URL")
    p.add_argument("--token", default="", help="agent: the master's agent token (default: from "
                                              "/etc/edgerm/master.toml on this machine)")
    p.add_argument("--user", help="service user (default edgerm-master / edgerm-agent)")
    p.add_argument("--no-docker", action="store_true",
                   help="agent: no Docker executor (no docker group membership)")
    p.add_argument("--root", default="/", help="install below this directory (an image's "
                                              "root); never starts anything")
    p.add_argument("--no-start", action="store_true", help="do not enable and start it")
    p.add_argument("--tls-cert", default="", metavar="PEM",
                   help="master: serve wss:// and https:// with this certificate (copied to "
                        f"{TLS_DIR}/master.pem)")
    p.add_argument("--tls-key", default="", metavar="PEM",
                   help="master: the certificate's private key (copied to "
                        f"{TLS_DIR}/master.key)")
    p.add_argument("--ca-file", default="", metavar="PEM",
                   help=f"agent: the CA of a wss:// master's certificate (copied to "
                        f"{TLS_DIR}/ca.pem)")


def install_command(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        plan = Plan(service=args.service, root=Path(args.root),
                    user=args.user or f"edgerm-{args.service}",
                    exec_path=_script(f"edgerm-{args.service}"), master_url=args.master,
                    token=args.token,
                    docker_group=(None if args.service == "master"
                                  else _docker_group(not args.no_docker)),
                    start=not args.no_start, tls_cert=args.tls_cert, tls_key=args.tls_key,
                    ca_file=args.ca_file)
        install(plan, out)
    except InstallError as e:
        print(f"edgerm install-service: {e}", file=err)
        return 2
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"edgerm install-service: {e} (run it as root)", file=err)
        return 1
    return 0
