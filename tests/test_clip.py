"""CLIP: the loss against the paper's pseudocode (2 processes against 1: tests/test_distributed.py), the model, its
exports, the processor, the image-text data, the zero-shot and retrieval metrics, short runs and resume."""

import json
import math
import sys

import datasets
import numpy as np
import pytest
import torch
from conftest import (
    REPO_ROOT,
    assert_save_load_round_trip,
    register_two_process_run,
    require_full_data,
    run_without_hfssl,
    stop_after,
    tiny_convnext_config,
)
from transformers import AutoModel, AutoProcessor, CLIPProcessor, CLIPTextConfig, CLIPVisionConfig

import hfssl
from hfssl.augment import EvalTransform
from hfssl.data.image_text import ImageTextCollator, ImageTextDataArguments, load_image_text_datasets
from hfssl.evaluation.zero_shot import (
    image_text_metrics,
    parse_templates,
    relevant_sets,
    retrieval_recall,
    zero_shot_accuracy,
    zero_shot_classifier,
)
from hfssl.losses import clip_loss
from hfssl.models.clip import CLIPPretrainingConfig, CLIPPretrainingModel
from hfssl.preprocessing import make_image_processor
from hfssl.tokenization import train_clip_tokenizer

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_clip  # noqa: E402

CAPTIONS = ["a red apple", "a green apple", "red heart", "a yellow banana", "two bananas", "a broken heart"] * 3


# ---- the loss ----------------------------------------------------------------------------------------------
def clip_loss_by_hand(images: np.ndarray, texts: np.ndarray, t: float) -> float:
    """Radford et al. 2021, figure 3, in numpy: normalise, logits = I_e T_e^T exp(t), symmetric cross entropy."""
    image_e = images / np.linalg.norm(images, axis=1, keepdims=True)
    text_e = texts / np.linalg.norm(texts, axis=1, keepdims=True)
    logits = image_e @ text_e.T * np.exp(t)
    n = len(logits)

    def cross_entropy(rows):  # the label of row i is i
        return np.mean([np.log(np.exp(row).sum()) - row[i] for i, row in enumerate(rows)])

    return (cross_entropy(logits) + cross_entropy(logits.T)) / 2 if n else 0.0


def test_clip_loss_is_the_papers_pseudocode_for_both_variants():
    generator = torch.Generator().manual_seed(0)
    images, texts = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    t = 1.3
    expected = clip_loss_by_hand(images.numpy(), texts.numpy(), t)
    for local in (False, True):
        loss = clip_loss(images, texts, torch.tensor(t).exp(), local_loss=local)
        assert abs(loss.item() - expected) < 1e-5


def test_clip_loss_is_low_when_pairs_match_and_high_when_they_are_shuffled():
    embeddings = torch.eye(6)
    matched = clip_loss(embeddings, embeddings, torch.tensor(50.0))
    shuffled = clip_loss(embeddings, embeddings.roll(1, dims=0), torch.tensor(50.0))
    assert matched.item() < 1e-6
    assert shuffled.item() > 40


def test_clip_loss_refuses_unpaired_shapes():
    with pytest.raises(ValueError, match="same shape"):
        clip_loss(torch.randn(4, 3), torch.randn(5, 3), torch.tensor(1.0))


# 2 processes against 1 on the concatenated batch, for the gathered loss and the local-loss variant, with equal and
# unequal per-process batches: tests/test_distributed.py (cases "clip_loss*", in its one process group).


# ---- the model ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    return train_clip_tokenizer(CAPTIONS, vocab_size=300)


