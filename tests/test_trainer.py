import pytest
import torch
from conftest import stop_after, tiny_resnet_config, tiny_vit_config

from hfssl import SimCLRConfig, SimCLRModel
from hfssl.augment import EvalTransform
from hfssl.data import ImageCollator, VisionDataArguments, load_vision_datasets
from hfssl.models.simclr import simclr_batch_transform
from hfssl.training import LARS, SSLTrainer, SSLTrainingArguments, decay_parameter_names, effective_rank, embedding_std

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)


@pytest.fixture(scope="module")
def digits():
    return load_vision_datasets(VisionDataArguments(dataset_name="builtin:digits"))


def make_trainer(output_dir, digits, **overrides):
    torch.manual_seed(0)
    model = SimCLRModel(
        SimCLRConfig(
            backbone_config=tiny_resnet_config(), projection_hidden_dim=32, projection_dim=16, tau=0.5, image_size=16
        )
    )
    defaults = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        learning_rate=1e-3,
        max_steps=4,
        logging_steps=1,
        save_steps=2,
        save_strategy="steps",
        report_to="none",
        seed=7,
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    args = SSLTrainingArguments(**{**defaults, **overrides})
    return SSLTrainer(
        model=model,
        args=args,
        train_dataset=digits.train,
        eval_dataset=digits.eval,
        data_collator=ImageCollator(image_size=16),
        batch_transform=simclr_batch_transform(model),
        feature_transform=EvalTransform(16, 3),
        knn_train_dataset=digits.train,
    )


@pytest.mark.parametrize(
    "options",
    [
        {},
        {
            "per_device_train_batch_size": 16,
            "gradient_accumulation_steps": 2,
            "eval_strategy": "steps",
            "eval_steps": 1,
        },
    ],
    ids=["plain", "accumulation-and-evaluation"],
)
def test_resume_reproduces_the_uninterrupted_run(tmp_path, digits, options):
    straight = make_trainer(tmp_path / "straight", digits, **options)
    straight.train()
    interrupted = make_trainer(tmp_path / "interrupted", digits, **options)
    interrupted.add_callback(stop_after(2))  # as if the job were killed after the checkpoint at step 2
    interrupted.train()
    checkpoint = str(tmp_path / "interrupted" / "checkpoint-2")  # a run in a folder with checkpoints must resume
    resumed = make_trainer(tmp_path / "interrupted", digits, **options, resume_from_checkpoint=checkpoint)
    resumed.train(resume_from_checkpoint=checkpoint)
    expected, actual = straight.model.state_dict(), resumed.model.state_dict()
    assert any(
        not torch.equal(expected[k], interrupted.model.state_dict()[k]) for k in expected
    )  # steps 3-4 changed weights
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=0, atol=1e-6)


def test_channels_last_trains_the_same_model_and_saves_standard_weights(tmp_path, digits):
    default_layout = make_trainer(tmp_path / "default", digits, save_strategy="no")
    default_layout.train()
    channels_last = make_trainer(tmp_path / "channels-last", digits, save_strategy="no", channels_last=True)
    stem = channels_last.model.backbone.embedder.embedder.convolution
    assert stem.weight.is_contiguous(memory_format=torch.channels_last) and not stem.weight.is_contiguous()
    view_layouts = []
    stem.register_forward_pre_hook(
        lambda module, inputs: view_layouts.append(inputs[0].is_contiguous(memory_format=torch.channels_last))
    )
    channels_last.train()
    assert len(view_layouts) == 4 and all(
        view_layouts
    )  # one backbone pass a step (both views), in channels-last format
    assert stem.weight.is_contiguous(memory_format=torch.channels_last)  # the optimizer kept the layout
    expected = default_layout.model.state_dict()
    for key, value in channels_last.model.state_dict().items():  # the same 4 steps up to float rounding
        torch.testing.assert_close(value, expected[key], rtol=1e-3, atol=1e-4)
    channels_last.save_model()
    reloaded = SimCLRModel.from_pretrained(tmp_path / "channels-last")
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, channels_last.model.state_dict()[key])


