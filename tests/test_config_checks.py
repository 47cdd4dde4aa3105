"""Every hfssl config checks its ranges at construction (and however transformers builds it), and so do
hfssl's training arguments: a bad value fails at once, naming the field, the value and the valid range,
before any run can train a reversed or empty objective."""

import importlib
import json
import re
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO_ROOT
from transformers import AutoConfig

from hfssl import BartPretrainingConfig, BertPretrainingConfig, GPTConfig, SimCLRConfig, Word2VecConfig
from hfssl.models.language import LanguageSSLConfig
from hfssl.models.vision import VisionSSLConfig
from hfssl.training.argument_checks import check_ssl_training_arguments

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_bert  # noqa: E402
import pretrain_vision  # noqa: E402
import pretrain_word2vec  # noqa: E402

TINY_BERT = dict(model_type="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
TINY_BART = dict(model_type="bart", d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                 decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32)  # fmt: skip
TINY_GPT2 = dict(model_type="gpt2", n_layer=1, n_embd=16, n_head=2)
TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")


def build(config_class, **values):
    """``config_class`` with a tiny backbone (where it has one) and ``values``."""
    backbone = {SimCLRConfig: TINY_RESNET, BertPretrainingConfig: TINY_BERT, BartPretrainingConfig: TINY_BART,
                GPTConfig: TINY_GPT2}.get(config_class)  # fmt: skip
    return config_class(**({"backbone_config": backbone} if backbone else {}), **values)


# (config class, field, invalid value, the valid range as the message states it)
INVALID = [
    # the vision base, through SimCLR
    (SimCLRConfig, "pooling", "max", "one of ('auto', 'cls', 'mean', 'pooler')"),
    (SimCLRConfig, "image_size", 0, "an int >= 1"),
    (SimCLRConfig, "image_size", 16.5, "an int >= 1"),
    # SimCLR
    (SimCLRConfig, "tau", -1, "> 0"),
    (SimCLRConfig, "tau", 0, "> 0"),
    (SimCLRConfig, "tau", float("nan"), "> 0"),
    (SimCLRConfig, "tau", "0.1", "> 0"),
    (SimCLRConfig, "projection_hidden_dim", 0, "an int >= 1"),
    (SimCLRConfig, "projection_dim", 64.0, "an int >= 1"),
    (SimCLRConfig, "projection_num_layers", 0, "an int >= 1"),
    (SimCLRConfig, "min_crop_scale", 0, "in (0, 1]"),
    (SimCLRConfig, "min_crop_scale", 1.2, "in (0, 1]"),
    (SimCLRConfig, "color_jitter_strength", -0.5, "in [0, 2.5]"),
    (SimCLRConfig, "color_jitter_strength", 3, "in [0, 2.5]"),
    # BERT
    (BertPretrainingConfig, "mlm_probability", 1.5, "in (0, 1]"),
    (BertPretrainingConfig, "mlm_probability", 0, "in (0, 1]"),
    (BertPretrainingConfig, "mask_replace_prob", -0.1, "in [0, 1]"),
    (BertPretrainingConfig, "random_replace_prob", 1.1, "in [0, 1]"),
    (BertPretrainingConfig, "random_replace_prob", 0.3, "at most 1 - mask_replace_prob = 0.2"),  # 0.8 + 0.3 > 1
    (BertPretrainingConfig, "next_sentence_prediction", "yes", "True or False"),
    (BertPretrainingConfig, "whole_word_mask", 2, "True or False"),
    # BART
    (BartPretrainingConfig, "mask_ratio", 1.5, "in [0, 1]"),
    (BartPretrainingConfig, "random_ratio", -0.1, "in [0, 1]"),
    (BartPretrainingConfig, "permute_sentences", 2, "in [0, 1]"),
    (BartPretrainingConfig, "rotate_ratio", 1.01, "in [0, 1]"),
    (BartPretrainingConfig, "poisson_lambda", 0, "> 0"),
    (BartPretrainingConfig, "max_seq_length", 3, "an int >= 4"),
    # word2vec
    (Word2VecConfig, "vocab_size", 1, "an int >= 2"),
    (Word2VecConfig, "vector_size", 0, "an int >= 1"),
    (Word2VecConfig, "window", 0, "an int >= 1"),
    (Word2VecConfig, "window", 2.5, "an int >= 1"),
    (Word2VecConfig, "negative", 0, "an int >= 1 (hierarchical softmax is not implemented"),
    (Word2VecConfig, "ns_exponent", float("inf"), "a finite number"),
    (Word2VecConfig, "sample", -1e-3, "in [0, 1)"),
    (Word2VecConfig, "sample", 1, "in [0, 1)"),
    (Word2VecConfig, "min_count", -1, "an int >= 0"),
    (Word2VecConfig, "max_vocab_size", 0, "None or an int >= 1"),
    (Word2VecConfig, "chunk_size", 0, "an int >= 1"),
    (Word2VecConfig, "sg", 2, "True or False"),
    (Word2VecConfig, "cbow_mean", "mean", "True or False"),
    (Word2VecConfig, "shared_negatives", "no", "True or False"),
    (Word2VecConfig, "tie_word_embeddings", True, "False"),
    (Word2VecConfig, "loss_implementation", "hs", "one of ('auto', 'sequential', 'fused', 'autograd')"),
    (Word2VecConfig, "unk_token_id", 2, "an id in [0, vocab_size - 1 = 1]"),
    (Word2VecConfig, "unk_token_id", -1, "an id in [0, vocab_size - 1 = 1]"),
]


def _id(case):
    return f"{case[0].__name__}.{case[1]}={case[2]!r}"


@pytest.mark.parametrize("config_class, name, value, expected", INVALID, ids=[_id(case) for case in INVALID])
def test_an_invalid_value_names_the_field_the_value_and_the_range(config_class, name, value, expected):
    with pytest.raises(ValueError) as error:
        build(config_class, **{name: value})
    message = str(error.value)
    assert message.startswith(f"{config_class.__name__}.{name} must be {expected}"), message
    assert message.endswith(f"got {value!r}."), message


THROUGH_LOADING = [case for case in INVALID if _id(case) in {
    "SimCLRConfig.pooling='max'", "SimCLRConfig.tau=-1", "SimCLRConfig.image_size=0", "BertPretrainingConfig.mlm_probability=1.5",
    "BartPretrainingConfig.mask_ratio=1.5", "Word2VecConfig.window=0", "Word2VecConfig.loss_implementation='hs'",
}]  # fmt: skip


@pytest.mark.parametrize(
    "config_class, name, value, expected", THROUGH_LOADING, ids=[_id(case) for case in THROUGH_LOADING]
)
def test_the_checks_hold_however_transformers_builds_the_config(tmp_path, config_class, name, value, expected):
    """from_pretrained / AutoConfig with a keyword override set the value after the constructor ran; a value
    set on a built config is refused when save_pretrained would write it."""
    build(config_class).save_pretrained(tmp_path)
    for load in (config_class.from_pretrained, AutoConfig.from_pretrained):
        with pytest.raises(ValueError, match=re.escape(f"{config_class.__name__}.{name} must be {expected}")):
            load(tmp_path, **{name: value})
    with pytest.raises(ValueError, match=re.escape(f"{config_class.__name__}.{name} must be {expected}")):
        config_class.from_dict({**build(config_class).to_dict(), name: value})
    config = build(config_class)
    setattr(config, name, value)
    with pytest.raises(ValueError, match=re.escape(f"{config_class.__name__}.{name} must be {expected}")):
        config.save_pretrained(tmp_path / "mutated")
    assert not (tmp_path / "mutated" / "config.json").exists()


BOUNDARIES = [
    (SimCLRConfig, dict(tau=1e-6, min_crop_scale=1, color_jitter_strength=0)),
    (SimCLRConfig, dict(color_jitter_strength=2.5, min_crop_scale=1e-3, image_size=1)),
    (SimCLRConfig, dict(projection_hidden_dim=1, projection_dim=1, projection_num_layers=1, tau=5)),
    *[(SimCLRConfig, dict(pooling=pooling)) for pooling in ("auto", "cls", "mean", "pooler")],
    (BertPretrainingConfig, dict(mlm_probability=1, mask_replace_prob=1, random_replace_prob=0)),
    (BertPretrainingConfig, dict(mlm_probability=1e-3, mask_replace_prob=0, random_replace_prob=1)),
    (BertPretrainingConfig, dict(mask_replace_prob=0, random_replace_prob=0, whole_word_mask=True)),
    (BertPretrainingConfig, dict(next_sentence_prediction=False)),
    (BartPretrainingConfig, dict(mask_ratio=0, random_ratio=0, permute_sentences=0, rotate_ratio=0, max_seq_length=4)),
    (
        BartPretrainingConfig,
        dict(mask_ratio=1, random_ratio=1, permute_sentences=1, rotate_ratio=1, poisson_lambda=1e-3),
    ),
    (GPTConfig, {}),
    (Word2VecConfig, dict(vocab_size=2, vector_size=1, window=1, negative=1, sample=0, min_count=0, chunk_size=1)),
    (Word2VecConfig, dict(vocab_size=3, unk_token_id=2, max_vocab_size=1, ns_exponent=-0.5, sample=0.999)),
    (Word2VecConfig, dict(sg=0, cbow_mean=0, max_vocab_size=None, loss_implementation="sequential")),
    (Word2VecConfig, dict(sg=1, shared_negatives=True, loss_implementation="fused")),
    *[(Word2VecConfig, dict(loss_implementation=kind)) for kind in ("auto", "sequential", "fused", "autograd")],
]


@pytest.mark.parametrize("config_class, values", BOUNDARIES)
def test_boundary_values_construct(config_class, values):
    config = build(config_class, **values)
    for name, value in values.items():
        assert getattr(config, name) == value


@pytest.mark.parametrize(
    "config_class", [SimCLRConfig, BertPretrainingConfig, BartPretrainingConfig, GPTConfig, Word2VecConfig]
)
def test_the_default_config_validates_and_round_trips(tmp_path, config_class):
    config = config_class()
    config.save_pretrained(tmp_path)
    for loaded in (config_class.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is config_class
        expected, actual = config.to_dict(), loaded.to_dict()
        expected.pop("_name_or_path"), actual.pop("_name_or_path")
        assert actual == expected


def test_every_hfssl_config_class_is_checked():
    """Each config class is a CheckedConfig, so a new field's check has one place to go."""
    from hfssl import METHODS
    from hfssl.models.checks import CheckedConfig

    for base in (VisionSSLConfig, LanguageSSLConfig, Word2VecConfig):
        assert issubclass(base, CheckedConfig)
    assert all(issubclass(method.config_class, CheckedConfig) for method in METHODS.values())


def test_the_word2vec_options_must_fit_together():
    with pytest.raises(ValueError, match=r"shared_negatives must be False with sg=False: it is a skip-gram option"):
        Word2VecConfig(sg=False, shared_negatives=True)
    with pytest.raises(ValueError, match=r"shared_negatives must be False with loss_implementation='sequential'"):
        Word2VecConfig(shared_negatives=True, loss_implementation="sequential")


def test_a_language_config_refuses_a_backbone_of_the_wrong_kind():
    with pytest.raises(ValueError, match="GPTConfig needs a backbone that AutoModelForCausalLM can build"):
        GPTConfig(backbone_config=TINY_RESNET)


# ---- training arguments -------------------------------------------------------------------------
VALID_ARGUMENTS = dict(knn_k=200, knn_temperature=0.1, lars_eta=0.001, lars_momentum=0.9, lars_exclude_lr_scale=1.0)


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("knn_k", 0, "an int >= 1"),
        ("knn_k", 2.5, "an int >= 1"),
        ("knn_temperature", 0, "> 0"),
        ("knn_temperature", -0.1, "> 0"),
        ("lars_eta", 0, "> 0"),
        ("lars_momentum", 1, "in [0, 1)"),
        ("lars_momentum", -0.1, "in [0, 1)"),
        ("lars_exclude_lr_scale", 0, "> 0"),
    ],
)
def test_ssl_training_arguments_out_of_range_name_the_flag(name, value, expected):
    check_ssl_training_arguments(SimpleNamespace(**VALID_ARGUMENTS))
    with pytest.raises(ValueError) as error:
        check_ssl_training_arguments(SimpleNamespace(**{**VALID_ARGUMENTS, name: value}))
    assert str(error.value).startswith(f"--{name} must be {expected}") and f"got {value!r}." in str(error.value)