def tiny_clip(tokenizer, vision=None, text=None, **overrides) -> CLIPPretrainingModel:
    torch.manual_seed(0)
    vision = vision or CLIPVisionConfig(
        image_size=16, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2
    )
    text = text or CLIPTextConfig(
        vocab_size=len(tokenizer), max_position_embeddings=32, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    config = CLIPPretrainingConfig(
        vision_config=vision, text_config=text, projection_dim=8, image_size=16, **overrides
    )
    return CLIPPretrainingModel(config)


def pairs(tokenizer, count: int = 6):
    generator = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (count, 3, 16, 16), dtype=torch.uint8, generator=generator)
    tokens = tokenizer(CAPTIONS[:count], padding=True, return_tensors="pt")
    return {"pixel_values": images, "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def test_the_model_registers_and_starts_at_the_papers_temperature(tokenizer):
    model = tiny_clip(tokenizer)
    assert hfssl.METHODS["clip"].modality == "image-text"
    assert hfssl.methods_of("image-text") == ["clip"]
    assert abs(model.logit_multiplier().item() - 1 / 0.07) < 1e-3
    assert model.visual_projection.bias is None and model.text_projection.bias is None


def test_the_forward_loss_is_clip_loss_of_the_projected_towers(tokenizer):
    model = tiny_clip(tokenizer)
    inputs = hfssl.METHODS["clip"].batch_transform(model, None)(pairs(tokenizer))
    assert inputs["pixel_values"].dtype == torch.float32 and inputs["pixel_values"].shape == (6, 3, 16, 16)
    output = model(**inputs)
    images = model.get_image_features(inputs["pixel_values"])
    texts = model.get_text_features(inputs["input_ids"], inputs["attention_mask"])
    torch.testing.assert_close(output.loss, clip_loss(images, texts, model.logit_multiplier()))
    output.loss.backward()
    for name in ("visual_projection.weight", "text_projection.weight", "logit_scale"):
        assert model.get_parameter(name).grad.abs().sum() > 0, name


def test_the_logit_multiplier_is_clamped_at_its_maximum_in_the_forward_and_after_each_step(tokenizer):
    model = tiny_clip(tokenizer)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(250.0))
    assert abs(model.logit_multiplier().item() - 100.0) < 1e-3
    model.after_optimizer_step(None)
    assert abs(model.logit_scale.item() - math.log(100.0)) < 1e-6
    with torch.no_grad():
        model.logit_scale.fill_(-1.0)
    model.after_optimizer_step(None)
    assert model.logit_scale.item() == 0.0  # the multiplier stays at least 1, as open_clip


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("projection_dim", 0, "projection_dim"),
        ("max_logit_scale", 0.0, "max_logit_scale"),
        ("logit_scale_init_value", math.log(200.0), "logit_scale_init_value"),
        ("min_crop_scale", 0.0, "min_crop_scale"),
        ("local_loss", "yes", "local_loss"),
    ],
)
def test_config_values_out_of_range_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message):
        CLIPPretrainingConfig(**{field: value})


def test_save_load_round_trip_and_auto_model(tokenizer, tmp_path):
    model = tiny_clip(tokenizer, local_loss=True)
    restored = assert_save_load_round_trip(model, tmp_path / "clip")
    assert restored.config.local_loss is True
    assert restored.config.has_clip_towers


def test_a_tower_without_a_pooled_vector_is_refused_naming_the_fix(tokenizer):
    from transformers import ResNetConfig

    vision = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    model = tiny_clip(tokenizer, vision=vision)
    with pytest.raises(ValueError, match="image tower returns no .B, D. pooler_output"):
        model.get_image_features(torch.zeros(1, 3, 16, 16))


# ---- exports and the processor -----------------------------------------------------------------------------
def save_processor(model, tokenizer, directory):
    processor = CLIPProcessor(image_processor=make_image_processor(model.config.image_size, 3), tokenizer=tokenizer)
    processor.save_pretrained(directory)
    return processor


