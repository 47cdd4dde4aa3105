import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from kornia.color import rgb_to_grayscale
from kornia.enhance import adjust_hue
from kornia.filters import gaussian_blur2d

import hfssl.augment as augment_module
import hfssl.distributed as hfssl_distributed
from hfssl.augment import (
    EvalTransform,
    ViewGenerator,
    ViewRecipe,
    _adjust_hue,
    _gaussian_blur,
    byol_recipes,
    match_channels,
    multi_crop_recipes,
    simclr_recipe,
    simclr_view_generator,
)
from hfssl.preprocessing import make_image_processor

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models (conftest.one_torch_thread)


@pytest.fixture
def images():
    return torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8)


def test_views_shapes_dtypes_and_ranges(images):
    generator = simclr_view_generator(16, num_channels=3)
    views = generator(images)
    assert len(views) == 2
    for view in views:
        assert view.shape == (6, 3, 16, 16) and view.dtype == torch.float32
        # normalised from [0, 1] with ImageNet statistics
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        unit = view * std + mean
        assert unit.min() >= -1e-5 and unit.max() <= 1 + 1e-5
    assert not torch.allclose(views[0], views[1])


def test_views_differ_per_call_and_are_deterministic_under_a_seed(images):
    generator = simclr_view_generator(16)
    torch.manual_seed(3)
    first = generator(images)
    second = generator(images)
    torch.manual_seed(3)
    replay = generator(images)
    assert not torch.allclose(first[0], second[0])
    for a, b in zip(first, replay):
        assert torch.equal(a, b)


def test_channel_conversion_both_ways():
    grey = torch.randint(0, 256, (4, 1, 12, 12), dtype=torch.uint8)
    colour = torch.randint(0, 256, (4, 3, 12, 12), dtype=torch.uint8)
    assert simclr_view_generator(8, num_channels=3)(grey)[0].shape == (4, 3, 8, 8)
    assert simclr_view_generator(8, num_channels=1)(colour)[0].shape == (4, 1, 8, 8)
    expanded = match_channels(grey.float(), 3)
    assert torch.equal(expanded[:, 0], expanded[:, 2])
    with pytest.raises(ValueError, match="num_channels"):
        match_channels(torch.zeros(1, 2, 4, 4), 3)


def test_identity_recipe_only_crops_and_normalises():
    recipe = ViewRecipe(
        crop_scale=(1.0, 1.0),
        crop_ratio=(1.0, 1.0),
        flip_probability=0.0,
        color_jitter_probability=0.0,
        grayscale_probability=0.0,
        blur_probability=0.0,
    )
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    view = ViewGenerator([recipe], 8, num_channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(images)[0]
    torch.testing.assert_close(view, images.float() / 255, atol=1e-5, rtol=0)


def test_simclr_recipe_scales_with_image_size():
    assert simclr_recipe(32).blur_probability == 0.0
    assert simclr_recipe(224).blur_probability == 0.5
    assert simclr_recipe(224, color_jitter_strength=0.5).brightness == pytest.approx(0.4)


@pytest.mark.parametrize("num_channels", [3, 1])
def test_eval_transform_matches_saved_image_processor(num_channels):
    import numpy as np
    from PIL import Image

    # a one-channel checkpoint's processor takes greyscale ("L") images, as README says
    array = np.random.default_rng(0).integers(0, 256, (16, 16, 3)[: 3 if num_channels == 3 else 2], dtype=np.uint8)
    processor = make_image_processor(16, num_channels=num_channels)
    expected = processor(images=[Image.fromarray(array)], return_tensors="pt")["pixel_values"]
    images = (
        torch.from_numpy(array).permute(2, 0, 1)[None] if num_channels == 3 else torch.from_numpy(array)[None, None]
    )
    actual = EvalTransform(16, num_channels=num_channels)(images)
    assert actual.shape == expected.shape == (1, num_channels, 16, 16)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


# --- geometry, colour and determinism of ViewGenerator -------------------------------------------------------------

PLAIN = dict(flip_probability=0.0, color_jitter_probability=0.0, grayscale_probability=0.0, blur_probability=0.0)
WHOLE_IMAGE = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))
UNIT = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _view(recipe, images, size=None, **kwargs):
    return ViewGenerator([recipe], size or images.shape[-1], num_channels=images.shape[1], **{**UNIT, **kwargs})(
        images
    )[0]


