"""Model specs for generate: train output dirs, hf:DIR, PEFT adapters (real transformers + peft on SmolLM2)."""

import json

import pytest
from conftest import run_cli

from reflectkit.errors import UserError
from reflectkit.llm.spec import ModelSpec


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, gguf_path):
    from reflectkit.student import resolve_student

    return resolve_student("embedded").hf_dir  # shared conversion (REFLECTKIT_STUDENT_CACHE, see conftest)


def test_resolve_specs(tmp_path, gguf_path):
    assert ModelSpec().kind == "embedded" and ModelSpec(model="embedded").describe() == {"kind": "embedded", "embedded": True}
    assert ModelSpec(model=str(gguf_path)).check("--").model == str(gguf_path)
    ep = ModelSpec(model="gpt-x", base_url="http://h/v1", api_key_env="MY_KEY").check("--")
    assert (ep.kind, ep.model, ep.api_key_env) == ("openai-compatible", "gpt-x", "MY_KEY")
    train_out = tmp_path / "out"
    (train_out / "merged").mkdir(parents=True)
    (train_out / "merged" / "config.json").write_text("{}")
    (train_out / "manifest.json").write_text(json.dumps({"base_model_dir": "x"}))
    spec = ModelSpec(model=str(train_out)).check("--")
    assert spec.kind == "hf" and spec.hf_dir() == train_out / "merged"
    assert ModelSpec(model=f"hf:{train_out / 'merged'}").check("--").hf_dir() == train_out / "merged"
    with pytest.raises(UserError, match="no adapter_config.json"):
        ModelSpec(model=f"hf:{train_out / 'merged'}", adapter=str(tmp_path)).check("--")
    with pytest.raises(UserError, match="not a Hugging Face model directory"):
        ModelSpec(model=str(tmp_path)).check("--")
    r = run_cli("generate", "gsm8k", "-o", str(tmp_path / "x.jsonl"), "--prompt-format", "vicuna")
    assert r.returncode == 2 and "--prompt-format" in r.stderr


@pytest.mark.slow
def test_generate_with_hf_dir_and_zero_lora_adapter(tmp_path, hf_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32)
    adapter = tmp_path / "adapter"
    get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"])).save_pretrained(str(adapter))
    outs = {}
    for name, extra in (("base", ()), ("lora", ("--adapter", str(adapter)))):
        out = tmp_path / f"{name}.jsonl"
        r = run_cli("generate", "gsm8k", "-o", str(out), "--limit", "1", "--max-tokens", "6", "--model",
                    f"hf:{hf_dir}", *extra, "--run-dir", str(tmp_path / f"run-{name}"))
        assert r.returncode == 0, r.stderr
        outs[name] = json.loads(out.read_text())
    ident = outs["lora"]["reflectkit"]["generate"]["model"]
    assert ident["kind"] == "hf-transformers" and ident["adapter"] == str(adapter.resolve())
    # LoRA B matrices start at zero: the adapter must not change greedy output, but it is a distinct model identity
    assert outs["lora"]["response"] == outs["base"]["response"] and outs["base"]["response"].strip()
    assert ident["weights_sha256"] != outs["base"]["reflectkit"]["generate"]["model"]["weights_sha256"]
