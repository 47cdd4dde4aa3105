"""BERT and BART pretraining models: losses against the stock transformers computation on the same
weights, gradients, persistence, and export as plain transformers checkpoints."""

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModel, BartForConditionalGeneration, BertForPreTraining

from hfssl import BartPretrainingConfig, BartPretrainingModel, BertPretrainingConfig, BertPretrainingModel, GPTConfig

TINY_BERT = dict(model_type="bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=120,
                 max_position_embeddings=64)  # fmt: skip
TINY_BART = dict(model_type="bart", d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                 encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=120, max_position_embeddings=64)  # fmt: skip


def _bert_batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, 120, (4, 24), generator=generator)
    token_type_ids = (torch.arange(24) >= 12).long().expand(4, -1).clone()
    attention_mask = torch.ones_like(input_ids)
    attention_mask[3, 18:] = 0
    labels = torch.full_like(input_ids, -100)
    masked = (torch.rand(input_ids.shape, generator=generator) < 0.2) & attention_mask.bool()
    labels[masked] = input_ids[masked]
    return dict(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask, labels=labels,
                next_sentence_label=torch.tensor([0, 1, 1, 0]))  # fmt: skip


def _stock_copy(model, stock_class):
    stock = stock_class(model.backbone.config).eval()
    stock.load_state_dict(model.backbone.state_dict())
    return stock


def test_sparse_mlm_head_gives_the_dense_loss_and_gradients():
    torch.manual_seed(0)
    model = BertPretrainingModel(BertPretrainingConfig(backbone_config=TINY_BERT)).eval()
    stock = _stock_copy(model, BertForPreTraining)
    batch = _bert_batch()
    ours, theirs = model(**batch, return_mlm_logits=True), stock(**batch)
    torch.testing.assert_close(ours.loss, theirs.loss)
    masked = batch["labels"] != -100
    assert ours.mlm_logits.shape == (int(masked.sum()), 120)  # the vocabulary projection ran on masked rows only
    torch.testing.assert_close(ours.mlm_logits, theirs.prediction_logits[masked])
    assert torch.equal(ours.mlm_predictions[masked], theirs.prediction_logits[masked].argmax(-1))
    assert (ours.mlm_predictions[~masked] == -100).all()
    ours.loss.backward()
    theirs.loss.backward()
    for (name, ours_param), theirs_param in zip(model.backbone.named_parameters(), stock.parameters()):
        torch.testing.assert_close(ours_param.grad, theirs_param.grad, msg=name)


def test_bert_without_next_sentence_prediction_is_masked_lm_only():
    model = BertPretrainingModel(BertPretrainingConfig(backbone_config=TINY_BERT, next_sentence_prediction=False)).eval()
    batch = _bert_batch()
    output = model(**{k: v for k, v in batch.items() if k != "next_sentence_label"}, return_mlm_logits=True)
    masked = batch["labels"] != -100
    torch.testing.assert_close(output.loss, torch.nn.functional.cross_entropy(output.mlm_logits, batch["labels"][masked]))
    assert output.nsp_logits is None


def test_bart_loss_is_the_stock_seq2seq_loss():
    torch.manual_seed(0)
    model = BartPretrainingModel(BartPretrainingConfig(backbone_config=TINY_BART)).eval()
    stock = _stock_copy(model, BartForConditionalGeneration)
    generator = torch.Generator().manual_seed(1)
    labels = torch.randint(5, 120, (3, 16), generator=generator)
    labels[2, 12:] = -100
    decoder_input_ids = torch.cat([torch.full((3, 1), 2), labels[:, :-1].clamp_min(1)], dim=1)
    batch = dict(input_ids=torch.randint(5, 120, (3, 14), generator=generator), decoder_input_ids=decoder_input_ids, labels=labels)
    torch.testing.assert_close(model(**batch).loss, stock(**batch).loss)


@pytest.mark.parametrize("kind", ["bert", "bart"])
def test_save_load_round_trip_and_export_loads_without_hfssl(tmp_path, kind):
    model_class, config = (
        (BertPretrainingModel, BertPretrainingConfig(backbone_config=TINY_BERT))
        if kind == "bert"
        else (BartPretrainingModel, BartPretrainingConfig(backbone_config=TINY_BART))
    )
    model = model_class(config).eval()
    model.save_pretrained(tmp_path / "model")
    restored = AutoModel.from_pretrained(tmp_path / "model")
    assert type(restored) is model_class
    for name, value in model.state_dict().items():
        assert torch.equal(value, restored.state_dict()[name]), name
    model.export_backbone(tmp_path / "backbone")
    input_ids = [[0, 7, 8, 9, 2]]
    with torch.no_grad():
        encoder = model.backbone.get_encoder() if kind == "bart" else model.backbone.base_model
        expected = encoder(input_ids=torch.tensor(input_ids)).last_hidden_state
    script = (
        "import sys, json, torch\nfrom transformers import AutoModel\n"
        f"model = AutoModel.from_pretrained({str(tmp_path / 'backbone')!r}).eval()\n"
        "encoder = model.get_encoder() if model.config.is_encoder_decoder else model\n"
        f"print(json.dumps(encoder(input_ids=torch.tensor({input_ids})).last_hidden_state.tolist()), 'hfssl' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    values, imported = result.stdout.strip().rsplit(" ", 1)
    torch.testing.assert_close(torch.tensor(json.loads(values)), expected, rtol=1e-5, atol=1e-5)
    assert imported == "False"


def test_a_backbone_of_the_wrong_kind_is_refused():
    with pytest.raises(ValueError, match="AutoModelForPreTraining"):
        BertPretrainingConfig(backbone_config=dict(model_type="vit"))
    with pytest.raises(ValueError, match="AutoModelForCausalLM"):
        GPTConfig(backbone_config=dict(model_type="resnet"))
    with pytest.raises(ValueError, match="AutoModelForSeq2SeqLM"):
        BartPretrainingConfig(backbone_config=dict(model_type="gpt2"))
