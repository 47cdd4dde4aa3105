"""Wrong-modality evaluation: each evaluate recipe given a model of another kind says what kind it is and
which recipe takes it, before reading data or weights; the advised command gets past that recipe's checks."""

import re
import sys

import pytest
from conftest import REPO_ROOT, tiny_resnet_config
from transformers import AutoConfig, BertConfig, BertModel, GPT2Config, GPT2LMHeadModel, ViTConfig, ViTModel

from hfssl import BertPretrainingConfig, BertPretrainingModel, SimCLRConfig, SimCLRModel, Word2VecConfig, Word2VecModel
from hfssl.evaluation.model_kind import model_kind, require_model_kind
from hfssl.preprocessing import make_image_processor
from hfssl.tokenization import train_subword_tokenizer, train_word_level_tokenizer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import evaluate_text  # noqa: E402
import evaluate_vision  # noqa: E402
import evaluate_word2vec  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)

TINY_BERT = dict(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, max_position_embeddings=32
)
TINY_VIT = dict(
    hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=8, patch_size=4
)
COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true"]


@pytest.mark.parametrize(
    "model_type, kind",
    [("vit", "image"), ("resnet", "image"), ("convnext", "image"), ("dinov2", "image"), ("clip_vision_model", "image"),
     ("bert", "text"), ("gpt2", "text"), ("bart", "text"), ("t5", "text"), ("llama", "text"),
     ("clip", "image-text"), ("whisper", None), ("wav2vec2", None),
     ("hfssl_simclr", "image"), ("hfssl_bert", "text"), ("hfssl_bart", "text"), ("hfssl_gpt", "text"),
     ("hfssl_word2vec", "word vectors")],
)  # fmt: skip
def test_model_kind_from_the_config(model_type, kind):
    assert model_kind(AutoConfig.for_model(model_type)) == kind


@pytest.fixture(scope="module")
def saved(tmp_path_factory, corpus_documents):
    """Tiny saved models of every kind: plain transformers text and image models, hfssl checkpoints."""
    root = tmp_path_factory.mktemp("models")
    tokenizer = train_subword_tokenizer(corpus_documents[:20], "wordpiece", "bert", vocab_size=200)
    paths = {name: root / name for name in ("bert", "gpt2", "vit", "hfssl_bert", "simclr", "word2vec")}
    BertModel(BertConfig(vocab_size=len(tokenizer), **TINY_BERT)).save_pretrained(paths["bert"])
    tokenizer.save_pretrained(paths["bert"])
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=16, n_head=2)).save_pretrained(
        paths["gpt2"]
    )
    ViTModel(ViTConfig(**TINY_VIT)).save_pretrained(paths["vit"])
    bert = BertPretrainingModel(
        BertPretrainingConfig(backbone_config={"model_type": "bert", "vocab_size": len(tokenizer), **TINY_BERT})
    )
    bert.save_pretrained(paths["hfssl_bert"])
    tokenizer.save_pretrained(paths["hfssl_bert"])
    bert.export_backbone(paths["hfssl_bert"] / "backbone", tokenizer)
    simclr = SimCLRModel(
        SimCLRConfig(backbone_config=tiny_resnet_config(), projection_hidden_dim=8, projection_dim=4, image_size=16)
    )
    simclr.save_pretrained(paths["simclr"])
    make_image_processor(16, 3).save_pretrained(paths["simclr"])
    words = train_word_level_tokenizer(corpus_documents[:20], min_count=1)
    word2vec = Word2VecModel(Word2VecConfig(vocab_size=len(words), vector_size=4, unk_token_id=words.unk_token_id))
    word2vec.set_tokenizer(words)
    word2vec.save_pretrained(paths["word2vec"])
    return paths


def _refused(main, arguments, message):
    with pytest.raises(ValueError) as error:
        main([*arguments, *COMMON])
    assert message in str(error.value), str(error.value)
    return str(error.value)