@pytest.mark.parametrize("scale, ratio", [((0.08, 1.0), (3 / 4, 4 / 3)), ((0.2, 0.4), (0.5, 2.0))])
def test_crop_area_and_aspect_ratio_stay_in_the_recipe_ranges(scale, ratio):
    # pixel (i, j) holds (j, i, 0): the view's values are the input coordinates it sampled
    side, size, count = 64, 16, 300
    coords = torch.arange(side, dtype=torch.uint8)
    image = torch.stack(
        [coords.expand(side, side), coords[:, None].expand(side, side), torch.zeros(side, side, dtype=torch.uint8)]
    )
    torch.manual_seed(0)
    view = (
        _view(
            ViewRecipe(crop_scale=scale, crop_ratio=ratio, **PLAIN), image.expand(count, -1, -1, -1).contiguous(), size
        )
        * 255
    )
    x, y = view[:, 0, size // 2], view[:, 1, :, size // 2]  # sampled columns along a row, rows along a column
    # inside the box the sampled coordinate is left + (u + 0.5) * w / S - 0.5: exact on a linear ramp
    w = (x[:, -3] - x[:, 2]) / (size - 5) * size
    h = (y[:, -3] - y[:, 2]) / (size - 5) * size
    left = x[:, 2] - 2.5 * w / size + 0.5
    top = y[:, 2] - 2.5 * h / size + 0.5
    for value in (w, h, left, top):  # integer boxes, as torchvision's
        torch.testing.assert_close(value, value.round(), atol=2e-3, rtol=0)
    w, h, left, top = w.round(), h.round(), left.round(), top.round()
    assert (left >= 0).all() and (top >= 0).all() and (left + w <= side).all() and (top + h <= side).all()
    # w and h are rounded from sqrt(area * ratio) and sqrt(area / ratio)
    area = side * side
    assert ((w + 0.5) * (h + 0.5) >= scale[0] * area).all() and ((w - 0.5) * (h - 0.5) <= scale[1] * area).all()
    assert ((w + 0.5) / (h - 0.5) >= ratio[0]).all() and ((w - 0.5) / (h + 0.5) <= ratio[1]).all()
    # and the draws cover the ranges
    fraction, log_ratio = w * h / area, (w / h).log()
    assert fraction.min() < scale[0] + 0.1 * (scale[1] - scale[0]) and fraction.max() > scale[1] - 0.15 * (
        scale[1] - scale[0]
    )
    span = math.log(ratio[1]) - math.log(ratio[0])
    assert log_ratio.min() < math.log(ratio[0]) + 0.15 * span and log_ratio.max() > math.log(ratio[1]) - 0.15 * span


def test_crop_that_cannot_fit_falls_back_to_the_centre_crop():
    recipe = ViewRecipe(crop_scale=(0.5, 0.5), crop_ratio=(1.0, 1.0), **PLAIN)
    wide = torch.randint(0, 256, (4, 3, 8, 32), dtype=torch.uint8)  # no 1:1 crop of half the area fits
    torch.testing.assert_close(
        _view(recipe, wide, 8), wide[..., 12:20].float() / 255, atol=1e-5, rtol=0
    )  # the middle (8, 8)
    tall = wide.transpose(2, 3).contiguous()
    torch.testing.assert_close(_view(recipe, tall, 8), tall[..., 12:20, :].float() / 255, atol=1e-5, rtol=0)


def test_flip_probability_one_mirrors_exactly():
    images = torch.randint(0, 256, (3, 3, 12, 12), dtype=torch.uint8)
    view = _view(ViewRecipe(**WHOLE_IMAGE, **{**PLAIN, "flip_probability": 1.0}), images)
    torch.testing.assert_close(view, images.flip(-1).float() / 255, atol=1e-6, rtol=0)


def test_identity_recipe_returns_the_input_for_greyscale_and_single_channel_backbones():
    grey = torch.randint(0, 256, (3, 1, 10, 10), dtype=torch.uint8)
    torch.testing.assert_close(
        _view(ViewRecipe(**WHOLE_IMAGE, **PLAIN), grey, mean=(0.0,), std=(1.0,)), grey.float() / 255, atol=1e-5, rtol=0
    )
    colour = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    view = ViewGenerator([ViewRecipe(**WHOLE_IMAGE, **PLAIN)], 10, num_channels=1, mean=(0.0,), std=(1.0,))(colour)[0]
    torch.testing.assert_close(view, rgb_to_grayscale(colour.float() / 255), atol=1e-5, rtol=0)


def test_color_jitter_with_probability_zero_is_identity():
    images = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    recipe = ViewRecipe(**WHOLE_IMAGE, **PLAIN, brightness=0.9, contrast=0.9, saturation=0.9, hue=0.5)
    assert ViewGenerator([recipe], 10).jitter_ops == ()  # p = 0: skipped altogether
    torch.testing.assert_close(_view(recipe, images), images.float() / 255, atol=1e-5, rtol=0)
    # p = 0 in one recipe, 1 in the other: the first view is untouched
    views = ViewGenerator([recipe, replace(recipe, color_jitter_probability=1.0)], 10, **UNIT)(images)
    torch.testing.assert_close(views[0], images.float() / 255, atol=1e-5, rtol=0)
    assert not torch.allclose(views[1], views[0])


def _jitter_only(**strengths):
    strengths = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, **strengths}
    return ViewRecipe(**WHOLE_IMAGE, **{**PLAIN, "color_jitter_probability": 1.0}, **strengths)


