#!/usr/bin/env python
"""Images/s of one MAE training step, hfssl's ``MAEModel`` against transformers' ``ViTMAEForPreTraining`` at the same
config, weights, batch, images and masks, measured in the same run, and where hfssl's step spends its time.

    python benchmarks/mae_step_speed.py --threads 2
    python benchmarks/mae_step_speed.py --device cuda --backbone vit-base --image_size 224 --batch_size 128

The model step is forward + backward + AdamW step on ready views and mask noise (the part both implementations
share); hfssl's full step adds its batch transform (random resized crop, flip and mask noise, drawn on the device
from uint8 images). The two models are timed in alternation, so a change in the machine's load reaches both.
Prints a Markdown table for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from transformers import ViTMAEConfig, ViTMAEForPreTraining

import hfssl
from hfssl.models.builder import build_vision_ssl_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def stock_model(model) -> ViTMAEForPreTraining:
    """transformers' ``ViTMAEForPreTraining`` with ``model``'s config and weights (its encoder is a ViT, key for key)."""
    backbone, config = model.config.backbone_config, model.config
    stock = ViTMAEForPreTraining(
        ViTMAEConfig(
            hidden_size=backbone.hidden_size,
            num_hidden_layers=backbone.num_hidden_layers,
            num_attention_heads=backbone.num_attention_heads,
            intermediate_size=backbone.intermediate_size,
            image_size=config.image_size,
            patch_size=backbone.patch_size,
            num_channels=config.num_channels,
            qkv_bias=backbone.qkv_bias,
            layer_norm_eps=backbone.layer_norm_eps,
            decoder_hidden_size=config.decoder_hidden_size,
            decoder_num_hidden_layers=config.decoder_num_hidden_layers,
            decoder_num_attention_heads=config.decoder_num_attention_heads,
            decoder_intermediate_size=config.decoder_intermediate_size,
            mask_ratio=config.mask_ratio,
            norm_pix_loss=config.norm_pix_loss,
            attn_implementation="sdpa",
        )
    )
    weights = {("vit." + k[9:] if k.startswith("backbone.") else k): v for k, v in model.state_dict().items()}
    stock.load_state_dict(weights)
    return stock


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backbone", default="vit-tiny", help="a ViT preset or 'vit'")
    parser.add_argument("--backbone_config_overrides", default=None)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--config_overrides", default=None, help="MAE config overrides (decoder sizes, ...)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    method = hfssl.METHODS["mae"]
    model = build_vision_ssl_model(
        method,
        args.backbone,
        args.backbone_config_overrides,
        args.config_overrides,
        image_size=args.image_size,
        num_channels=args.channels,
        num_images=60000,
    ).to(device)
    stock = stock_model(model).to(device)
    transform = method.batch_transform(model, None)
    images = torch.randint(
        0, 256, (args.batch_size, args.channels, args.image_size, args.image_size), dtype=torch.uint8, device=device
    )
    batch = transform({"pixel_values": images})  # the same views and noise for both models
    optimizers = {
        "hfssl": torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4),
        "transformers": torch.optim.AdamW([p for p in stock.parameters() if p.requires_grad], lr=1e-4),
    }

    def model_step(name):
        if name == "hfssl":
            loss = model(**batch).loss
        else:
            loss = stock(pixel_values=batch["pixel_values"], noise=batch["noise"]).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    def full_step():
        inputs = transform({"pixel_values": images})
        loss = model(**inputs).loss
        loss.backward()
        optimizers["hfssl"].step()
        optimizers["hfssl"].zero_grad(set_to_none=True)

    with torch.no_grad():  # the same loss at the start: same weights, same inputs
        hfssl_loss = model(**batch).loss.item()
        stock_loss = stock(pixel_values=batch["pixel_values"], noise=batch["noise"]).loss.item()
    for _ in range(2):
        model_step("hfssl"), model_step("transformers"), full_step()
    times = {"hfssl": [], "transformers": [], "full": [], "transform": []}
    for _ in range(args.repeats):
        times["hfssl"].append(timed(lambda: model_step("hfssl"), device))
        times["transformers"].append(timed(lambda: model_step("transformers"), device))
        times["full"].append(timed(full_step, device))
        times["transform"].append(timed(lambda: transform({"pixel_values": images}), device))
    median = {name: statistics.median(values) for name, values in times.items()}
    rate = {name: args.batch_size / seconds for name, seconds in median.items()}

    # where hfssl's forward spends its time (one pass each, no gradient)
    from hfssl.patches import patch_mask_from_noise

    with torch.no_grad():
        mask = patch_mask_from_noise(batch["noise"], model.num_masked)
        encode = statistics.median(
            timed(lambda: model.encode_visible(batch["pixel_values"], mask.ids_keep), device) for _ in range(5)
        )
        latent = model.encode_visible(batch["pixel_values"], mask.ids_keep)
        decode = statistics.median(timed(lambda: model.decoder(latent, mask.ids_restore), device) for _ in range(5))

    config = model.config
    print(
        f"machine: {platform.machine()} {platform.processor() or ''}, device {device}, threads {torch.get_num_threads()}"
    )
    print(
        f"torch {torch.__version__}; loss at the same weights and inputs: hfssl {hfssl_loss:.6f}, transformers {stock_loss:.6f}"
    )
    print(
        f"backbone {args.backbone} at {args.image_size} px, {args.channels} channel(s), patch {model.patch_size} "
        f"({model.num_patches} patches, {model.num_masked} masked); decoder {config.decoder_num_hidden_layers} x "
        f"{config.decoder_hidden_size}; batch {args.batch_size}"
    )
    print()
    print(
        "| model step (fwd + bwd + AdamW) | hfssl images/s | transformers images/s | ratio | hfssl full step images/s | batch transform share |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| {args.backbone} {args.image_size} px | {rate['hfssl']:,.0f} | {rate['transformers']:,.0f} | "
        f"{rate['hfssl'] / rate['transformers']:.2f}x | {rate['full']:,.0f} | {median['transform'] / median['full']:.1%} |"
    )
    print()
    print(
        f"hfssl forward without gradient: encoder on the visible patches {encode * 1e3:.1f} ms, decoder "
        f"{decode * 1e3:.1f} ms; batch transform {median['transform'] * 1e3:.1f} ms; full step {median['full'] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