@pytest.mark.parametrize(
    "name, message",
    [
        ("bert", "holds a 'bert' checkpoint, not an image one: it is a text model, which recipes/evaluate_vision.py "
                 "cannot evaluate; evaluate it with recipes/evaluate_text.py --model_name_or_path {path}."),
        ("gpt2", "holds a 'gpt2' checkpoint, not an image one: it is a text model"),
        ("hfssl_bert", "holds a 'hfssl_bert' checkpoint, not an image one: it is a text model, which recipes/"
                       "evaluate_vision.py cannot evaluate; evaluate the text model it exports with recipes/evaluate_text.py "
                       "--model_name_or_path {path}/backbone."),
        ("word2vec", "it is a word vectors model, which recipes/evaluate_vision.py cannot evaluate; evaluate it with "
                     "recipes/evaluate_word2vec.py --model_name_or_path {path}."),
    ],
    ids=["bert", "gpt2", "hfssl_bert", "word2vec"],
)  # fmt: skip
def test_evaluate_vision_refuses_a_text_or_word_vector_model(saved, tmp_path, name, message):
    path = saved[name]
    _refused(
        evaluate_vision.main,
        ["--model_name_or_path", str(path), "--max_train_samples", "20", "--max_eval_samples", "10", "--output_dir", str(tmp_path)],
        message.format(path=path),
    )  # fmt: skip
    assert not (tmp_path / "all_results.json").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("vit", "holds a 'vit' checkpoint, not a text one: it is an image model, which recipes/evaluate_text.py cannot "
                "evaluate; evaluate it with recipes/evaluate_vision.py --model_name_or_path {path}."),
        ("simclr", "holds a 'hfssl_simclr' checkpoint, not a text one: it is an image model, which recipes/"
                   "evaluate_text.py cannot evaluate; evaluate it with recipes/evaluate_vision.py --model_name_or_path {path}."),
        ("word2vec", "it is a word vectors model, which recipes/evaluate_text.py cannot evaluate; evaluate it with "
                     "recipes/evaluate_word2vec.py --model_name_or_path {path}."),
    ],
    ids=["vit", "simclr", "word2vec"],
)  # fmt: skip
def test_evaluate_text_refuses_an_image_or_word_vector_model(saved, tmp_path, name, message):
    path = saved[name]
    _refused(
        evaluate_text.main,
        ["--model_name_or_path", str(path), "--output_dir", str(tmp_path)],
        message.format(path=path),
    )
    assert not (tmp_path / "all_results.json").exists()


@pytest.mark.parametrize(
    "name, message",
    [
        ("bert", "holds a 'bert' checkpoint, not an hfssl word2vec one: it is a text model, which recipes/"
                 "evaluate_word2vec.py cannot evaluate; evaluate it with recipes/evaluate_text.py --model_name_or_path {path}."),
        ("simclr", "holds a 'hfssl_simclr' checkpoint, not an hfssl word2vec one: it is an image model"),
        ("vit", "holds a 'vit' checkpoint, not an hfssl word2vec one: it is an image model, which recipes/"
                "evaluate_word2vec.py cannot evaluate; evaluate it with recipes/evaluate_vision.py --model_name_or_path {path}."),
    ],
    ids=["bert", "simclr", "vit"],
)  # fmt: skip
def test_evaluate_word2vec_refuses_an_image_or_text_model(saved, tmp_path, name, message):
    path = saved[name]
    with pytest.raises(ValueError) as error:
        evaluate_word2vec.main(["--model_name_or_path", str(path), "--output_dir", str(tmp_path)])
    assert message.format(path=path) in str(error.value), str(error.value)
    assert not (tmp_path / "all_results.json").exists()


def test_the_advised_models_pass_the_advised_recipes_checks(saved):
    """The advice leads somewhere: each advised path is of the kind its recipe takes, and passes its checks."""
    for name, expected, recipe in [("hfssl_bert", "text", "evaluate_text.py"), ("simclr", "image", "evaluate_vision.py"),
                                   ("vit", "image", "evaluate_vision.py"), ("bert", "text", "evaluate_text.py"),
                                   ("word2vec", "word vectors", "evaluate_word2vec.py")]:  # fmt: skip
        with pytest.raises(ValueError) as error:
            require_model_kind(str(saved[name]), "text" if expected != "text" else "image", "x.py")
        advised = re.search(r"--model_name_or_path (\S+)\.$", str(error.value)).group(1)
        assert f"recipes/{recipe}" in str(error.value)
        require_model_kind(advised, expected, recipe)
    arguments = evaluate_text.TextEvaluationArguments(model_name_or_path=str(saved["hfssl_bert"] / "backbone"))
    evaluate_text.check_checkpoint(arguments)  # the exported text model passes evaluate_text.py's own checks
    evaluate_word2vec.load_checkpoint(str(saved["word2vec"]))


def test_the_advised_vision_evaluation_runs(saved, tmp_path):
    """An hfssl image checkpoint refused by evaluate_text.py runs in evaluate_vision.py as advised."""
    metrics = evaluate_vision.main([
        "--model_name_or_path", str(saved["simclr"]), "--protocol", "knn", "--max_train_samples", "40",
        "--max_eval_samples", "20", "--knn_k", "5", "--output_dir", str(tmp_path), *COMMON,
    ])  # fmt: skip
    assert 0 <= metrics["knn_accuracy"] <= 1
