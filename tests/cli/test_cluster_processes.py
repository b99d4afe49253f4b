"""The local cluster's processes (edgerm_cli.cluster_processes): tokens and the configuration
files its children get."""

from __future__ import annotations

from pathlib import Path

from edgerm_cli.cluster_processes import ClusterSettings, linux_agent_toml, load_or_create_tokens


def test_tokens_are_generated_once_and_kept(tmp_path: Path) -> None:
    first = load_or_create_tokens(tmp_path)
    assert first == load_or_create_tokens(tmp_path)
    assert len({first.agent, first.framework, first.operator}) == 3


def test_embedded_agent_config_is_valid_for_the_linux_agent(tmp_path: Path) -> None:
    import tomllib

    from edgerm_agent.config import parse_config

    text = linux_agent_toml("a", "ws://127.0.0.1:5690", "tok", tmp_path, ["wasm", "docker"],
                            ClusterSettings())
    config = parse_config(tomllib.loads(text))
    assert config.master_url == "ws://127.0.0.1:5690/agent"
    assert config.executors == ("wasm", "docker")
    assert [d.name for d in config.devices] == ["temp", "humidity"]


def test_with_a_gateway_the_linux_agent_config_has_one(tmp_path: Path) -> None:
    import tomllib

    from edgerm_agent.config import parse_config

    settings = ClusterSettings(gateway=True, gateway_port=5999)
    text = linux_agent_toml("a", "ws://127.0.0.1:5690", "tok", tmp_path, ["wasm"], settings,
                            "coap://127.0.0.1:5683")
    gw = parse_config(tomllib.loads(text)).gateway
    assert gw is not None and gw.port == 5999 and gw.uplink == ("coap://127.0.0.1:5683",)
