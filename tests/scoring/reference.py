"""Literal per-sample reference: tianyi-lab/Reflection_Tuning selection_code/data_analysis.py, transcribed.

One sample at a time, four forward passes with ``model(input_ids, labels=labels)``, the same truncation and the
same ``rfind`` target spans. Only the model/tokenizer loading and the device differ (the student is passed in).
Used by the equivalence test and by ``benchmarks/bench_score.py`` as the baseline.
"""

from __future__ import annotations

from typing import Any

import torch

PROMPT_DICT_VICUNA = {
    "prompt_input": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: {instruction}\nInput:\n{input} ASSISTANT:"
    ),
    "prompt_no_input": (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: {instruction} ASSISTANT:"
    ),
}
PROMPT_DICT_ALPACA = {
    "prompt_input": (
        "Below is an instruction that describes a task, paired with an input that provides further context. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
    ),
    "prompt_no_input": (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:"
    ),
}


def get_perplexity_and_embedding_whole_text(tokenizer: Any, model: Any, text: str, max_length: int) -> tuple[float, float]:
    try:
        input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
        input_ids = input_ids.to(model.device)  # the reference runs on cuda:0 by default; we follow the model
        with torch.no_grad():
            outputs = model(input_ids, labels=input_ids.contiguous())
        loss = outputs.loss
        perplexity = torch.exp(loss)
        return perplexity.to("cpu").item(), loss.to("cpu").item()
    except Exception:
        return 0, 0


def get_perplexity_and_embedding_part_text(tokenizer: Any, model: Any, text: str, target_span: str, max_length: int) -> tuple[float, float]:
    try:
        input_ids = tokenizer.encode(text, return_tensors="pt", truncation=True, max_length=max_length)
        start_index = text.rfind(target_span)
        start_token = len(tokenizer.encode(text[:start_index]))
        input_ids = input_ids.to(model.device)
        labels = input_ids.clone()
        labels[0, :start_token] = -100
        with torch.no_grad():
            outputs = model(input_ids, labels=labels)
        loss = outputs.loss
        perplexity = torch.exp(loss)
        return perplexity.to("cpu").item(), loss.to("cpu").item()
    except Exception:
        return 0, 0


class _ChatTemplate:
    """The ``chat`` wrapper (a reflectkit extension, not in the papers) shaped like the reference's prompt strings:
    ``format_map`` puts the instruction (``+ "\\nInput:\\n" + input``) in a user turn of the student's chat
    template, with the generation prompt. Everything else in the loop stays the reference's."""

    def __init__(self, tokenizer: Any, with_input: bool) -> None:
        self.tokenizer = tokenizer
        self.with_input = with_input

    def format_map(self, d: dict[str, str]) -> str:
        content = f"{d['instruction']}\nInput:\n{d['input']}" if self.with_input else d["instruction"]
        return self.tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                  add_generation_prompt=True)


def reference_sample(tokenizer: Any, model: Any, data_i: dict[str, str], max_length: int = 2048,
                     prompt: str = "vicuna") -> dict[str, list[float]]:
    """``temp_data_i`` of the reference loop for one sample: ``{'ppl': [4], 'loss': [4]}`` or ``{}``."""
    if prompt == "chat":
        prompt_no_input, prompt_input = _ChatTemplate(tokenizer, False), _ChatTemplate(tokenizer, True)
    else:
        d = PROMPT_DICT_VICUNA if prompt == "vicuna" else PROMPT_DICT_ALPACA
        prompt_no_input, prompt_input = d["prompt_no_input"], d["prompt_input"]
    instruct_i = data_i["instruction"]
    output_i = data_i["output"]
    instruct_i_ori = instruct_i
    input_i = data_i["input"] if "input" in data_i.keys() else ""
    if input_i == "":
        promt_to_use = prompt_no_input.format_map({"instruction": instruct_i})
        whole_text = promt_to_use + output_i
        instruct_i = promt_to_use
    else:
        promt_to_use = prompt_input.format_map({"instruction": instruct_i, "input": input_i})
        whole_text = promt_to_use + output_i
        instruct_i = promt_to_use
    instruct_i_len = tokenizer.encode(instruct_i, return_tensors="pt", truncation=True, max_length=max_length).shape[1]
    instruct_i_reverse = ("Below is the response to an instruction, please guess the corresponding instruction for the given response.\n"
                          + output_i + "\nGenerate the instruction for the above response.")
    promt_to_use_reverse = prompt_no_input.format_map({"instruction": instruct_i_reverse})
    whole_text_reverse = promt_to_use_reverse + instruct_i_ori + input_i
    instruct_i_reverse_len = tokenizer.encode(promt_to_use_reverse, return_tensors="pt", truncation=True,
                                              max_length=max_length).shape[1]
    if output_i == "":
        return {}
    ppl_ins_alone, loss_ins_alone = get_perplexity_and_embedding_whole_text(
        tokenizer, model, instruct_i_ori + input_i, max_length - instruct_i_reverse_len + 1)
    ppl_out_alone, loss_out_alone = get_perplexity_and_embedding_whole_text(
        tokenizer, model, output_i, max_length - instruct_i_len + 1)
    ppl_ins_condition, loss_ins_condition = get_perplexity_and_embedding_part_text(
        tokenizer, model, whole_text_reverse, instruct_i_ori, max_length)
    ppl_out_condition, loss_out_condition = get_perplexity_and_embedding_part_text(
        tokenizer, model, whole_text, output_i, max_length)
    return {"ppl": [ppl_ins_alone, ppl_out_alone, ppl_ins_condition, ppl_out_condition],
            "loss": [loss_ins_alone, loss_out_alone, loss_ins_condition, loss_out_condition]}


def reference_scores(sample: dict[str, list[float]]) -> dict[str, float]:
    """``put_analysis_to_data.py``: ifd_ppl, rifd_ppl, ifd_loss, rifd_loss from the four ppl/loss values."""
    ppl, loss = sample["ppl"], sample["loss"]
    return {"ifd_ppl": ppl[3] / ppl[1], "rifd_ppl": ppl[2] / ppl[0],
            "ifd_loss": loss[3] / loss[1], "rifd_loss": loss[2] / loss[0]}
