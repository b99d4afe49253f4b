"""The master's TLS settings (edgerm_master/tls.py): `[tls] cert`/`key` and `--dev`; every
mistake in the files refused at start, as one line saying what to do, before anything binds."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest

from edgerm.devca import make_ca, make_server_cert, write_cert, write_pair
from edgerm_master.config import ConfigError, advertised_urls, load_config, parse_args
from edgerm_master.tls import check_server_files, dev_hosts

NOW = datetime.datetime.now(datetime.UTC)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca, ca_key = make_ca()
    cert, key = write_pair(d, "server", *make_server_cert(ca, ca_key, ["127.0.0.1"]))
    _, other_key = write_pair(d, "other", *make_server_cert(ca, ca_key, ["127.0.0.1"]))
    expired, expired_key = write_pair(d, "expired", *make_server_cert(
        ca, ca_key, ["127.0.0.1"], not_before=NOW - datetime.timedelta(days=9),
        not_after=NOW - datetime.timedelta(days=2)))
    future, future_key = write_pair(d, "future", *make_server_cert(
        ca, ca_key, ["127.0.0.1"], not_before=NOW + datetime.timedelta(days=2)))
    write_cert(d / "ca.pem", ca)
    (d / "junk.pem").write_text("hello\n")
    return {"cert": cert, "key": key, "other_key": other_key, "expired": expired,
            "expired_key": expired_key, "future": future, "future_key": future_key,
            "junk": d / "junk.pem", "missing": d / "missing.pem"}


def test_good_files_pass(files: dict[str, Path]) -> None:
    cert = check_server_files(str(files["cert"]), str(files["key"]))
    assert cert.not_valid_after_utc > NOW


@pytest.mark.parametrize("cert,key,message", [
    ("missing", "key", r"^\[tls\] cert = '.*missing.pem': no such file; point it at the "
                       r"master's PEM certificate \(or use --dev for a generated one\)$"),
    ("cert", "missing", r"^\[tls\] key = '.*missing.pem': no such file; point it at the "
                        r"master's PEM private key"),
    ("junk", "key", r"^\[tls\] cert = '.*junk.pem' holds no PEM certificate"),
    ("cert", "junk", r"^\[tls\] key = '.*junk.pem': not a usable PEM private key"),
    ("cert", "other_key", r"^\[tls\] key = '.*other.key' is not the private key of cert = "
                          r"'.*server.pem'; give the key the certificate was made for$"),
    ("expired", "expired_key", r"^\[tls\] cert = '.*expired.pem' expired on \d{4}-\d\d-\d\d "
                               r"\d\d:\d\d UTC; renew it"),
    ("future", "future_key", r"^\[tls\] cert = '.*future.pem' is not valid before .*; check "
                             r"this machine's clock$"),
])
def test_each_mistake_is_named(files: dict[str, Path], cert: str, key: str,
                               message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_server_files(str(files[cert]), str(files[key]))


def test_cert_without_key_and_key_without_cert(files: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match=r"^\[tls\] key is not set"):
        check_server_files(str(files["cert"]), "")
    with pytest.raises(ConfigError, match=r"^\[tls\] cert is not set"):
        check_server_files("", str(files["key"]))


def test_the_tls_table_and_the_flags(files: dict[str, Path], tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[tls]\ncert = "{files["cert"]}"\nkey = "{files["key"]}"\n')
    cfg, generated = parse_args(["--config", str(config), "--data-dir", str(tmp_path)])
    assert (cfg.tls_cert, cfg.tls_key) == (str(files["cert"]), str(files["key"]))
    assert generated == {}
    cfg, _ = parse_args(["--tls-cert", str(files["cert"]), "--tls-key", str(files["key"])])
    assert cfg.tls_cert == str(files["cert"])
    with pytest.raises(ConfigError, match=r"unknown key 'client' in \[tls\]"):
        load_config('[tls]\nclient = "x"\n')
    # --dev keeps configured files, and makes its own only when there are none.
    cfg, generated = parse_args(["--dev", "--config", str(config), "--data-dir",
                                 str(tmp_path / "d")])
    assert cfg.tls_cert == str(files["cert"]) and "ca_file" not in generated
    assert not (tmp_path / "d" / "tls").exists()


def test_advertised_urls_are_wss_and_https_with_tls(files: dict[str, Path]) -> None:
    cfg = load_config(f'[tls]\ncert = "{files["cert"]}"\nkey = "{files["key"]}"\n')
    urls = advertised_urls(cfg, ("10.0.0.1", 5683), ("10.0.0.1", 5690), ("10.0.0.1", 5691))
    assert urls == {"coap": "coap://10.0.0.1:5683", "ws": "wss://10.0.0.1:5690",
                    "http": "https://10.0.0.1:5691"}
    plain = advertised_urls(load_config(""), ("h", 1), ("h", 2), ("h", 3))
    assert plain["ws"] == "ws://h:2" and plain["http"] == "http://h:3"


def test_dev_names_the_bind_address_and_the_advertised_hosts() -> None:
    cfg = load_config('host = "10.1.2.3"\n[master]\nurls = {ws = "wss://edge.example:5690"}\n')
    assert dev_hosts(cfg) == ["10.1.2.3", "edge.example"]
    assert dev_hosts(load_config('host = "0.0.0.0"\n')) == []


def run_master(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "edgerm_master", "--ws-port", "0",
                           "--coap-port", "0", *args], capture_output=True, timeout=60)
    err = proc.stderr.decode().strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return proc.returncode, err


def test_the_master_refuses_to_start_with_a_key_of_another_cert(files: dict[str, Path],
                                                                tmp_path: Path) -> None:
    code, err = run_master("--data-dir", str(tmp_path), "--tls-cert", str(files["cert"]),
                           "--tls-key", str(files["other_key"]))
    assert code == 2
    assert err == (f"edgerm-master: [tls] key = '{files['other_key']}' is not the private key "
                   f"of cert = '{files['cert']}'; give the key the certificate was made for")


def test_the_master_refuses_to_start_with_an_expired_cert(files: dict[str, Path],
                                                          tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[tls]\ncert = "{files["expired"]}"\nkey = "{files["expired_key"]}"\n')
    code, err = run_master("--data-dir", str(tmp_path), "--config", str(config))
    assert code == 2
    assert err.startswith(f"edgerm-master: [tls] cert = '{files['expired']}' expired on ")
    assert not list(tmp_path.glob("master.sqlite3*"))     # nothing was started