def test_degenerate_jitter_ranges_match_torchvision_formulas():
    x = torch.randint(0, 256, (5, 3, 10, 10), dtype=torch.uint8)
    unit = x.float() / 255
    grey = rgb_to_grayscale(unit)
    expected = {
        "brightness": (2.0, (2 * unit).clamp(0, 1)),
        "contrast": (0.5, (0.5 * unit + 0.5 * grey.mean((1, 2, 3), keepdim=True)).clamp(0, 1)),
        "saturation": (3.0, (3 * unit - 2 * grey).clamp(0, 1)),
        "hue": (0.25, adjust_hue(unit, 0.25 * 2 * math.pi)),
    }
    for name, (factor, result) in expected.items():
        torch.testing.assert_close(
            _view(_jitter_only(**{name: (factor, factor)}), x), result, atol=1e-5, rtol=0, msg=name
        )


def test_closed_form_hue_matches_kornia_adjust_hue():
    torch.manual_seed(0)
    images = torch.rand(8, 3, 9, 9)
    images[:2] = images[:2, :1]  # grey
    images[2:4, 1] = images[2:4, 0]  # tied maxima
    images[4:6] = (images[4:6] * 4).round() / 4
    shift = torch.linspace(-0.5, 0.5, 8)
    torch.testing.assert_close(_adjust_hue(images, shift), adjust_hue(images, shift * 2 * math.pi), atol=1e-5, rtol=0)


def test_blur_matches_kornia_gaussian_blur():
    torch.manual_seed(0)
    images, sigma = torch.rand(4, 3, 20, 20), torch.tensor([0.1, 0.7, 1.3, 2.0])
    torch.testing.assert_close(
        _gaussian_blur(images, sigma, 5),
        gaussian_blur2d(images, (5, 5), sigma[:, None].expand(-1, 2)),
        atol=1e-6,
        rtol=0,
    )
    x = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8)
    recipe = ViewRecipe(**WHOLE_IMAGE, **{**PLAIN, "blur_probability": 1.0}, blur_sigma=(1.5, 1.5))
    torch.testing.assert_close(
        _view(recipe, x), gaussian_blur2d(x.float() / 255, (5, 5), (1.5, 1.5)), atol=1e-5, rtol=0
    )


def test_grayscale_and_solarize_with_probability_one():
    x = torch.randint(0, 256, (3, 3, 10, 10), dtype=torch.uint8)
    unit = x.float() / 255
    grey = _view(ViewRecipe(**WHOLE_IMAGE, **{**PLAIN, "grayscale_probability": 1.0}), x)
    torch.testing.assert_close(grey, rgb_to_grayscale(unit).expand(-1, 3, -1, -1), atol=1e-5, rtol=0)
    solarized = _view(ViewRecipe(**WHOLE_IMAGE, **PLAIN, solarize_probability=1.0), x)
    torch.testing.assert_close(solarized, torch.where(unit >= 0.5, 1 - unit, unit), atol=1e-5, rtol=0)


