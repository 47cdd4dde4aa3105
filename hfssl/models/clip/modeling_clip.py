"""CLIP as a transformers ``PreTrainedModel``: a dual encoder trained with the symmetric InfoNCE of the global batch.

Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision". Reads like the
paper's figure 3::

    I_f = image_encoder(I)             # any transformers vision model's pooled output, (n, d_i)
    T_f = text_encoder(T)              # any transformers text model's pooled output, (n, d_t)
    I_e = l2_normalize(I_f @ W_i)      # W_i, W_t: linear projections to the shared embedding
    T_e = l2_normalize(T_f @ W_t)
    logits = I_e @ T_e.T * exp(t)      # t learned, exp(t) clamped at 100
    loss = symmetric cross entropy of logits against arange(n)

where n is the global batch (:func:`hfssl.losses.clip_loss` gathers the embeddings of every process). The modules
have transformers' ``VisionTextDualEncoderModel`` names, so :meth:`CLIPPretrainingModel.export_dual_encoder` writes
a checkpoint that plain transformers loads: a ``CLIPModel`` when both towers are CLIP's, else a
``VisionTextDualEncoderModel``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers import (
    AutoModel,
    CLIPConfig,
    CLIPModel,
    PreTrainedModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
)
from transformers.utils import ModelOutput

from ...augment import ViewGenerator, ViewRecipe
from ...backbones import backbone_feature_dim
from ...losses import clip_loss
from ...transforms import ImageTextTransform
from ..vision import image_normalization
from .configuration_clip import CLIPPretrainingConfig

# How the towers' weights are named in transformers' CLIPModel: its towers are the transformers inside
# CLIPVisionModel / CLIPTextModel, one level less deep.
CLIP_MODEL_PREFIXES = {"vision_model.vision_model.": "vision_model.", "text_model.text_model.": "text_model."}


@dataclass
class CLIPPretrainingOutput(ModelOutput):
    """
    Args:
        loss: scalar symmetric InfoNCE over the global batch, present when ``return_loss``.
        logits_per_image: (B, B) this process's images against its own captions, times the logit multiplier.
        embeddings: (B, E) L2-normalised image embeddings (the collapse monitors read them).
        text_embeddings: (B, E) L2-normalised caption embeddings.
        logit_scale: scalar, the multiplier exp(t) used (after the clamp).
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    text_embeddings: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None