def test_channels_last_applies_to_models_built_by_model_init(tmp_path, digits):
    trainer = make_trainer(tmp_path, digits, save_strategy="no", max_steps=1, channels_last=True)
    trainer.model_init = lambda: SimCLRModel(trainer.model.config)
    trainer.train()  # Trainer rebuilds the model through model_init
    assert trainer.model.backbone.embedder.embedder.convolution.weight.is_contiguous(memory_format=torch.channels_last)


def test_logs_carry_loss_learning_rate_and_collapse_monitors(tmp_path, digits):
    trainer = make_trainer(tmp_path, digits, save_strategy="no")
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log]
    assert len(train_logs) == 4
    for log in train_logs:
        assert {"learning_rate", "embedding_std", "embedding_rank", "feature_rank"} <= log.keys()
        assert 0 < log["embedding_std"] <= 1 and 1 <= log["embedding_rank"] <= 16


def test_evaluation_reports_loss_and_knn_accuracy(tmp_path, digits):
    trainer = make_trainer(tmp_path, digits, save_strategy="no", max_steps=1)
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] > 0
    assert 0.1 < metrics["eval_knn_accuracy"] <= 1.0  # digits: even random features beat chance (0.1)
    # kNN's loaders are prepared once (accelerate keeps every prepared loader) and give the same figure again
    assert trainer.feature_dataloader(digits.eval) is trainer.feature_dataloader(digits.eval)
    assert trainer.evaluate()["eval_knn_accuracy"] == metrics["eval_knn_accuracy"]


def test_weight_decay_groups_exclude_norms_and_biases(tmp_path, digits):
    trainer = make_trainer(tmp_path, digits, weight_decay=0.1)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    decayed = {
        names[id(p)] for group in optimizer.param_groups if group["weight_decay"] == 0.1 for p in group["params"]
    }
    not_decayed = {
        names[id(p)] for group in optimizer.param_groups if group["weight_decay"] == 0.0 for p in group["params"]
    }
    assert decayed | not_decayed == set(names.values()) and not decayed & not_decayed
    assert "backbone.embedder.embedder.convolution.weight" in decayed  # a conv kernel
    assert "projection_head.layers.0.weight" in decayed  # a linear weight
    assert "backbone.embedder.embedder.normalization.weight" in not_decayed  # BatchNorm2d scale
    assert "projection_head.layers.1.weight" in not_decayed  # BatchNorm1d scale
    assert "projection_head.layers.3.bias" in not_decayed  # a bias
    vit = SimCLRModel(SimCLRConfig(backbone_config=tiny_vit_config(), projection_hidden_dim=32, projection_dim=16))
    vit_decayed = set(decay_parameter_names(vit))
    assert (
        "backbone.embeddings.cls_token" not in vit_decayed
        and "backbone.embeddings.position_embeddings" not in vit_decayed
    )
    assert "backbone.layers.0.attention.q_proj.weight" in vit_decayed


def test_lars_trust_ratio_and_exclusion():
    weight = torch.nn.Parameter(torch.tensor([3.0, 4.0]))  # ||w|| = 5
    bias = torch.nn.Parameter(torch.tensor([1.0]))
    optimizer = LARS(
        [{"params": [weight], "weight_decay": 0.0}, {"params": [bias], "weight_decay": 0.0, "lars_exclude": True}],
        lr=1.0,
        momentum=0.0,
        eta=0.1,
    )
    weight.grad = torch.tensor([0.0, 10.0])  # ||g|| = 10 -> trust = 0.1 * 5 / 10 = 0.05
    bias.grad = torch.tensor([2.0])
    optimizer.step()
    torch.testing.assert_close(weight.detach(), torch.tensor([3.0, 3.5]))
    torch.testing.assert_close(bias.detach(), torch.tensor([-1.0]))  # plain SGD