def test_ssl_training_arguments_boundaries_pass(tmp_path):
    check_ssl_training_arguments(
        SimpleNamespace(knn_k=1, knn_temperature=1e-6, lars_eta=1e-9, lars_momentum=0, lars_exclude_lr_scale=1e-9)
    )
    from hfssl.training import SSLTrainingArguments

    check_ssl_training_arguments(SSLTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none"))


# ---- one end-to-end check per modality, through the recipes' flags --------------------------------
COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0", "--max_steps", "1"]


def _holds_no_model(output_dir) -> bool:
    return not any((output_dir / name).exists() for name in ("model.safetensors", "config.json", "checkpoint-1"))


def test_vision_config_overrides_out_of_range_fail_before_training(tmp_path):
    output = tmp_path / "simclr"
    with pytest.raises(ValueError, match=re.escape("SimCLRConfig.tau must be > 0 (the softmax temperature")):
        pretrain_vision.main([
            "--method", "simclr", "--backbone", "resnet-tiny", "--image_size", "16", "--config_overrides", "tau=-1",
            "--per_device_train_batch_size", "16", "--final_protocols", "", "--output_dir", str(output), *COMMON,
        ])  # fmt: skip
    assert _holds_no_model(output)


@pytest.fixture
def small_corpus(tmp_path, corpus_documents):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in corpus_documents[:30]))
    return path