def test_parameters_are_drawn_per_image():
    x = torch.randint(0, 256, (1, 3, 16, 16), dtype=torch.uint8).expand(8, -1, -1, -1)
    views = simclr_view_generator(16)(x)
    assert all(not torch.allclose(views[0][0], views[0][i]) for i in range(1, 8))


def test_views_are_deterministic_under_a_seed_and_independent_of_cpu_chunking(monkeypatch):
    x = torch.randint(0, 256, (10, 3, 24, 24), dtype=torch.uint8)
    generator = ViewGenerator(
        [simclr_recipe(64), replace(simclr_recipe(64), solarize_probability=0.5)], 20, num_channels=3
    )
    torch.manual_seed(7)
    whole = generator(x)
    monkeypatch.setattr(augment_module, "_CHUNK_ELEMENTS", 1)  # one image per chunk
    torch.manual_seed(7)
    for a, b in zip(whole, generator(x)):
        assert torch.equal(a, b)


def test_recipe_validation():
    with pytest.raises(ValueError, match="hue"):
        ViewGenerator([ViewRecipe(hue=0.6)], 8)
    with pytest.raises(ValueError, match="brightness"):
        ViewGenerator([ViewRecipe(brightness=(1.5, 1.2))], 8)
    with pytest.raises(ValueError, match="flip_probability"):
        ViewGenerator([ViewRecipe(flip_probability=1.5)], 8)
    with pytest.raises(ValueError, match="crop_scale"):
        ViewGenerator([ViewRecipe(crop_scale=(0.0, 1.0))], 8)


# --- views of several sizes (multi-crop) --------------------------------------------------------------------------

# Views of the one-size generator before it grouped recipes by size, recorded from that code: per view, the sum
# and the values at PIXELS (image, channel, row, column), for images from _seeded_images and torch.manual_seed(3).
PIXELS = [(0, 0, 0, 0), (1, 2, 5, 7), (2, 1, 15, 3), (3, 0, 8, 8), (4, 2, 11, 14), (0, 1, 3, 12)]
RECORDED_VIEWS = {
    "rgb": [
        (-339.31792, [-1.178299, -1.553864, 0.433474, -0.06989, 0.887012, -0.876995]),
        (332.93323, [0.454369, -0.194652, 1.378902, -1.027404, -1.196411, 1.940484]),
    ],
    "grey": [
        (-181.77185, [-0.738538, -0.686987, -0.365195, -0.00098, 0.353594, -0.526782]),
        (-87.76548, [0.760079, -0.006791, -0.03566, -0.374226, -0.761534, 0.585432]),
    ],
    "blur_solarize": [
        (-6762.07438, [-1.078156, -1.158536, -0.307804, -0.028175, -0.813731, -0.98085]),
        (4928.06062, [-0.670584, 1.838576, -0.468543, -1.099114, 1.446195, 0.822974]),
    ],
}
ONE_SIZE_CASES = {
    "rgb": (lambda: simclr_view_generator(16), (5, 3, 20, 20)),
    "grey": (lambda: simclr_view_generator(16, num_channels=1), (5, 1, 20, 20)),
    "blur_solarize": (
        lambda: ViewGenerator([simclr_recipe(64), replace(simclr_recipe(64), solarize_probability=0.5)], 40),
        (4, 3, 44, 44),
    ),
}


def _seeded_images(shape, seed=0):
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", sorted(ONE_SIZE_CASES))
def test_one_size_views_reproduce_the_recorded_views(case):
    make, shape = ONE_SIZE_CASES[case]
    torch.manual_seed(3)
    views = make()(_seeded_images(shape))
    assert len(views) == len(RECORDED_VIEWS[case])
    for view, (total, pixels) in zip(views, RECORDED_VIEWS[case]):
        assert view.double().sum().item() == pytest.approx(total, abs=1e-3)  # a sum of ~4k float32 values
        actual = torch.stack([view[b % view.shape[0], c % view.shape[1], i, j] for b, c, i, j in PIXELS])
        torch.testing.assert_close(actual, torch.tensor(pixels), atol=1e-5, rtol=0)


