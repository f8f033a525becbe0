"""Hugging Face models, built from small configs (never downloaded): tied embeddings, losses with
labels, export with class and config, save_pretrained round trip, generate, torch.compile."""

from __future__ import annotations

import pytest
import torch

import subspace_param as sp

tr = pytest.importorskip("transformers")
tr.logging.set_verbosity_error()

VOCAB = 61


def _bert(**kw):
    return tr.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=24, max_position_embeddings=32, **kw,
    )  # fmt: skip


def _llama(tie: bool):
    return tr.LlamaConfig(
        vocab_size=VOCAB, hidden_size=16, intermediate_size=24, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32, tie_word_embeddings=tie,
        bos_token_id=0, eos_token_id=1, pad_token_id=2,
    )  # fmt: skip


# name: (builder, kind of inputs, expected tied names secondary → primary)
MODELS = {
    "bert-classifier": (lambda: tr.BertForSequenceClassification(_bert(num_labels=3)), "classify", {}),
    "bert-mlm": (
        lambda: tr.BertForMaskedLM(_bert()),
        "lm",
        {
            "cls.predictions.decoder.weight": "bert.embeddings.word_embeddings.weight",
            "cls.predictions.decoder.bias": "cls.predictions.bias",
        },
    ),
    "gpt2": (
        lambda: tr.GPT2LMHeadModel(
            tr.GPT2Config(
                vocab_size=VOCAB,
                n_positions=32,
                n_embd=16,
                n_layer=2,
                n_head=2,
                bos_token_id=0,
                eos_token_id=1,
            )
        ),
        "causal",
        {"lm_head.weight": "transformer.wte.weight"},
    ),
    "llama-tied": (
        lambda: tr.LlamaForCausalLM(_llama(True)),
        "causal",
        {"lm_head.weight": "model.embed_tokens.weight"},
    ),
    "llama-untied": (lambda: tr.LlamaForCausalLM(_llama(False)), "causal", {}),
    "t5": (
        lambda: tr.T5ForConditionalGeneration(
            tr.T5Config(
                vocab_size=VOCAB,
                d_model=16,
                d_kv=8,
                d_ff=24,
                num_layers=2,
                num_heads=2,
                decoder_start_token_id=0,
                pad_token_id=0,
                eos_token_id=1,
            )
        ),
        "seq2seq",
        {
            "encoder.embed_tokens.weight": "shared.weight",
            "decoder.embed_tokens.weight": "shared.weight",
            "lm_head.weight": "shared.weight",
        },
    ),
    "vit": (
        lambda: tr.ViTForImageClassification(
            tr.ViTConfig(
                image_size=8,
                patch_size=4,
                num_channels=3,
                hidden_size=16,
                num_hidden_layers=2,
                num_attention_heads=2,
                intermediate_size=24,
                num_labels=3,
            )
        ),
        "image",
        {},
    ),
}


def _build(name: str):
    torch.manual_seed(0)
    return MODELS[name][0]().eval()


def _batch(kind: str) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, VOCAB, (2, 7), generator=g)
    if kind == "classify":
        return {"input_ids": ids, "labels": torch.tensor([0, 2])}
    if kind in ("lm", "causal"):
        return {"input_ids": ids, "labels": ids}
    if kind == "seq2seq":
        return {"input_ids": ids, "labels": torch.randint(3, VOCAB, (2, 5), generator=g)}
    return {"pixel_values": torch.randn(2, 3, 8, 8, generator=g), "labels": torch.tensor([1, 2])}


def _wrap(model, how: str):
    if how == "line":
        sub = sp.line(model, seed=1)
        sub.set_point(0.3)
    elif how == "simplex":
        sub = sp.simplex(model, vertices=3, seed=1)
        sub.set_point([0.2, 0.3, 0.5])
    else:  # SAID: the intrinsic dimension of fine-tuning (Aghajanyan et al. 2020)
        sub = sp.projection(model, dim=20, seed=0, per_tensor_scale=True)
        with torch.no_grad():
            sub.omega.normal_(std=0.5, generator=torch.Generator().manual_seed(2))
    return sub


@pytest.mark.parametrize("how", ["line", "simplex", "said"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_wrap_train_step_and_export(name: str, how: str) -> None:
    model = _build(name)
    _, kind, expected_ties = MODELS[name]
    report = sp.check_model(model)
    assert report.ok and report.shared == expected_ties
    sub = _wrap(model, how)
    batch = _batch(kind)
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n, p in trainable if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient reaches {missing[:5]}"
    plain = sub.export() if how == "said" else sub.export(sub.point)
    assert type(plain) is type(_build(name)) and plain.config.to_dict() == model.config.to_dict()
    for secondary, primary in expected_ties.items():
        assert plain.get_parameter(secondary) is plain.get_parameter(primary)
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, model(**batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_export_save_pretrained_round_trip(name: str, tmp_path) -> None:
    model = _build(name)
    sub = _wrap(model, "line")
    batch = _batch(MODELS[name][1])
    plain = sub.export(0.3)
    plain.save_pretrained(tmp_path)
    reloaded = type(plain).from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["gpt2", "llama-tied", "llama-untied", "t5"])
def test_generate_at_a_point_equals_the_exported_model(name: str) -> None:
    model = _build(name)
    sub = _wrap(model, "line")
    ids = _batch("causal")["input_ids"]
    wrapped = model.generate(ids, max_new_tokens=4, do_sample=False)
    plain = sub.export(0.3).generate(ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(wrapped, plain) and wrapped.shape[1] >= 4
    sub.set_point(0.9)
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == wrapped.shape


def test_compiled_hf_model_does_not_recompile_when_the_point_changes() -> None:
    import torch._dynamo

    model = _build("gpt2")
    sub = sp.line(model, seed=1)
    ids = _batch("causal")["input_ids"]
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    sub.set_point(0.2)
    first = compiled(input_ids=ids).logits
    with torch._dynamo.config.patch(error_on_recompile=True):
        sub.set_point(0.7)
        second = compiled(input_ids=ids).logits
    torch.testing.assert_close(second, model(input_ids=ids).logits)
    assert float((first - second).detach().abs().max()) > 1e-3
