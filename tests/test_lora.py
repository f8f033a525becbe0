"""A subspace of LoRA adapters (PEFT) on a frozen base: selection, storage, merge, adapter export,
training under an unmodified Trainer, and the example script."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import subspace_param as sp

tr = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
tr.logging.set_verbosity_error()
ROOT = Path(__file__).resolve().parents[1]


def _gpt2():
    torch.manual_seed(0)
    return tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=61, n_positions=32, n_embd=16, n_layer=2, n_head=2))


def _lora(model, seed: int):
    torch.manual_seed(seed)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["c_attn"], lora_dropout=0.0, fan_in_fan_out=True
    )
    return peft.get_peft_model(model, config)


IDS = torch.randint(3, 61, (2, 7), generator=torch.Generator().manual_seed(1))


def _line(seed_b: int = 1):
    model = _lora(_gpt2(), 0)
    sub = sp.line(model, init=sp.FromModels([None, _lora(_gpt2(), seed_b)]), seed=0)
    return model, sub


def test_the_default_selection_is_the_adapters_and_the_base_is_stored_once() -> None:
    model, sub = _line()
    assert sub.tensor_names and all(".lora_A." in n or ".lora_B." in n for n in sub.tensor_names)
    base = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    adapters = sum(p.numel() for n, p in model.named_parameters() if p.requires_grad)
    plain_base = sum(p.numel() for p in _gpt2().parameters())
    assert base == plain_base  # the frozen base, once
    assert adapters == 2 * sum(v.numel() for v in sub.vertex(0).values())  # 2 vertices of adapters
    # both ends start at the base model (PEFT's own init: B = 0), with different A
    for name, (v0, v1) in zip(sub.tensor_names, sub.vertices()):
        if ".lora_B." in name:
            assert not v0.any() and not v1.any()
        else:
            assert not torch.equal(v0, v1)


def test_export_is_a_peft_model_that_merges_and_saves_an_adapter(tmp_path) -> None:
    model, sub = _line()
    with torch.no_grad():  # move the adapters off zero so the check has something to see
        for v in sub.parameters():
            v.normal_(std=0.2, generator=torch.Generator().manual_seed(v.numel()))
    sub.set_point(0.3)
    model.eval()
    expected = model(input_ids=IDS).logits
    plain = sub.export(0.3)
    assert isinstance(plain, peft.PeftModel)
    torch.testing.assert_close(plain(input_ids=IDS).logits, expected, rtol=0, atol=0)
    merged = sub.export(0.3).merge_and_unload()
    assert type(merged) is tr.GPT2LMHeadModel
    torch.testing.assert_close(merged(input_ids=IDS).logits, expected, rtol=1e-5, atol=1e-6)
    plain.save_pretrained(tmp_path)
    assert {"adapter_model.safetensors", "adapter_config.json"} <= {p.name for p in tmp_path.iterdir()}
    reloaded = peft.PeftModel.from_pretrained(_gpt2(), tmp_path).eval()
    torch.testing.assert_close(reloaded(input_ids=IDS).logits, expected, rtol=0, atol=0)


def test_the_trainer_trains_the_adapter_line_under_autosample(tmp_path) -> None:
    model, sub = _line()
    base_before = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    ends_before = [v.clone() for v in sub.parameters()]
    handle = sub.autosample(1.0, seed=3)
    data = [
        {"input_ids": row, "labels": row}
        for row in torch.randint(3, 61, (16, 7), generator=torch.Generator())
    ]
    args = tr.TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=8, max_steps=4, learning_rate=1e-2,
        report_to=[], save_strategy="no", logging_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    tr.Trainer(model=model, args=args, train_dataset=data).train()
    assert handle.samples == 4
    assert all(not torch.equal(a, b) for a, b in zip(ends_before, sub.parameters()))  # both ends moved
    assert all(torch.equal(base_before[n], p) for n, p in model.named_parameters() if not p.requires_grad)


def test_example_hf_line_runs(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        hf_line = __import__("hf_line")
    finally:
        sys.path.pop(0)
    summary = hf_line.main(["--steps", "30", "--train-size", "256", "--out", str(tmp_path / "full")])
    assert set(summary) >= {"ends", "midpoint", "ensemble of the ends"}
    assert (tmp_path / "full" / "midpoint" / "config.json").exists()
    reloaded = tr.BertForSequenceClassification.from_pretrained(tmp_path / "full" / "midpoint")
    assert reloaded.config.num_labels == 2
    lora = hf_line.main(["--lora", "--steps", "30", "--train-size", "256", "--out", str(tmp_path / "lora")])
    assert "plain LoRA" in lora and (tmp_path / "lora" / "midpoint" / "adapter_config.json").exists()
    saved = json.loads((tmp_path / "lora" / "summary.json").read_text())
    assert saved["mode"] == "lora" and 0.0 <= saved["midpoint"]["acc"] <= 1.0
    for name in ("along_alpha.csv", "along_alpha.png"):
        assert (tmp_path / "lora" / name).stat().st_size > 100


def test_deepcopy_keeps_a_peft_modules_to_save_wrapper() -> None:
    """PEFT's ModulesToSaveWrapper forwards attribute lookups to its active copy; once that copy
    is parametrized, copy.deepcopy(wrapper) would return a copy of the inner module instead."""
    import copy

    torch.manual_seed(0)
    config = tr.BertConfig(
        vocab_size=41, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24,
        max_position_embeddings=16, num_labels=2,
    )  # fmt: skip
    lora = peft.LoraConfig(r=2, target_modules=["query"], modules_to_save=["classifier"])
    model = peft.get_peft_model(tr.BertForSequenceClassification(config), lora)
    sub = sp.line(model, seed=0)
    wrapper_type = type(model.base_model.model.classifier)
    twin = copy.deepcopy(model)
    assert type(twin.base_model.model.classifier) is wrapper_type
    ids = IDS % 41
    model.eval()
    twin.eval()
    torch.testing.assert_close(twin(input_ids=ids).logits, model(input_ids=ids).logits, rtol=0, atol=0)
    plain = sub.export(0.5)
    assert type(plain.base_model.model.classifier) is wrapper_type


def test_example_said_bert_runs(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        said = __import__("said_bert")
    finally:
        sys.path.pop(0)
    args = ["--dims", "5", "200", "--pretrain-steps", "20", "--steps", "15", "--train-size", "128"]
    summary = said.main([*args, "--out", str(tmp_path), "--no-progress"])
    assert [r["d"] for r in summary["rows"]] == [5, 200] and 0 < summary["baseline_full_finetuning"] <= 1
    runs = [r for r in summary["runs"] if r["d"] is not None]
    assert all(r["method"] in sp.projections.available_methods() for r in runs)
    assert json.loads((tmp_path / "said.json").read_text())["d_int90"] == summary["d_int90"]