def test_multi_crop_views_have_their_sizes_in_recipe_order():
    generator = ViewGenerator(multi_crop_recipes(32, 16, num_local_crops=4), 32)
    views = generator(_seeded_images((3, 3, 40, 40)))
    assert [tuple(view.shape) for view in views] == [(3, 3, 32, 32)] * 2 + [(3, 3, 16, 16)] * 4
    assert all(view.dtype == torch.float32 for view in views)
    assert [(group.size, group.views) for group in generator.groups] == [(32, (0, 1)), (16, (2, 3, 4, 5))]
    assert len(ViewGenerator(multi_crop_recipes(32, 16, num_local_crops=0), 32)(_seeded_images((2, 3, 40, 40)))) == 2


def test_one_grid_sample_per_size_group(monkeypatch):
    calls = []
    grid_sample = F.grid_sample

    def counting(images, grid, **kwargs):
        calls.append(tuple(grid.shape))
        return grid_sample(images, grid, **kwargs)

    monkeypatch.setattr(augment_module.F, "grid_sample", counting)
    monkeypatch.setattr(augment_module, "_CHUNK_ELEMENTS", 2**30)  # the whole batch in one CPU chunk
    recipes = [ViewRecipe(size=8), ViewRecipe(size=16), ViewRecipe(), ViewRecipe(size=8), ViewRecipe(size=16)]
    ViewGenerator(recipes, 12)(_seeded_images((4, 3, 20, 20)))
    # one call per size, in order of first appearance, the group's views stacked along the height
    assert calls == [(4, 2 * 8, 8, 2), (4, 2 * 16, 16, 2), (4, 12, 12, 2)]
    calls.clear()
    simclr_view_generator(16)(_seeded_images((4, 3, 20, 20)))
    assert calls == [(4, 2 * 16, 16, 2)]


def test_mixed_sizes_come_back_in_recipe_order():
    # whole-image crops, no randomness: every view is the image resized to its size, the third also solarised
    plain = ViewRecipe(**WHOLE_IMAGE, **PLAIN)
    recipes = [
        replace(plain, size=8),
        replace(plain, size=16),
        replace(plain, size=8, solarize_probability=1.0),
        plain,
    ]
    x = _seeded_images((3, 3, 16, 16))
    views = ViewGenerator(recipes, 12, **UNIT)(x)
    unit = x.float() / 255
    resized = {size: F.interpolate(unit, size=(size, size), mode="bilinear", align_corners=False) for size in (8, 12)}
    torch.testing.assert_close(views[0], resized[8], atol=1e-5, rtol=0)
    torch.testing.assert_close(views[1], unit, atol=1e-5, rtol=0)
    torch.testing.assert_close(views[2], torch.where(resized[8] >= 0.5, 1 - resized[8], resized[8]), atol=1e-5, rtol=0)
    torch.testing.assert_close(views[3], resized[12], atol=1e-5, rtol=0)