def test_text_masking_flag_out_of_range_fails_before_training(tmp_path, small_corpus):
    output = tmp_path / "bert"
    with pytest.raises(ValueError, match=re.escape("BertPretrainingConfig.mlm_probability must be in (0, 1]")):
        pretrain_bert.main([
            "--train_file", str(small_corpus), "--validation_split_percentage", "0", "--mlm_probability", "1.5",
            "--vocab_size", "300", "--backbone_config_overrides", "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32",
            "--max_seq_length", "32", "--output_dir", str(output), *COMMON,
        ])  # fmt: skip
    assert _holds_no_model(output)


@pytest.mark.parametrize(
    "flag, value, expected",
    [("--window", "0", "Word2VecConfig.window must be an int >= 1"), ("--negative", "0", "Word2VecConfig.negative must be an int >= 1"),
     ("--sample", "1.5", "Word2VecConfig.sample must be in [0, 1)")],
)  # fmt: skip
def test_word2vec_flags_out_of_range_fail_before_training(tmp_path, small_corpus, flag, value, expected):
    output = tmp_path / "word2vec"
    with pytest.raises(ValueError, match=re.escape(expected)):
        pretrain_word2vec.main([
            "--train_file", str(small_corpus), "--min_count", "1", "--vector_size", "8", flag, value,
            "--output_dir", str(output), *COMMON,
        ])  # fmt: skip
    assert _holds_no_model(output)


