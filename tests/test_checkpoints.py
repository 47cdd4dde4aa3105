"""Resume dead ends: a damaged checkpoint names the file and offers the previous one; a checkpoint of another
architecture names the config keys that differ. Per modality (vision, text, word vectors), on checkpoints
written by hand (the function) and by the recipes (end to end)."""

import json
import os
import shutil
import sys

import pytest
import torch
from conftest import REPO_ROOT, tiny_resnet_config, tiny_vit_config

from hfssl import BertPretrainingConfig, BertPretrainingModel, SimCLRConfig, SimCLRModel, Word2VecConfig, Word2VecModel
from hfssl.training.checkpoints import check_resume_checkpoint, load_checkpoint_weights, safetensors_problem

sys.path.insert(0, str(REPO_ROOT / "recipes"))
import pretrain_bert  # noqa: E402
import pretrain_vision  # noqa: E402
import pretrain_word2vec  # noqa: E402

TINY_RESNET = dict(model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
TINY_BERT = dict(model_type="bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 vocab_size=50, max_position_embeddings=32)  # fmt: skip

MODELS = {
    "vision": lambda **values: SimCLRModel(
        SimCLRConfig(
            backbone_config={**TINY_RESNET, **values.pop("backbone", {})},
            projection_hidden_dim=8,
            projection_dim=4,
            **values,
        )  # fmt: skip
    ),
    "text": lambda **values: BertPretrainingModel(
        BertPretrainingConfig(backbone_config={**TINY_BERT, **values.pop("backbone", {})}, **values)
    ),
    "word vectors": lambda **values: Word2VecModel(Word2VecConfig(**{"vocab_size": 20, "vector_size": 4, **values})),
}
MODALITIES = list(MODELS)


def write_checkpoint(output_dir, step: int, model, **save_options) -> str:
    """A checkpoint as Trainer writes one: weights, config, optimizer, scheduler, RNG state, trainer state."""
    path = os.path.join(output_dir, f"checkpoint-{step}")
    model.save_pretrained(path, **save_options)
    torch.save({"state": {}, "param_groups": []}, os.path.join(path, "optimizer.pt"))
    torch.save({"last_epoch": step}, os.path.join(path, "scheduler.pt"))
    torch.save({"python": None, "cpu": torch.get_rng_state()}, os.path.join(path, "rng_state.pth"))
    with open(os.path.join(path, "trainer_state.json"), "w") as handle:
        json.dump({"global_step": step, "log_history": []}, handle)
    return path


def snapshot(directory) -> dict:
    """Every file under ``directory`` with its size and bytes' hash: to show that a refused resume changed nothing."""
    return {
        os.path.relpath(os.path.join(root, name), directory): hash(open(os.path.join(root, name), "rb").read())
        for root, _, names in os.walk(directory)
        for name in names
    }


def truncate(path) -> None:
    os.truncate(path, os.path.getsize(path) // 2)


def empty(path) -> None:
    open(path, "wb").close()


def garbage_header(path) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"\xff" * 64)


DAMAGES = {"truncated": truncate, "empty": empty, "garbage header": garbage_header}
DAMAGE_MESSAGES = {
    "truncated": "model.safetensors is truncated",
    "empty": "model.safetensors is empty (0 bytes)",
    "garbage header": "model.safetensors is truncated or not a safetensors file",
}


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_complete_checkpoint_of_the_same_model_passes(tmp_path, modality):
    model = MODELS[modality]()
    check_resume_checkpoint(write_checkpoint(tmp_path, 2, model), model)


@pytest.mark.parametrize("damage", DAMAGES)
@pytest.mark.parametrize("modality", MODALITIES)
def test_damaged_weights_name_the_file_and_offer_the_previous_checkpoint(tmp_path, modality, damage):
    model = MODELS[modality]()
    previous = write_checkpoint(tmp_path, 1, model)
    last = write_checkpoint(tmp_path, 2, model)
    DAMAGES[damage](os.path.join(last, "model.safetensors"))
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        check_resume_checkpoint(last, model)
    message = str(error.value)
    assert f"Cannot resume from {last}: {os.path.join(last, DAMAGE_MESSAGES[damage])}" in message, message
    assert f"resume from it with --resume_from_checkpoint {previous}" in message, message
    assert snapshot(tmp_path) == before  # nothing was lost: the check reads, it never writes or deletes
    check_resume_checkpoint(previous, model)  # the one offered is good
    type(model).from_pretrained(previous)


def test_the_offer_skips_damaged_checkpoints_and_says_when_there_is_none(tmp_path):
    model = MODELS["vision"]()
    first, second, third = (write_checkpoint(tmp_path, step, model) for step in (5, 10, 15))
    truncate(os.path.join(third, "model.safetensors"))
    empty(os.path.join(second, "optimizer.pt"))
    with pytest.raises(ValueError, match=f"The previous checkpoint, {first}, is complete"):
        check_resume_checkpoint(third, model)
    truncate(os.path.join(first, "model.safetensors"))
    with pytest.raises(ValueError, match=f"No earlier checkpoint in {tmp_path} is complete"):
        check_resume_checkpoint(third, model)


def test_missing_or_damaged_state_files_are_named(tmp_path):
    model = MODELS["text"]()
    write_checkpoint(tmp_path, 1, model)
    last = write_checkpoint(tmp_path, 2, model)
    os.remove(os.path.join(last, "optimizer.pt"))
    truncate(os.path.join(last, "rng_state.pth"))
    with open(os.path.join(last, "trainer_state.json"), "w") as handle:
        handle.write('{"global_step": 2, "log_hist')
    with pytest.raises(ValueError) as error:
        check_resume_checkpoint(last, model)
    message = str(error.value)
    assert f"{last}/trainer_state.json is not valid JSON" in message
    assert f"{last}/optimizer.pt is missing, so the optimizer would restart from scratch" in message
    assert f"{last}/rng_state.pth is truncated or damaged" in message
    assert f"--resume_from_checkpoint {tmp_path}/checkpoint-1" in message


def test_sharded_safetensors_are_checked_shard_by_shard(tmp_path):
    model = MODELS["vision"]()
    last = write_checkpoint(tmp_path, 2, model, max_shard_size="20KB")
    shards = sorted(name for name in os.listdir(last) if name.startswith("model-") and name.endswith(".safetensors"))
    assert len(shards) > 1 and os.path.isfile(os.path.join(last, "model.safetensors.index.json"))
    check_resume_checkpoint(last, model)
    truncate(os.path.join(last, shards[1]))
    os.remove(os.path.join(last, shards[0]))
    with pytest.raises(ValueError) as error:
        check_resume_checkpoint(last, model)
    assert f"{last}/{shards[0]} is missing (the index names it)" in str(error.value)
    assert f"{last}/{shards[1]} is truncated" in str(error.value)
    assert "No earlier checkpoint" in str(error.value)


def test_safetensors_header_checks_read_no_tensor(tmp_path):
    model = MODELS["word vectors"]()
    model.save_pretrained(tmp_path)
    path = tmp_path / "model.safetensors"
    assert safetensors_problem(str(path)) is None
    with open(path, "ab") as handle:
        handle.write(b"\0" * 10)
    assert (
        safetensors_problem(str(path))
        == "has 10 bytes more than its header accounts for (not the file that was saved)"
    )


MISMATCHES = {
    "vision": (dict(backbone=dict(hidden_sizes=[8, 32]), tau=0.2), [
        "backbone_config.hidden_sizes: checkpoint [8, 16], this run [8, 32]", "tau: checkpoint 0.1, this run 0.2"]),
    "text": (dict(backbone=dict(hidden_size=32, num_attention_heads=4)), [
        "backbone_config.hidden_size: checkpoint 16, this run 32", "backbone_config.num_attention_heads: checkpoint 2, this run 4"]),
    "word vectors": (dict(vector_size=8, window=3), [
        "vector_size: checkpoint 4, this run 8", "window: checkpoint 5, this run 3"]),
}  # fmt: skip


@pytest.mark.parametrize("modality", MODALITIES)
def test_a_checkpoint_of_another_architecture_names_the_keys_that_differ(tmp_path, modality):
    values, lines = MISMATCHES[modality]
    last = write_checkpoint(tmp_path, 2, MODELS[modality]())
    before = snapshot(tmp_path)
    with pytest.raises(ValueError) as error:
        check_resume_checkpoint(last, MODELS[modality](**values))
    message = str(error.value)
    assert message.startswith(
        f"Cannot resume from {last}: this run's model config differs from the checkpoint's in 2 keys:"
    )
    for line in lines:
        assert f"\n  {line}\n" in message, message
    assert "Resume with the flags of the run that wrote it" in message and "new --output_dir" in message
    assert snapshot(tmp_path) == before


def test_bookkeeping_keys_do_not_count_and_old_configs_are_compared_as_saved(tmp_path):
    model = MODELS["vision"]()
    last = write_checkpoint(tmp_path, 2, model)
    config_path = os.path.join(last, "config.json")
    saved = json.loads(open(config_path).read())
    saved.update(transformers_version="4.0.0", architectures=["Other"], _name_or_path="elsewhere", dtype="float16")
    saved["backbone_config"].update(transformers_version="4.0.0", id2label={"0": "a"}, label2id={"a": 0})
    open(config_path, "w").write(json.dumps(saved))
    check_resume_checkpoint(last, model)
    # a value today's ranges refuse: the config cannot be rebuilt, so the saved keys are compared as they are
    open(config_path, "w").write(json.dumps({**saved, "tau": -1}))
    with pytest.raises(ValueError, match=r"\n  tau: checkpoint -1, this run 0.1\n"):
        check_resume_checkpoint(last, model)
    open(config_path, "w").write(json.dumps({**saved, "model_type": "hfssl_bert"}))
    with pytest.raises(ValueError, match=r'\n  model_type: checkpoint "hfssl_bert", this run "hfssl_simclr"\n'):
        check_resume_checkpoint(last, model)


# ---- end to end: the recipes write the checkpoints, then resume ------------------------------------
COMMON = ["--use_cpu", "--report_to", "none", "--disable_tqdm", "true", "--seed", "0", "--dataloader_num_workers", "0",
          "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1"]  # fmt: skip


def vision_arguments(output, backbone_overrides="embedding_size=8,hidden_sizes=[8,16],depths=[1,1],layer_type=basic"):
    return [
        "--method", "simclr", "--backbone", "resnet", "--backbone_config_overrides", backbone_overrides,
        "--config_overrides", "projection_hidden_dim=16,projection_dim=8", "--image_size", "16",
        "--per_device_train_batch_size", "16", "--final_protocols", "", "--baselines", "false",
        "--output_dir", str(output), *COMMON,
    ]  # fmt: skip


@pytest.fixture
def small_corpus(tmp_path, corpus_documents):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"text": text}) + "\n" for text in corpus_documents[:30]))
    return path