class CLIPPretrainingModel(PreTrainedModel):
    """CLIP's dual encoder over any transformers image and text towers (see the module docstring)."""

    config_class = CLIPPretrainingConfig
    main_input_name = "pixel_values"
    base_model_prefix = "hfssl"
    supports_gradient_checkpointing = True
    accepts_loss_kwargs = False  # forward returns a mean loss; Trainer must not rescale it
    export_folder = "dual_encoder"  # where the recipe writes export_backbone's plain transformers model
    exported_backbone_name = ""  # the export is the whole model (its full weights, under FSDP)
    # Read by the trainer's guards (hfssl.training.guards.check_run_can_learn) before the first step.
    min_global_batch_size = 2
    min_global_batch_reason = (
        "CLIP contrasts each image with the other captions of the global batch; at 1 pair there is no negative and "
        "the loss is 0 at every step."
    )

    def __init__(self, config: CLIPPretrainingConfig):
        super().__init__(config)
        self.vision_model = AutoModel.from_config(config.vision_config)  # CLIPVisionModel for CLIP's own tower
        self.text_model = AutoModel.from_config(config.text_config)
        self.visual_projection = nn.Linear(
            backbone_feature_dim(config.vision_config), config.projection_dim, bias=False
        )
        self.text_projection = nn.Linear(backbone_feature_dim(config.text_config), config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.logit_scale_init_value)))
        self.post_init()

    # ---- the two encoders ---------------------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings I_f @ W_i of normalised images: (B, C, H, W) -> (B, E), not normalised."""
        return self.visual_projection(pooled_output(self.vision_model(pixel_values=pixel_values), "image"))

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected caption embeddings T_f @ W_t of token ids (B, L) -> (B, E), not normalised."""
        outputs = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        return self.text_projection(pooled_output(outputs, "text"))

    def logit_multiplier(self) -> torch.Tensor:
        """exp(t), with t clamped at log(``max_logit_scale``): the scalar that multiplies the cosine similarities."""
        return self.logit_scale.clamp(max=math.log(self.config.max_logit_scale)).exp()

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool = True,
    ) -> CLIPPretrainingOutput:
        """
        Args:
            pixel_values: (B, C, H, W) normalised images.
            input_ids, attention_mask: (B, L) their captions, row i describing image i.
            return_loss: compute the loss over the global batch.
        """
        image_embeds = self.get_image_features(pixel_values)
        text_embeds = self.get_text_features(input_ids, attention_mask)
        scale = self.logit_multiplier()
        loss = clip_loss(image_embeds, text_embeds, scale, self.config.local_loss) if return_loss else None
        images = nn.functional.normalize(image_embeds.detach(), dim=1)
        texts = nn.functional.normalize(text_embeds.detach(), dim=1)
        return CLIPPretrainingOutput(
            loss=loss, logits_per_image=scale.detach() * images @ texts.T, embeddings=images, text_embeddings=texts,
            logit_scale=scale.detach(),
        )  # fmt: skip

    # ---- step hook ----------------------------------------------------------------------------
    @torch.no_grad()
    def after_optimizer_step(self, progress) -> None:
        """Clamp t to [0, log(``max_logit_scale``)] after every optimizer step (open_clip's rule), so the stored
        parameter, and with it the exported model's unclamped logits, never exceeds the bound."""
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))

    # ---- export -------------------------------------------------------------------------------
    def dual_encoder(self, state_dict: dict | None = None) -> PreTrainedModel:
        """This model as plain transformers: a ``CLIPModel`` when both towers are CLIP's, else a
        ``VisionTextDualEncoderModel``, with these weights (``state_dict``: the full weights when this model's are
        sharded) and the current (clamped) temperature. Both compute the same embeddings as this model (checked on
        one random pair), so their zero-shot classifiers and retrieval agree with hfssl's."""
        config = self.config
        scale = min(self.logit_scale.item(), math.log(config.max_logit_scale))
        weights = dict(self.state_dict() if state_dict is None else state_dict)
        if config.has_clip_towers:
            target = CLIPModel(
                CLIPConfig(
                    vision_config=config.vision_config.to_dict(),
                    text_config=config.text_config.to_dict(),
                    projection_dim=config.projection_dim,
                    logit_scale_init_value=scale,
                )
            )
            weights = {_clip_model_name(name): value for name, value in weights.items()}
        else:
            target = VisionTextDualEncoderModel(
                VisionTextDualEncoderConfig.from_vision_text_configs(
                    _with_hidden_size(config.vision_config), _with_hidden_size(config.text_config),
                    projection_dim=config.projection_dim, logit_scale_init_value=scale,
                )
            )  # fmt: skip
        weights["logit_scale"] = torch.tensor(scale)
        target.load_state_dict(weights, strict=True)
        _check_same_embeddings(self, target)
        return target

    def export_dual_encoder(self, save_directory: str | os.PathLike, processor=None, state_dict=None) -> None:
        """Write :meth:`dual_encoder` and ``processor`` (image processor and tokenizer) to ``save_directory``:
        ``AutoModel`` and ``AutoProcessor.from_pretrained(save_directory)`` load them without hfssl, and for CLIP's
        towers ``pipeline("zero-shot-image-classification", model=save_directory)`` runs."""
        self.dual_encoder(state_dict).save_pretrained(save_directory)
        if processor is not None:
            processor.save_pretrained(save_directory)

    def export_backbone(self, save_directory: str | os.PathLike, processor=None, state_dict=None) -> None:
        """What the recipes' shared export step calls: :meth:`export_dual_encoder` (the whole model is the export)."""
        self.export_dual_encoder(save_directory, processor, state_dict)

    def get_input_embeddings(self) -> nn.Module:
        return self.text_model.get_input_embeddings()

    @torch.no_grad()
    def _init_weights(self, module):
        """The projections as CLIP's (normal, std = input width^-0.5) and the temperature; the towers initialise
        themselves with their own schemes."""
        if module is self:
            nn.init.normal_(self.visual_projection.weight, std=self.visual_projection.in_features**-0.5)
            nn.init.normal_(self.text_projection.weight, std=self.text_projection.in_features**-0.5)
            self.logit_scale.fill_(float(self.config.logit_scale_init_value))


