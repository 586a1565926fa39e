"""reflectkit.student must not change the process environment on import; offline mode is set only while loading."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")

_PROBE = """
import json, os
before = {k: os.environ.get(k) for k in %r}
import reflectkit.student as s
after_import = {k: os.environ.get(k) for k in %r}
with s.hf_offline():
    inside = {k: os.environ.get(k) for k in %r}
after_block = {k: os.environ.get(k) for k in %r}
print(json.dumps([before, after_import, inside, after_block]))
""" % (VARS, VARS, VARS, VARS)


def _probe(env_overrides: dict[str, str]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k not in VARS}
    env.update(env_overrides)
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_leaves_environment_unchanged_and_block_restores_it() -> None:
    before, after_import, inside, after_block = _probe({})
    assert before == {k: None for k in VARS}
    assert after_import == before
    assert inside == {k: "1" for k in VARS}
    assert after_block == before


def test_user_settings_are_respected() -> None:
    before, after_import, inside, after_block = _probe({"HF_HUB_OFFLINE": "0"})
    assert before == {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": None}
    assert after_import == before
    assert inside["HF_HUB_OFFLINE"] == "0"  # never overridden
    assert after_block == before


def test_hf_offline_restores_on_error_and_nests(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflectkit.student import hf_offline

    for k in VARS:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(RuntimeError):
        with hf_offline():
            assert os.environ["HF_HUB_OFFLINE"] == "1"
            with hf_offline():
                assert os.environ["TRANSFORMERS_OFFLINE"] == "1"
            assert os.environ["HF_HUB_OFFLINE"] == "1"  # the inner block does not undo the outer one
            raise RuntimeError("loader failed")
    assert all(k not in os.environ for k in VARS)


def test_hf_offline_switches_an_already_imported_hub_to_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    constants = pytest.importorskip("huggingface_hub.constants")
    from reflectkit.student import hf_offline

    for k in VARS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hf_offline():
        assert constants.HF_HUB_OFFLINE is True
    assert constants.HF_HUB_OFFLINE is False