def test_lars_with_an_adamw_scale_learning_rate_is_flagged(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="hfssl.training.arguments"):
        SSLTrainingArguments(
            output_dir=str(tmp_path), use_lars=True, learning_rate=1.2, use_cpu=True, report_to="none"
        )
        SSLTrainingArguments(output_dir=str(tmp_path), use_lars=True, learning_rate=0.03, per_device_train_batch_size=32,
                             use_cpu=True, report_to="none")  # fmt: skip  # SimCLR's rate for a batch of 32 is 0.0375
        assert caplog.text == ""
        SSLTrainingArguments(output_dir=str(tmp_path), use_lars=True, learning_rate=1e-3, per_device_train_batch_size=256,
                             gradient_accumulation_steps=2, use_cpu=True, report_to="none")  # fmt: skip
    assert "SimCLR-scale rates" in caplog.text and "0.6 for a global batch of 512" in caplog.text


def test_lars_is_used_when_asked(tmp_path, digits):
    trainer = make_trainer(
        tmp_path, digits, use_lars=True, weight_decay=1e-4, save_strategy="no", max_steps=4, learning_rate=0.2,
        lars_exclude_lr_scale=0.024, lr_scheduler_type="cosine", warmup_steps=0,
    )  # fmt: skip
    trainer.train()
    optimizer = trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer") else trainer.optimizer
    assert isinstance(optimizer, LARS)
    # Barlow Twins' setting: biases and norms at 0.0048 beside the weights' 0.2, the ratio kept by the schedule
    decayed, excluded = optimizer.param_groups
    assert (decayed["initial_lr"], excluded["initial_lr"]) == pytest.approx((0.2, 0.0048))
    assert excluded["lars_exclude"] and excluded["weight_decay"] == 0.0
    assert decayed["lr"] < 0.2 and excluded["lr"] == pytest.approx(decayed["lr"] * 0.024)  # cosine, 4 steps in


def test_collapse_monitors():
    collapsed = torch.ones(64, 8) + 1e-4 * torch.randn(64, 8)
    spread = torch.randn(4096, 8)
    assert embedding_std(collapsed) < 1e-3
    assert abs(embedding_std(spread) - 8**-0.5) < 0.02
    assert effective_rank(collapsed) < 1.1
    assert effective_rank(spread) > 7.5


def test_collapse_warning_names_the_cause_once_per_run(tmp_path, digits, caplog):
    trainer = make_trainer(tmp_path, digits, save_strategy="no", learning_rate=1e-9)
    head = trainer.model.projection_head.layers[-1]
    with torch.no_grad():  # every image projects onto the bias: complete collapse
        head.weight.zero_()
        head.bias.copy_(torch.linspace(-1, 1, head.bias.numel()))
    seen = []
    trainer.model.on_train_start = seen.append  # a step hook: the progress it gets knows the epoch length
    with caplog.at_level("WARNING", logger="hfssl.training.trainer"):
        trainer.train()
    assert seen[0].step == 0 and seen[0].total_steps == 4
    assert seen[0].steps_per_epoch == len(digits.train) // 32  # the last partial batch is dropped
    warnings = [record.message for record in caplog.records if "collapsed" in record.message]
    assert len(warnings) == 1, warnings  # four collapsed logs, one warning
    assert "at step 1" in warnings[0] and "1/sqrt(16)" in warnings[0] and "learning rate" in warnings[0]
    assert all(log["embedding_std"] < 1e-3 for log in trainer.state.log_history if "loss" in log)


def test_collapse_warning_threshold():
    from hfssl.training.monitors import collapse_warning

    assert collapse_warning(0.9 / 8, 64, 3) is None  # a healthy spread: 0.9 of 1/sqrt(64)
    message = collapse_warning(1e-4, 64, 3, hint="the predictor is missing.")
    assert message.startswith("The embeddings have collapsed at step 3") and message.endswith(
        "the predictor is missing."
    )


def test_model_card_replaces_the_trainers_card_for_hub_pushes(tmp_path, digits):
    from hfssl.training.model_card import write_model_card

    trainer = make_trainer(tmp_path, digits, save_strategy="no")
    card = write_model_card(
        str(tmp_path / "card"), trainer.model, "simclr", digits.description, "adamw", {"knn_accuracy": 0.5}
    )
    assert "**SimCLR**" in card and "| knn_accuracy | 0.5000 |" in card and digits.description in card
    trainer.model_card_text = card
    trainer.create_model_card()  # what Trainer.push_to_hub calls before uploading
    assert (tmp_path / "README.md").read_text() == card