def test_the_export_of_clip_towers_is_a_clip_model_that_runs_the_zero_shot_pipeline_without_hfssl(tokenizer, tmp_path):
    model = tiny_clip(tokenizer)
    with torch.no_grad():
        model.logit_scale.fill_(2.0)
    processor = CLIPProcessor(image_processor=make_image_processor(16, 3), tokenizer=tokenizer)
    model.export_dual_encoder(tmp_path / "export", processor)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    inputs = pairs(tokenizer, 2)
    pixels = EvalTransform(16, 3)(torch.from_numpy(image).permute(2, 0, 1)[None])
    with torch.no_grad():
        expected = {
            "image": model.get_image_features(pixels)[0].tolist(),
            "text": model.get_text_features(inputs["input_ids"][:1], inputs["attention_mask"][:1])[0].tolist(),
        }
    np.save(tmp_path / "image.npy", image)
    script = f"""
import json, sys, numpy as np, torch
from PIL import Image
from transformers import AutoModel, AutoProcessor, pipeline
model = AutoModel.from_pretrained(r"{tmp_path / "export"}")
assert type(model).__name__ == "CLIPModel", type(model)
processor = AutoProcessor.from_pretrained(r"{tmp_path / "export"}")
image = Image.fromarray(np.load(r"{tmp_path / "image.npy"}"))
inputs = processor(text=[{CAPTIONS[0]!r}], images=[image], return_tensors="pt", padding=True)
with torch.no_grad():
    image_embeds = model.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output[0]
    text_embeds = model.get_text_features(input_ids=inputs["input_ids"]).pooler_output[0]
expected = json.loads({json.dumps(json.dumps(expected))})
assert torch.allclose(image_embeds, torch.tensor(expected["image"]), atol=1e-4), (image_embeds, expected["image"])
assert torch.allclose(text_embeds, torch.tensor(expected["text"]), atol=1e-4)
assert abs(model.logit_scale.item() - 2.0) < 1e-6
classify = pipeline("zero-shot-image-classification", model=r"{tmp_path / "export"}")
scores = classify(image, candidate_labels=["a red apple", "two bananas", "a broken heart"])
assert sorted(s["label"] for s in scores) == ["a broken heart", "a red apple", "two bananas"]
assert abs(sum(s["score"] for s in scores) - 1) < 1e-5
assert "hfssl" not in sys.modules
print("ok")
"""
    assert "ok" in run_without_hfssl(script)


@pytest.mark.parametrize("vision_type", ["vit", "convnext"])
def test_other_towers_export_as_a_vision_text_dual_encoder_with_the_same_embeddings(tokenizer, tmp_path, vision_type):
    from transformers import AutoConfig, BertConfig, ViTConfig

    vision = (
        ViTConfig(image_size=16, patch_size=4, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2)
        if vision_type == "vit"
        else AutoConfig.for_model(**tiny_convnext_config())  # no hidden_size: the export gives it the pooled width
    )  # fmt: skip
    text = BertConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, max_position_embeddings=32)  # fmt: skip
    model = tiny_clip(tokenizer, vision=vision, text=text)
    assert not model.config.has_clip_towers
    exported = model.dual_encoder()
    assert type(exported).__name__ == "VisionTextDualEncoderModel"
    inputs = pairs(tokenizer, 3)
    pixels = EvalTransform(16, 3)(inputs["pixel_values"])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            exported.get_image_features(pixel_values=pixels).pooler_output, model.get_image_features(pixels)
        )
        torch.testing.assert_close(
            exported.get_text_features(
                input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
            ).pooler_output,
            model.get_text_features(inputs["input_ids"], inputs["attention_mask"]),
        )


