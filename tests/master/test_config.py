"""Configuration: TOML keys, flags on top, validation, --dev tokens."""

from __future__ import annotations

from typing import Any

import pytest

from edgerm_master.config import ConfigError, http_address, load_config, parse_args


def test_toml_then_flags(tmp_path: Any) -> None:
    path = tmp_path / "m.toml"
    path.write_text('heartbeat_ms = 2000\nagent_tokens = ["a1", "a2"]\n'
                    'lost_after_s = 30\n[role_weights]\nprod = 2.5\n')
    cfg, generated = parse_args(["--config", str(path), "--heartbeat-ms", "500",
                                 "--framework-token", "f", "--coap-port", "0"])
    assert cfg.heartbeat_ms == 500 and cfg.agent_tokens == ["a1", "a2"]
    assert cfg.lost_after_s == 30.0 and cfg.role_weights == {"prod": 2.5}
    assert cfg.framework_tokens == ["f"] and cfg.coap_port == 0 and generated == {}


def test_websocket_limits_from_toml_and_flags(tmp_path: Any) -> None:
    path = tmp_path / "m.toml"
    path.write_text("ws_first_message_s = 2.5\nws_max_connections = 50\n")
    cfg, _ = parse_args(["--config", str(path), "--ws-max-connections-per-source", "0"])
    assert (cfg.ws_first_message_s, cfg.ws_max_connections,
            cfg.ws_max_connections_per_source) == (2.5, 50, 0)
    cfg, _ = parse_args(["--ws-first-message-s", "1", "--ws-max-connections", "7"])
    assert (cfg.ws_first_message_s, cfg.ws_max_connections) == (1.0, 7)


@pytest.mark.parametrize("text", ["nope = 1", "heartbeat_ms = 'x'", "heartbeat_ms = 0",
                                  "agent_tokens = 3", "lost_after_s = -1", "[broken",
                                  "ws_first_message_s = 0", "ws_first_message_s = nan",
                                  "ws_max_connections = -1",
                                  "ws_max_connections_per_source = 1.5"])
def test_bad_config_is_refused(text: str) -> None:
    with pytest.raises(ConfigError):
        load_config(text)


def test_dev_generates_missing_tokens(tmp_path: Any) -> None:
    cfg, generated = parse_args(["--dev", "--agent-token", "mine", "--data-dir", str(tmp_path)])
    assert cfg.agent_tokens == ["mine"]
    assert set(generated) == {"framework_token", "operator_token", "ca_file"}
    assert generated["ca_file"] == str(tmp_path / "tls" / "ca.pem")
    assert cfg.tls_cert == str(tmp_path / "tls" / "server.pem")
    assert cfg.framework_tokens == [generated["framework_token"]]
    assert len(generated["operator_token"]) >= 16


def test_http_listen_from_its_table_and_the_flag(tmp_path: Any) -> None:
    cfg = load_config('[http]\nlisten = "0.0.0.0:8080"\n')
    assert cfg.http_listen == "0.0.0.0:8080" and http_address(cfg) == ("0.0.0.0", 8080)
    assert http_address(load_config('[http]\nlisten = "[::1]:0"\n')) == ("::1", 0)
    assert http_address(load_config('[http]\nlisten = "off"\n')) is None
    path = tmp_path / "m.toml"
    path.write_text('[http]\nlisten = "127.0.0.1:9000"\n')
    cfg, _ = parse_args(["--config", str(path), "--http-listen", "127.0.0.1:9001"])
    assert http_address(cfg) == ("127.0.0.1", 9001)


def test_http_listen_defaults_next_to_the_websocket_port() -> None:
    assert http_address(load_config()) == ("127.0.0.1", 5691)
    assert http_address(load_config(overrides={"host": "10.0.0.2", "ws_port": 7000})) == (
        "10.0.0.2", 7001)
    # A WebSocket on any free port: the HTTP server too (tests, several masters on one host).
    assert http_address(load_config(overrides={"ws_port": 0})) == ("127.0.0.1", 0)


@pytest.mark.parametrize("text, words", [
    ('[http]\nport = 80\n', "unknown key 'port' in [http]"),
    ('http = "x"\n', "[http] must be a table"),
    ('[http]\nlisten = "nohost"\n', "'nohost' is not HOST:PORT"),
    ('[http]\nlisten = "h:99999"\n', "port 99999 is not in 0..65535"),
    ('[http]\nlisten = "h:x"\n', "port 'x' is not a number"),
    ('[http]\nlisten = 8080\n', "http_listen must be a string"),
])
def test_bad_http_settings_are_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(text)
    assert words in str(e.value)


def test_log_format_and_metrics_from_toml_and_flags(tmp_path: Any) -> None:
    path = tmp_path / "m.toml"
    path.write_text('log_format = "json"\nlog_level = "warning"\nmetrics = false\n')
    cfg, _ = parse_args(["--config", str(path)])
    assert (cfg.log_format, cfg.log_level, cfg.metrics) == ("json", "warning", False)
    cfg, _ = parse_args(["--log-format", "text", "--no-metrics"])
    assert (cfg.log_format, cfg.metrics) == ("text", False)
    assert parse_args([])[0].metrics is True


@pytest.mark.parametrize("text, words", [
    ('log_format = "xml"', "log_format must be one of text, json"),
    ('log_level = "loud"', "log_level must be one of debug, info, warning, error"),
    ('metrics = "yes"', "metrics must be true or false"),
])
def test_bad_log_and_metrics_settings_are_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        load_config(text)
