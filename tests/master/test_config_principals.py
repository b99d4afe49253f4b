"""Framework principals in the master's config: the `[frameworks.principals]` table, the flags,
the deprecated `framework_tokens` (principal "default"), each mistake a clear error that never
shows a token, and the re-reading a SIGHUP does (`reload_config`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm_master.config import (
    ConfigError,
    load_config,
    parse_args,
    principal_tokens,
    reload_config,
)


def test_principals_table_with_one_token_or_a_list() -> None:
    cfg = load_config('[frameworks.principals]\nanalytics = "a1"\nops = ["o1", "o2"]\n')
    assert cfg.framework_principals == {"analytics": ["a1"], "ops": ["o1", "o2"]}
    assert principal_tokens(cfg) == {"analytics": ["a1"], "ops": ["o1", "o2"]}
    assert cfg.notices == []
    assert "a1" not in repr(cfg) and "o2" not in repr(cfg)   # tokens stay out of repr()


def test_framework_tokens_are_principal_default_and_deprecated_in_the_file() -> None:
    cfg = load_config('framework_tokens = ["old"]\n[frameworks.principals]\nops = "o1"\n')
    assert principal_tokens(cfg) == {"ops": ["o1"], "default": ["old"]}
    [notice] = cfg.notices
    assert "framework_tokens is deprecated" in notice and "[frameworks.principals]" in notice
    assert "old" not in notice.replace("\"default\"", "")
    # The flag is the shorthand of principal "default", not deprecated.
    cfg, _ = parse_args(["--framework-token", "t"])
    assert principal_tokens(cfg) == {"default": ["t"]} and cfg.notices == []


@pytest.mark.parametrize("text, expected", [
    ('[frameworks.principals]\n"bad name" = "t"\n', "principal name 'bad name'"),
    ('[frameworks.principals]\nops = ""\n', "framework principal ops"),
    ('[frameworks.principals]\nops = []\n', "framework principal ops"),
    ('[frameworks.principals]\nops = 3\n', "framework principal ops"),
    ('[frameworks]\nprincipal = {}\n', "unknown key 'principal' in [frameworks]"),
    ('frameworks = 1\n', "frameworks must be a table"),
    ('[frameworks.principals]\na = "same-secret"\nb = ["x", "same-secret"]\n',
     "framework principals a and b share a token"),
])
def test_mistakes_are_clear_errors_without_tokens(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(text)
    assert expected in str(info.value)
    assert "same-secret" not in str(info.value)


def test_the_principal_flag() -> None:
    cfg, _ = parse_args(["--framework-principal", "ops=o1", "--framework-principal", "ops=o2",
                         "--framework-principal", "analytics=a=b"])
    assert cfg.framework_principals == {"ops": ["o1", "o2"], "analytics": ["a=b"]}
    with pytest.raises(ConfigError) as info:
        parse_args(["--framework-principal", "a-token-by-mistake"])
    assert "NAME=TOKEN" in str(info.value) and "a-token-by-mistake" not in str(info.value)


def test_dev_generates_principal_default_only_when_there_is_none() -> None:
    cfg, generated = parse_args(["--dev"])
    assert principal_tokens(cfg) == {"default": [generated["framework_token"]]}
    cfg, generated = parse_args(["--dev", "--framework-principal", "ops=o1"])
    assert "framework_token" not in generated and principal_tokens(cfg) == {"ops": ["o1"]}


def test_reload_config_reads_the_file_again(tmp_path: Path) -> None:
    path = tmp_path / "master.toml"
    path.write_text('[frameworks.principals]\nops = "o1"\n')
    argv = ["--config", str(path), "--dev", "--data-dir", str(tmp_path / "data")]
    cfg, generated = parse_args(argv)
    assert principal_tokens(cfg) == {"ops": ["o1"]} and set(generated) == {
        "agent_token", "operator_token", "ca_file"}
    path.write_text('[frameworks.principals]\nops = "o2"\nlate = "l1"\n')
    new = reload_config(argv, generated)
    assert principal_tokens(new) == {"ops": ["o2"], "late": ["l1"]}
    # What --dev generated at the start stands in again (not a fresh token each reload).
    assert new.agent_tokens == [generated["agent_token"]]
    assert new.operator_tokens == [generated["operator_token"]]
    # ... and so do its development TLS files (the same ones: a reload changes no TLS setting)
    assert (new.tls_cert, new.tls_key) == (cfg.tls_cert, cfg.tls_key) and new.tls_cert
    path.write_text('[frameworks.principals\nops = "o3"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        reload_config(argv, generated)
    path.unlink()
    with pytest.raises(ConfigError, match="No such file"):
        reload_config(argv, generated)
