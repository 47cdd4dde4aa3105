#!/usr/bin/env python
"""Images/s of one SimCLR training step (views + forward + backward + optimizer step), and the
share of the step spent making views, measured in the same run.

    python benchmarks/simclr_step_speed.py --device cpu --threads 2
    python benchmarks/simclr_step_speed.py --device cuda --batch_size 256 --image_size 96 --backbone resnet50
    python benchmarks/simclr_step_speed.py --threads 2 --backbones resnet-tiny,regnet-tiny --channels 1 --backbone_channels 1 \
        --source_size 28 --image_size 28 --memory_formats contiguous,channels_last

With several --memory_formats each backbone is measured in each layout (``--channels_last`` of the
trainer: weights and views in channels-last format) and the speedup over the first is printed.

Prints a Markdown table (one row per backbone) for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import hfssl
from hfssl.models.builder import build_vision_ssl_model

BACKBONES = {
    "resnet-tiny": ("resnet", "embedding_size=32,hidden_sizes=[64,128],depths=[1,1],layer_type=basic"),
    "regnet-tiny": (
        "regnet",
        "embedding_size=32,hidden_sizes=[32,128],depths=[1,1],groups_width=16,downsample_in_first_stage=false",
    ),
    "vit-tiny": (
        "vit",
        "hidden_size=192,num_hidden_layers=6,num_attention_heads=3,intermediate_size=768,patch_size=4",
    ),
    "resnet18": ("resnet", "embedding_size=64,hidden_sizes=[64,128,256,512],depths=[2,2,2,2],layer_type=basic"),
    "resnet50": ("resnet", None),
}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_it(fn, device, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after two warm-up runs."""
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str, args, device: torch.device, memory_format: str = "contiguous") -> dict:
    backbone, overrides = BACKBONES[name]
    method = hfssl.METHODS["simclr"]
    overrides = ",".join(filter(None, [overrides, f"num_channels={args.backbone_channels}"]))
    model = build_vision_ssl_model(method, backbone, overrides, image_size=args.image_size).to(device).train()
    layout = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    model.to(memory_format=layout)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    transform = method.batch_transform(model, None)  # the views the trainer makes in each training step
    views = lambda images: [  # noqa: E731 (channels-last as the trainer makes them)
        view.contiguous(memory_format=layout) for view in transform({"pixel_values": images})["views"]
    ]
    images = torch.randint(
        0, 256, (args.batch_size, args.channels, args.source_size, args.source_size), dtype=torch.uint8, device=device
    )
    fixed_views = views(images)

    def step(make_views: bool):
        batch_views = views(images) if make_views else fixed_views
        loss = model(views=batch_views).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    full = time_it(lambda: step(True), device, args.repeats)
    model_only = time_it(lambda: step(False), device, args.repeats)
    views_only = time_it(lambda: views(images), device, args.repeats)
    return {
        "backbone": name,
        "memory_format": memory_format,
        "images_per_s": args.batch_size / full,
        "model_only_images_per_s": args.batch_size / model_only,
        "views_share": views_only / full,
        "step_ms": 1000 * full,
        "views_ms": 1000 * views_only,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--backbones", default="resnet-tiny,vit-tiny", help=f"comma-separated among {sorted(BACKBONES)}"
    )
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--source_size", type=int, default=32, help="side of the uint8 images the views are cut from")
    parser.add_argument("--channels", type=int, default=3, help="channels of the uint8 source images")
    parser.add_argument(
        "--backbone_channels", type=int, default=3, help="input channels of the backbone and its views"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--memory_formats", default="contiguous", help="comma-separated among contiguous, channels_last"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    )
    print(
        f"SimCLR step, batch {args.batch_size}, views {args.image_size}px from {args.source_size}px uint8, {machine}, torch {torch.__version__}\n"
    )
    print(
        "| backbone | memory format | step images/s | speedup | model-only images/s | views share of step | step ms | views ms |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in args.backbones.split(","):
        baseline = None
        for memory_format in args.memory_formats.split(","):
            r = measure(name, args, device, memory_format)
            baseline = baseline or r["images_per_s"]
            print(
                f"| {r['backbone']} | {memory_format} | {r['images_per_s']:.0f} | {r['images_per_s'] / baseline:.2f}x | {r['model_only_images_per_s']:.0f} "
                f"| {100 * r['views_share']:.1f}% | {r['step_ms']:.1f} | {r['views_ms']:.1f} |"
            )


if __name__ == "__main__":
    main()
