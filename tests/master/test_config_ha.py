"""The HA settings of the master's config: [master] name and urls, --name, --advertise-url."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm_master.config import ConfigError, advertised_urls, load_config, parse_args


def test_master_table_and_flags(tmp_path: Any) -> None:
    path = tmp_path / "m.toml"
    path.write_text('[master]\nname = "m1"\nurls = { coap = "coap://10.0.0.5:5683" }\n')
    cfg, _ = parse_args(["--config", str(path)])
    assert cfg.name == "m1" and cfg.advertise_urls == {"coap": "coap://10.0.0.5:5683"}
    cfg, _ = parse_args(["--config", str(path), "--name", "m2",
                         "--advertise-url", "ws=wss://edge.example:443"])
    assert cfg.name == "m2" and cfg.advertise_urls == {"ws": "wss://edge.example:443"}


def test_advertised_urls_fill_in_the_bound_addresses() -> None:
    cfg = load_config('[master]\nurls = { ws = "ws://m1.example:80" }\n')
    assert advertised_urls(cfg, ("127.0.0.1", 5683), ("127.0.0.1", 5690)) == {
        "coap": "coap://127.0.0.1:5683", "ws": "ws://m1.example:80"}
    assert advertised_urls(load_config(), ("::1", 1), ("::1", 2))["coap"] == "coap://[::1]:1"


def test_the_http_url_is_the_bound_http_address_or_the_configured_one() -> None:
    bound = (("127.0.0.1", 5683), ("127.0.0.1", 5690))
    assert "http" not in advertised_urls(load_config(), *bound)  # HTTP off
    assert advertised_urls(load_config(), *bound, ("127.0.0.1", 8080))["http"] == \
        "http://127.0.0.1:8080"
    assert "http" not in advertised_urls(load_config(), *bound, ("0.0.0.0", 8080))  # no URL
    cfg = load_config('[master]\nurls = { http = "https://m1.example" }\n')
    assert advertised_urls(cfg, *bound, ("0.0.0.0", 8080))["http"] == "https://m1.example"
    assert parse_args(["--advertise-url", "http=http://10.0.0.1:5691"])[0].advertise_urls == {
        "http": "http://10.0.0.1:5691"}


@pytest.mark.parametrize("text", [
    "master = 3", "[master]\nport = 1", '[master]\nurls = { http = "ws://x:1" }',
    '[master]\nurls = { https = "https://x:1" }', '[master]\nurls = { http = "http://" }',
    '[master]\nurls = { coap = "ws://x:1" }', '[master]\nurls = { coap = "coap://" }',
    '[master]\nname = "a/b"', '[master]\nurls = { coap = 5 }'])
def test_bad_master_table_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(text)


def test_bad_advertise_flag_says_the_form() -> None:
    with pytest.raises(ConfigError, match="KIND=URL"):
        parse_args(["--advertise-url", "coap://x:1"])


def test_etcd_on_a_wildcard_host_needs_advertised_urls() -> None:
    etcd = '[store]\nbackend = "etcd"\nendpoints = ["http://127.0.0.1:2379"]\n'
    with pytest.raises(ConfigError, match="urls for coap, ws"):
        load_config('host = "0.0.0.0"\n' + etcd)
    cfg = load_config('host = "0.0.0.0"\n' + etcd + '[master]\nurls = { coap = '
                      '"coap://10.0.0.1:5683", ws = "ws://10.0.0.1:5690" }\n')
    assert cfg.advertise_urls["ws"] == "ws://10.0.0.1:5690"
    assert load_config('host = "0.0.0.0"\n').host == "0.0.0.0"  # SQLite: one master, no URLs
