"""The committed generated code matches proto/edgerm.proto."""

from edgerm.wire.generate import stale_files


def test_generated_code_is_current() -> None:
    assert stale_files() == [], "run: python -m edgerm.wire.generate"