def test_the_processor_round_trips_and_prepares_inputs_as_training_did(tokenizer, tmp_path):
    model = tiny_clip(tokenizer)
    save_processor(model, tokenizer, tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    batch = pairs(tokenizer, 4)
    collated = ImageTextCollator(tokenizer, 16, 16, 3)(
        [
            {"image": image.permute(1, 2, 0).numpy(), "caption": caption}
            for image, caption in zip(batch["pixel_values"], CAPTIONS)
        ]
    )
    prepared = processor(
        text=CAPTIONS[:4], images=[image.permute(1, 2, 0).numpy() for image in batch["pixel_values"]],
        return_tensors="pt", padding=True,
    )  # fmt: skip
    torch.testing.assert_close(prepared["input_ids"], collated["input_ids"])
    torch.testing.assert_close(
        prepared["pixel_values"], EvalTransform(16, 3)(collated["pixel_values"]), atol=1e-5, rtol=0
    )


def test_the_trained_tokenizer_is_clips_and_knows_every_byte(tokenizer):
    ids = tokenizer("a red apple, ☺ zebra!")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 1
    assert type(tokenizer).__name__ == "CLIPTokenizer"
    assert tokenizer.unk_token_id not in ids[1:-1]  # every byte, also ending a word, is in the vocabulary
    assert tokenizer.decode(ids, skip_special_tokens=True).replace(" ", "") == "aredapple,☺zebra!"


# ---- metrics -----------------------------------------------------------------------------------------------
def test_zero_shot_accuracy_against_a_hand_count():
    classifier = torch.eye(4)  # 4 classes, embeddings e0..e3: an image's scores are its coordinates
    images = torch.tensor([[1.0, 0.2, 0, 0], [0.1, 0, 1.0, 0.5], [0, 0, 0.3, 1.0], [0.9, 0, 0, 1.0]])
    # nearest classes: 0; 2 then 3; 3 then 2; 3 then 0: labels 0, 3, 3, 1 are right twice; top-5 needs 5 classes
    # balanced: class 0 right 1 of 1, class 1 right 0 of 1, class 3 right 1 of 2 -> (1 + 0 + 0.5) / 3
    expected = {"top_1_accuracy": 0.5, "balanced_accuracy": 0.5}
    assert zero_shot_accuracy(images, classifier, [0, 3, 3, 1]) == expected
    six = torch.cat([images, torch.zeros(4, 2)], dim=1)
    assert zero_shot_accuracy(six, torch.eye(6), [0, 3, 3, 1]) == {**expected, "top_5_accuracy": 1.0}


def test_retrieval_recall_against_a_hand_count_and_duplicate_captions_count_as_one_answer():
    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])  # caption 1 is nearest image 2 and vice versa
    result = retrieval_recall(images, texts, ["a", "b", "c"])
    assert result["image_to_text_recall@1"] == pytest.approx(1 / 3)
    assert result["text_to_image_recall@1"] == pytest.approx(1 / 3)
    duplicates = retrieval_recall(images, texts, ["a", "b", "b"])  # images 1 and 2 share a caption
    assert duplicates["image_to_text_recall@1"] == 1.0 and duplicates["text_to_image_recall@1"] == 1.0
    assert relevant_sets(["x", "y", "x"]) == [[0, 2], [1], [0, 2]]


def test_zero_shot_classifier_averages_normalised_prompts(tokenizer):
    model = tiny_clip(tokenizer).eval()
    templates = parse_templates("{}|a photo of {}.")
    classifier = zero_shot_classifier(model, tokenizer, ["apple", "heart"], templates)
    with torch.no_grad():
        prompts = tokenizer(["apple", "a photo of apple."], padding=True, return_tensors="pt")
        embeds = torch.nn.functional.normalize(model.get_text_features(**prompts), dim=1)
    torch.testing.assert_close(classifier[0], torch.nn.functional.normalize(embeds.mean(0), dim=0))
    metrics = image_text_metrics(torch.eye(2), torch.eye(2), ["x", "y"], {"fruit": (torch.eye(2), [0, 0])})
    assert metrics["zero_shot_fruit_classes"] == 2 and metrics["zero_shot_fruit_majority_share"] == 1.0


@pytest.mark.parametrize("templates", ["no placeholder", "{} and {}", "|"])
def test_templates_without_one_placeholder_are_refused(templates):
    with pytest.raises(ValueError, match="one '\\{\\}'"):
        parse_templates(templates)