def test_blur_kernel_is_about_a_tenth_of_each_view_size():
    generator = ViewGenerator(multi_crop_recipes(224, 96, num_local_crops=2), 224)
    assert [group.blur_kernel_size for group in generator.groups] == [23, 9]
    blurred = ViewRecipe(**WHOLE_IMAGE, **{**PLAIN, "blur_probability": 1.0}, blur_sigma=(1.5, 1.5))
    x = _seeded_images((2, 3, 40, 40))
    views = ViewGenerator([blurred, replace(blurred, size=20)], 40, **UNIT)(x)
    unit = x.float() / 255
    small = F.interpolate(unit, size=(20, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(views[0], gaussian_blur2d(unit, (5, 5), (1.5, 1.5)), atol=1e-5, rtol=0)
    torch.testing.assert_close(views[1], gaussian_blur2d(small, (3, 3), (1.5, 1.5)), atol=1e-5, rtol=0)


def test_multi_crop_views_are_deterministic_under_a_seed_and_differ_across_seeds():
    generator = ViewGenerator(multi_crop_recipes(48, 24, num_local_crops=3), 48)
    x = _seeded_images((4, 3, 56, 56))
    runs = {}
    for name, seed in (("first", 5), ("replay", 5), ("other", 6)):
        torch.manual_seed(seed)
        runs[name] = generator(x)
    for a, b, c in zip(runs["first"], runs["replay"], runs["other"]):
        assert torch.equal(a, b)
        assert not torch.allclose(a, c)
    # and the local crops differ from one another
    assert not torch.allclose(runs["first"][2], runs["first"][3])


def test_two_processes_make_the_multi_crop_views_of_one_process_on_the_concatenated_batch(monkeypatch):
    # The generator reads only the rank and the world size from the process group: set them, per "process".
    generator = ViewGenerator(multi_crop_recipes(24, 12, num_local_crops=2), 24)
    full = _seeded_images((6, 3, 28, 28))
    torch.manual_seed(11)
    single = generator(full)
    per_process = []
    for rank in range(2):
        monkeypatch.setattr(hfssl_distributed, "world_size", lambda: 2)
        monkeypatch.setattr(hfssl_distributed, "rank", lambda rank=rank: rank)
        torch.manual_seed(11)  # as the Trainer seeds every process alike
        per_process.append(generator(full[3 * rank : 3 * rank + 3]))
    for view, expected in enumerate(single):
        torch.testing.assert_close(torch.cat([views[view] for views in per_process]), expected, atol=1e-5, rtol=0)


def test_byol_recipes_follow_table_6():
    first, second = byol_recipes(224)
    for recipe in (first, second):
        assert (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue) == (0.4, 0.4, 0.2, 0.1)
        assert recipe.color_jitter_probability == 0.8 and recipe.grayscale_probability == 0.2
        assert recipe.crop_scale == (0.08, 1.0) and recipe.flip_probability == 0.5 and recipe.size is None
    assert (first.blur_probability, second.blur_probability) == (1.0, 0.1)
    assert (first.solarize_probability, second.solarize_probability) == (0.0, 0.2)
    assert [recipe.blur_probability for recipe in byol_recipes(32)] == [0.0, 0.0]  # small images: no blur
    assert [view.shape for view in ViewGenerator(byol_recipes(32), 32)(_seeded_images((2, 3, 36, 36)))] == [
        (2, 3, 32, 32)
    ] * 2


def test_multi_crop_recipes_follow_dino():
    recipes = multi_crop_recipes(224, 96, num_local_crops=6)
    assert len(recipes) == 8
    assert [recipe.size for recipe in recipes] == [224, 224] + [96] * 6
    assert [recipe.crop_scale for recipe in recipes] == [(0.4, 1.0)] * 2 + [(0.05, 0.4)] * 6
    assert [recipe.blur_probability for recipe in recipes] == [1.0, 0.1] + [0.5] * 6
    assert [recipe.solarize_probability for recipe in recipes] == [0.0, 0.2] + [0.0] * 6
    for recipe in recipes:
        assert (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue) == (0.4, 0.4, 0.2, 0.1)
        assert recipe.color_jitter_probability == 0.8 and recipe.grayscale_probability == 0.2
    custom = multi_crop_recipes(64, 32, 1, global_crop_scale=(0.3, 1.0), local_crop_scale=(0.1, 0.3))
    assert [recipe.crop_scale for recipe in custom] == [(0.3, 1.0)] * 2 + [(0.1, 0.3)]
    assert [recipe.blur_probability for recipe in custom] == [1.0, 0.1, 0.0]  # the 32 px local crop: no blur


@pytest.mark.parametrize("size", [0, -3, 2.5, True, "16"])
def test_sizes_must_be_positive_ints(size):
    with pytest.raises(ValueError, match="ViewRecipe.size .*positive int"):
        ViewGenerator([ViewRecipe(), ViewRecipe(size=size)], 8)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        ViewGenerator([ViewRecipe()], size)
    with pytest.raises(ValueError, match="local_size must be a positive int"):
        multi_crop_recipes(32, size, 2)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        byol_recipes(size)


def test_multi_crop_recipes_validate_the_number_of_local_crops():
    with pytest.raises(ValueError, match="num_local_crops must be an int >= 0"):
        multi_crop_recipes(32, 16, -1)
    with pytest.raises(ValueError, match="global_size must be a positive int"):
        multi_crop_recipes(0, 16, 2)