def text_arguments(output, corpus, hidden_size=16):
    overrides = f"hidden_size={hidden_size},num_hidden_layers=1,num_attention_heads=2,intermediate_size=32"
    return [
        "--train_file", str(corpus), "--validation_split_percentage", "0", "--vocab_size", "300",
        "--backbone_config_overrides", overrides, "--max_seq_length", "32", "--per_device_train_batch_size", "4",
        "--output_dir", str(output), *COMMON,
    ]  # fmt: skip


def word2vec_arguments(output, corpus, vector_size=8):
    return [
        "--train_file", str(corpus), "--min_count", "1", "--vector_size", str(vector_size),
        "--per_device_train_batch_size", "4", "--output_dir", str(output), *COMMON,
    ]  # fmt: skip


RECIPES = {
    "vision": (pretrain_vision, lambda output, corpus, **kw: vision_arguments(output, **kw),
               dict(backbone_overrides="embedding_size=8,hidden_sizes=[8,32],depths=[1,1],layer_type=basic"),
               "backbone_config.hidden_sizes: checkpoint [8, 16], this run [8, 32]"),
    "text": (pretrain_bert, text_arguments, dict(hidden_size=32), "backbone_config.hidden_size: checkpoint 16, this run 32"),
    "word vectors": (pretrain_word2vec, word2vec_arguments, dict(vector_size=16), "vector_size: checkpoint 8, this run 16"),
}  # fmt: skip


