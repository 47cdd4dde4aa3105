import pytest
import torch

from hfssl.augment import EvalTransform, ViewGenerator, ViewRecipe, match_channels, simclr_recipe, simclr_view_generator
from hfssl.preprocessing import make_image_processor


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
    recipe = ViewRecipe(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_probability=0.0, color_jitter_probability=0.0,
                        grayscale_probability=0.0, blur_probability=0.0)
    images = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    view = ViewGenerator([recipe], 8, num_channels=3, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(images)[0]
    torch.testing.assert_close(view, images.float() / 255, atol=1e-5, rtol=0)


def test_simclr_recipe_scales_with_image_size():
    assert simclr_recipe(32).blur_probability == 0.0
    assert simclr_recipe(224).blur_probability == 0.5
    assert simclr_recipe(224, color_jitter_strength=0.5).brightness == pytest.approx(0.4)


def test_eval_transform_matches_saved_image_processor():
    import numpy as np
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    processor = make_image_processor(16, num_channels=3)
    expected = processor(images=[Image.fromarray(array)], return_tensors="pt")["pixel_values"]
    actual = EvalTransform(16, num_channels=3)(torch.from_numpy(array).permute(2, 0, 1)[None])
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