@pytest.mark.parametrize(
    "recipe, flag, value, expected",
    [
        ("pretrain_vision", "--knn_max_train_samples", "0", "--knn_max_train_samples must be an int >= 1"),
        ("pretrain_vision", "--image_size", "0", "--image_size must be an int >= 1"),
        ("evaluate_vision", "--finetune_min_crop_scale", "0", "--finetune_min_crop_scale must be in (0, 1]"),
        ("evaluate_vision", "--image_size", "-3", "--image_size must be an int >= 1"),
        ("pretrain_gpt", "--generation_max_new_tokens", "0", "--generation_max_new_tokens must be an int >= 1"),
        ("pretrain_gpt", "--block_size", "1", "--block_size must be an int >= 2"),
        ("pretrain_bart", "--num_reconstructions", "-1", "--num_reconstructions must be an int >= 0"),
    ],
)
def test_recipe_flags_out_of_range_fail_while_parsing(tmp_path, recipe, flag, value, expected):
    module = importlib.import_module(recipe)
    extra = ["--model_name_or_path", str(tmp_path / "absent")] if recipe == "evaluate_vision" else []
    with pytest.raises(ValueError, match=re.escape(expected)):
        module.main([flag, value, *extra, "--output_dir", str(tmp_path / "run"), *COMMON])
    assert not (tmp_path / "run").exists()  # refused before anything was written