# ---- data --------------------------------------------------------------------------------------------------
def test_emoji_captions_resolve_with_their_class_columns(shared_data):
    data = load_image_text_datasets(
        ImageTextDataArguments(train_dir=str(shared_data / "emoji-captions"), zero_shot_columns="group,subgroup")
    )
    assert set(data.train.column_names) == {"image", "caption", "group", "subgroup"}
    assert data.class_columns == ["group", "subgroup"]
    assert data.num_channels == 3 and data.image_size == 64
    assert len(data.eval) == math.ceil(0.1 * (len(data.train) + len(data.eval)))
    assert not set(data.train["caption"]) & set(data.eval["caption"])  # held-out emoji are never trained on


def test_the_builtin_default_is_captioned_digits_with_their_classes():
    data = load_image_text_datasets(ImageTextDataArguments(validation_split_percentage=10))
    assert data.class_columns == ["label"]
    row = data.train[0]
    assert row["caption"] == f"a handwritten digit {data.train.features['label'].names[row['label']]}"


def _image_rows(captions, **extra):
    images = [np.full((8, 8), 40 * i, dtype=np.uint8) for i in range(len(captions))]
    return datasets.Dataset.from_dict({"image": images, "caption": captions, **extra})


def _resolve(tmp_path, dataset, **arguments):
    dataset.save_to_disk(tmp_path / "pairs")
    return load_image_text_datasets(
        ImageTextDataArguments(dataset_name=str(tmp_path / "pairs"), validation_split_percentage=0, **arguments)
    )


def test_pairs_without_a_caption_are_dropped_and_counted(tmp_path, caplog):
    from datasets import DatasetDict

    dataset = DatasetDict({"train": _image_rows(["a", "", None, "  ", "b"])})
    dataset.save_to_disk(tmp_path / "pairs")
    with caplog.at_level("WARNING"):
        data = load_image_text_datasets(
            ImageTextDataArguments(dataset_name=str(tmp_path / "pairs"), validation_split_percentage=0)
        )
    assert data.train["caption"] == ["a", "b"]
    assert "3 of the 5 train pairs have no caption" in caplog.text


def test_a_missing_caption_column_lists_the_columns(tmp_path):
    from datasets import DatasetDict

    DatasetDict({"train": _image_rows(["a", "b"]).rename_column("caption", "words")}).save_to_disk(tmp_path / "p")
    with pytest.raises(ValueError, match=r"No caption column found: the dataset has columns \['image', 'words'\]"):
        load_image_text_datasets(ImageTextDataArguments(dataset_name=str(tmp_path / "p")))


def test_several_captions_per_image_are_refused_naming_the_fix(tmp_path):
    from datasets import DatasetDict

    rows = datasets.Dataset.from_dict({"image": [np.zeros((8, 8), np.uint8)] * 2, "caption": [["a", "b"], ["c"]]})
    DatasetDict({"train": rows}).save_to_disk(tmp_path / "p")
    with pytest.raises(ValueError, match="one caption string per image"):
        load_image_text_datasets(ImageTextDataArguments(dataset_name=str(tmp_path / "p")))


def test_idx_files_are_refused_for_they_hold_no_captions():
    with pytest.raises(ValueError, match="hold no captions"):
        ImageTextDataArguments(idx_dir="somewhere")


# ---- runs --------------------------------------------------------------------------------------------------
TINY_TOWERS = "hidden_size=32,num_hidden_layers=2,num_attention_heads=2,intermediate_size=64"
register_two_process_run(
    "clip",
    "pretrain_clip.py",
    lambda shared_data, output: [
        "--train_dir", str(shared_data / "emoji-captions"), "--zero_shot_columns", "group",
        "--vision_backbone_config_overrides", TINY_TOWERS, "--text_backbone_config_overrides", TINY_TOWERS,
        "--config_overrides", "local_loss=true,projection_dim=16", "--image_size", "16", "--vocab_size", "400",
        "--output_dir", str(output), "--per_device_train_batch_size", "4", "--max_steps", "3", "--save_strategy", "no",
        "--logging_steps", "1", "--per_device_eval_batch_size", "64", "--use_cpu", "--report_to", "none",
        "--disable_tqdm", "true", "--dataloader_num_workers", "0", "--seed", "0", "--validation_split_percentage", "20",
    ],
)  # fmt: skip