def pooled_output(outputs, tower: str) -> torch.Tensor:
    """A tower's ``pooler_output`` (B, D), the vector ``VisionTextDualEncoderModel`` projects too (CLIP: the
    normed class token and end-of-text token; ViT and BERT: their pooler). Towers without one are refused."""
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None or pooled.dim() != 2:
        shape = None if pooled is None else tuple(pooled.shape)
        raise ValueError(
            f"The {tower} tower returns no (B, D) pooler_output (got {shape}); CLIP and transformers' "
            "VisionTextDualEncoderModel project that vector. Pick a tower that has one: for images clip_vision_model, "
            "vit, convnext, swin (not resnet, whose pooled map is (B, C, 1, 1)); for text clip_text_model, bert, "
            "roberta (not gpt2)."
        )
    return pooled


def _with_hidden_size(config):
    """``config``, or a copy with ``hidden_size`` set to its pooled width (ConvNeXt's configs have ``hidden_sizes``
    only): ``VisionTextDualEncoderModel`` sizes its projections from ``hidden_size``."""
    width = backbone_feature_dim(config)
    if getattr(config, "hidden_size", None) == width:
        return config
    config = copy.deepcopy(config)
    config.hidden_size = width
    return config


def _clip_model_name(name: str) -> str:
    for prefix, replacement in CLIP_MODEL_PREFIXES.items():
        if name.startswith(prefix):
            return replacement + name[len(prefix) :]
    return name


def projected_embedding(output) -> torch.Tensor:
    """transformers 5's ``get_*_features`` return a ``BaseModelOutputWithPooling`` whose ``pooler_output`` is the
    projected embedding; hfssl's return the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def _check_same_embeddings(model: CLIPPretrainingModel, target: PreTrainedModel) -> None:
    """One random image and caption through both models: the same embeddings, or a ValueError (an export that
    would silently compute something else)."""
    config = model.config
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    size, channels = config.image_size, config.num_channels
    pixels = torch.randn(1, channels, size, size, generator=generator).to(parameter)
    eos = getattr(config.text_config, "eos_token_id", None)
    ids = torch.randint(2, config.text_config.vocab_size, (1, 6), generator=generator)
    if eos is not None:
        ids[0, -1] = eos  # CLIP's text tower pools at the first end-of-text token
    ids = ids.to(parameter.device)
    was_training = model.training
    model.eval()
    target.eval().to(parameter.device)
    try:
        pairs = {
            "image": (
                model.get_image_features(pixels),
                projected_embedding(target.get_image_features(pixel_values=pixels)),
            ),
            "text": (model.get_text_features(ids), projected_embedding(target.get_text_features(input_ids=ids))),
        }
    finally:
        model.train(was_training)
    for name, (ours, theirs) in pairs.items():
        if not torch.allclose(ours.float(), theirs.float(), atol=1e-4, rtol=1e-3):
            raise ValueError(
                f"The exported {type(target).__name__} computes other {name} embeddings than the trained model (largest "
                f"difference {(ours - theirs).abs().max().item():.3g}); the export was not written. Its towers are "
                f"{config.vision_config.model_type} and {config.text_config.model_type}."
            )


def clip_batch_transform(model: CLIPPretrainingModel, processor=None) -> ImageTextTransform:
    """One random resized crop (``min_crop_scale``-1, aspect 3/4-4/3, no flip: captions say left and right) of every
    image at the config's ``image_size``, normalised as the processor's image processor; captions as collated.

    Batch: ``{"pixel_values": uint8 (B, C, H, W), "input_ids", "attention_mask"}`` -> the same, images as
    (B, C', S, S) floats."""
    config = model.config
    image_processor = getattr(processor, "image_processor", processor)
    mean, std = image_normalization(image_processor, config.num_channels)
    recipe = ViewRecipe(
        crop_scale=(config.min_crop_scale, 1.0), flip_probability=0.0, color_jitter_probability=0.0,
        grayscale_probability=0.0, blur_probability=0.0,
    )  # fmt: skip
    return ImageTextTransform(ViewGenerator([recipe], config.image_size, config.num_channels, mean, std))