def _checkpoints(output) -> list[str]:
    return sorted(name for name in os.listdir(output) if name.startswith("checkpoint-"))


@pytest.mark.parametrize("modality", MODALITIES)
def test_resuming_from_a_truncated_checkpoint_names_the_file_and_the_previous_one(tmp_path, small_corpus, modality):
    recipe, arguments, _, _ = RECIPES[modality]
    output = tmp_path / "run"
    recipe.main([*arguments(output, small_corpus), "--max_steps", "2"])
    assert _checkpoints(output) == ["checkpoint-1", "checkpoint-2"]
    truncate(output / "checkpoint-2" / "model.safetensors")
    before = snapshot(output)
    with pytest.raises(ValueError) as error:
        recipe.main([*arguments(output, small_corpus), "--max_steps", "4", "--resume_from_checkpoint", "true"])
    message = str(error.value)
    assert f"{output / 'checkpoint-2' / 'model.safetensors'} is truncated" in message, message
    assert f"--resume_from_checkpoint {output / 'checkpoint-1'}" in message, message
    assert snapshot(output) == before  # nothing lost: no checkpoint or model was written over
    recipe.main(
        [
            *arguments(output, small_corpus),
            "--max_steps",
            "3",
            "--resume_from_checkpoint",
            str(output / "checkpoint-1"),
        ]
    )
    assert json.loads((output / "trainer_state.json").read_text())["global_step"] == 3  # the offered way out works