def test_a_two_process_run_trains_exports_and_evaluates(two_process_runs):
    output = two_process_runs["clip"]
    state = json.loads((output / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    results = json.loads((output / "all_results.json").read_text())
    for key in ("image_to_text_recall@1", "text_to_image_recall@5", "zero_shot_group_top_1_accuracy"):
        assert 0 <= results[key] <= 1, key
    assert (output / "retrieval_examples.png").is_file()
    assert "retrieval_examples.png" in (output / "README.md").read_text()
    assert type(AutoModel.from_pretrained(output / "dual_encoder")).__name__ == "CLIPModel"
    assert type(AutoModel.from_pretrained(output)).__name__ == "CLIPPretrainingModel"


def test_evaluate_clip_scores_the_export_and_the_checkpoint_as_pretraining_did(
    two_process_runs, shared_data, tmp_path
):
    """recipes/evaluate_clip.py on the 2-process run's transformers CLIPModel export and on its hfssl checkpoint, on
    the same held-out pairs: the figures pretraining wrote (there from 2 processes' gathered embeddings)."""
    import evaluate_clip

    output = two_process_runs["clip"]
    written = json.loads((output / "all_results.json").read_text())
    for model in (output / "dual_encoder", output):
        metrics = evaluate_clip.main([
            "--model_name_or_path", str(model), "--train_dir", str(shared_data / "emoji-captions"),
            "--zero_shot_columns", "group", "--validation_split_percentage", "20", "--output_dir", str(tmp_path),
        ])  # fmt: skip
        for key in ("image_to_text_recall@5", "text_to_image_recall@1", "zero_shot_group_top_1_accuracy"):
            assert metrics[key] == pytest.approx(written[key], abs=1e-6), (model, key)
    assert (tmp_path / "retrieval_examples.png").is_file()


def short_run(output_dir, *arguments, steps: int = 100):
    return pretrain_clip.main([
        *arguments, "--output_dir", str(output_dir), "--max_steps", str(steps), "--per_device_train_batch_size", "128",
        "--learning_rate", "1e-3", "--warmup_steps", "10", "--logging_steps", "10", "--save_strategy", "no",
        "--eval_strategy", "no", "--report_to", "none", "--use_cpu", "--disable_tqdm", "true",
        "--dataloader_num_workers", "0", "--seed", "0",
    ])  # fmt: skip


def test_a_short_run_on_emoji_captions_retrieves_held_out_emoji(tmp_path):
    """100 steps on 3,289 emoji (32 px, 4 x 4 patches): the 366 held-out emoji and their names find each other far
    above chance (recall@5 by chance: 1.4%) and far above the same towers at random init."""
    emoji = require_full_data("emoji-captions", "a run that learns needs the 3,655 emoji")
    metrics = short_run(
        tmp_path, "--train_dir", str(emoji), "--zero_shot_columns", "group", "--image_size", "32",
        "--vision_backbone_config_overrides", "patch_size=8",
    )  # fmt: skip
    chance = 5 / metrics["retrieval_candidates"]
    for direction in ("image_to_text", "text_to_image"):
        assert metrics[f"{direction}_recall@5"] > 10 * chance, direction
        assert metrics[f"{direction}_recall@5"] > metrics[f"random_init_{direction}_recall@5"] + 0.2, direction


def test_a_short_run_on_captioned_digits_classifies_held_out_digits_zero_shot(tmp_path):
    """The built-in captioned digits: zero-shot over the ten digit names, prompted as the captions read, classifies
    held-out digits far above the 10% of guessing and the same towers at random init."""
    metrics = short_run(
        tmp_path,
        "--vision_backbone_config_overrides",
        "patch_size=4",
        "--zero_shot_templates",
        "a handwritten digit {}",
    )
    assert metrics["zero_shot_label_top_1_accuracy"] > 0.6
    assert metrics["zero_shot_label_balanced_accuracy"] > 0.6
    assert metrics["random_init_zero_shot_label_top_1_accuracy"] < 0.3


def test_a_resumed_run_equals_the_uninterrupted_one_and_takes_the_checkpoints_tokenizer(
    tokenizer, tmp_path, monkeypatch
):
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    arguments = [
        "--tokenizer_name", str(tmp_path / "tokenizer"), "--vision_backbone_config_overrides", TINY_TOWERS,
        "--text_backbone_config_overrides", TINY_TOWERS, "--config_overrides", "projection_dim=16",
        "--image_size", "16", "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2",
        "--per_device_train_batch_size", "16", "--learning_rate", "1e-3", "--logging_steps", "1", "--baselines",
        "false", "--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
        "--seed", "0",
    ]  # fmt: skip
    pretrain_clip.main([*arguments, "--output_dir", str(tmp_path / "straight")])

    class StoppedAfterTwoSteps(pretrain_clip.SSLTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.add_callback(stop_after(2))

    with monkeypatch.context() as patch:
        patch.setattr(pretrain_clip, "SSLTrainer", StoppedAfterTwoSteps)
        pretrain_clip.main([*arguments, "--output_dir", str(tmp_path / "interrupted")])
    pretrain_clip.main([*arguments, "--output_dir", str(tmp_path / "interrupted"), "--resume_from_checkpoint", "true"])
    expected = AutoModel.from_pretrained(tmp_path / "straight").state_dict()
    for name, value in AutoModel.from_pretrained(tmp_path / "interrupted").state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=1e-6, msg=name)

    class Resuming:  # what load_or_train_tokenizer reads of the training arguments
        resume_from_checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")
        output_dir = str(tmp_path / "interrupted")

    resumed = pretrain_clip.load_or_train_tokenizer(pretrain_clip.ModelArguments(), Resuming(), None)
    assert resumed.get_vocab() == tokenizer.get_vocab()


def test_a_tokenizer_that_does_not_end_captions_with_the_pooled_token_is_refused(tokenizer):
    from hfssl.models.clip.configuration_clip import check_tokenizer_fits
    from hfssl.tokenization import train_subword_tokenizer

    bert_tokenizer = train_subword_tokenizer(CAPTIONS, "wordpiece", "bert", vocab_size=200)  # ends with [SEP]
    model = tiny_clip(bert_tokenizer)
    model.config.text_config.eos_token_id = bert_tokenizer.sep_token_id
    with pytest.raises(ValueError, match="pools each caption at its first end-of-text token"):
        check_tokenizer_fits(model.config, bert_tokenizer)
    check_tokenizer_fits(tiny_clip(tokenizer).config, tokenizer)  # a CLIP tokenizer fits


def test_a_roberta_text_tower_reads_captions_of_the_full_length(tokenizer):
    """RoBERTa numbers positions from pad_token_id + 1: the recipe leaves room for a caption cut at max_seq_length."""
    arguments = pretrain_clip.ModelArguments(text_backbone="roberta", text_backbone_config_overrides=TINY_TOWERS)
    text = pretrain_clip.text_tower_config(arguments, None, tokenizer, max_seq_length=12)
    model = tiny_clip(tokenizer, text=text)
    tokens = tokenizer([" ".join(CAPTIONS)], truncation=True, max_length=12, return_tensors="pt")
    assert tokens["input_ids"].shape == (1, 12)
    assert model.get_text_features(**tokens).shape == (1, 8)
