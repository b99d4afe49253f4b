"""The `[store]` settings (issue 12): TOML table and flags, and each mistake refused with a
message that says what to write."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm_master.config import ConfigError, load_config, parse_args
from edgerm_master.etcd_store import MODULE_MAX_BYTES


def test_default_is_sqlite() -> None:
    cfg = load_config()
    assert (cfg.store_backend, cfg.store_endpoints, cfg.store_prefix) == ("sqlite", [], "/edgerm/")


def test_store_table_then_flags(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    path = tmp_path / "master.toml"
    path.write_text(f'[store]\nbackend = "etcd"\nendpoints = ["http://10.0.0.1:2379", '
                    f'"http://10.0.0.2:2379"]\nprefix = "/prod/"\nlease_ttl_s = 3\n'
                    f'ca_file = "{ca}"\n')
    cfg, _ = parse_args(["--config", str(path)])
    assert cfg.store_backend == "etcd"
    assert cfg.store_endpoints == ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    assert (cfg.store_prefix, cfg.store_lease_ttl_s, cfg.store_ca_file) == ("/prod/", 3.0,
                                                                           str(ca))
    cfg, _ = parse_args(["--config", str(path), "--store-endpoint",
                         "https://a:2379,https://b:2379", "--store-endpoint", "https://c:2379",
                         "--store-lease-ttl-s", "2", "--store-prefix", "/x/"])
    assert cfg.store_endpoints == ["https://a:2379", "https://b:2379", "https://c:2379"]
    assert (cfg.store_lease_ttl_s, cfg.store_prefix) == (2.0, "/x/")
    cfg, _ = parse_args(["--store-backend", "etcd", "--store-endpoint", "http://e:2379"])
    assert cfg.store_backend == "etcd"


@pytest.mark.parametrize("text,message", [
    ('[store]\nbackend = "zookeeper"', 'use "sqlite"'),
    ('[store]\nbackend = "etcd"', "needs endpoints"),
    ('[store]\nbackend = "etcd"\nendpoints = ["10.0.0.1:2379"]', "not an http:// or https://"),
    ('[store]\nbackend = "etcd"\nendpoints = ["http://e:1"]\nprefix = "edgerm"',
     'start and end with "/"'),
    ('[store]\nbackend = "etcd"\nendpoints = ["http://e:1"]\nlease_ttl_s = 0.5', "at least 1"),
    ('[store]\nbackend = "etcd"\nendpoints = ["http://e:1"]\nkey_file = "k.pem"',
     "without cert_file"),
    ('[store]\nbackend = "etcd"\nendpoints = ["http://e:1"]\ncert_file = "/nonexistent.pem"',
     "no such file"),
    ('[store]\nbackned = "etcd"', "unknown key 'backned' in [store]"),
    ('store = "etcd"', "store must be a table"),
    ('[store]\nendpoints = "http://e:1"\nlease_ttl_s = "x"', "must be a number"),
    (f'module_max_bytes = {MODULE_MAX_BYTES + 1}\n[store]\nbackend = "etcd"\n'
     'endpoints = ["http://e:1"]', "lower module_max_bytes"),
])
def test_bad_store_settings_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(text)