@pytest.mark.parametrize("modality", MODALITIES)
def test_resuming_with_other_architecture_flags_names_the_keys(tmp_path, small_corpus, modality):
    recipe, arguments, other, line = RECIPES[modality]
    output = tmp_path / "run"
    recipe.main([*arguments(output, small_corpus), "--max_steps", "1"])
    before = snapshot(output)
    with pytest.raises(ValueError) as error:
        recipe.main(
            [*arguments(output, small_corpus, **other), "--max_steps", "2", "--resume_from_checkpoint", "true"]
        )
    message = str(error.value)
    assert f"Cannot resume from {output / 'checkpoint-1'}: this run's model config differs" in message, message
    assert f"\n  {line}\n" in message, message
    assert snapshot(output) == before
    shutil.rmtree(output / "checkpoint-1")


def test_resuming_renames_a_vits_original_format_keys_and_refuses_weights_of_another_model(tmp_path):
    heads = dict(projection_hidden_dim=8, projection_dim=4, image_size=16)
    torch.manual_seed(0)
    saved = SimCLRModel(SimCLRConfig(backbone_config=tiny_vit_config(), **heads))
    saved.save_pretrained(tmp_path / "vit")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "vit" / "model.safetensors"), "pt") as handle:  # written under ViT's original names
        assert any(".encoder.layer.0.attention.attention.query." in key for key in handle.keys())
    torch.manual_seed(1)
    resumed = SimCLRModel(SimCLRConfig(backbone_config=tiny_vit_config(), **heads))
    load_checkpoint_weights(resumed, str(tmp_path / "vit"))
    expected = saved.state_dict()
    for name, value in resumed.state_dict().items():  # every layer restored, none left at its initial weights
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
    other = SimCLRModel(SimCLRConfig(backbone_config=tiny_resnet_config(), **heads))
    with pytest.raises(ValueError, match="do not fit this run's SimCLRModel.*--backbone"):
        load_checkpoint_weights(other, str(tmp_path / "vit"))


def test_load_best_model_at_end_restores_every_vit_weight(tmp_path):
    from conftest import collate_pixels, random_image_rows, short_run_arguments
    from safetensors.torch import load_file
    from transformers import AutoModel

    import hfssl
    from hfssl.training import SSLTrainer

    torch.manual_seed(0)
    model = SimCLRModel(
        SimCLRConfig(backbone_config=tiny_vit_config(8, 1), projection_hidden_dim=8, projection_dim=4, image_size=8)
    )
    rows = random_image_rows(count=32, size=8, channels=1)
    args = short_run_arguments(
        tmp_path, max_steps=4, eval_strategy="steps", eval_steps=1, save_strategy="steps", save_steps=1,
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
    )  # fmt: skip
    trainer = SSLTrainer(
        model=model, args=args, train_dataset=rows, eval_dataset=rows.select(range(16)), data_collator=collate_pixels,
        batch_transform=hfssl.METHODS["simclr"].batch_transform(model, None),
    )  # fmt: skip
    trainer.train()
    best = trainer.state.best_model_checkpoint
    assert best is not None and any("encoder.layer" in key for key in load_file(f"{best}/model.safetensors"))
    expected = AutoModel.from_pretrained(best).state_dict()
    for name, value in trainer.model.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=name)
