"""``ImageCollator``: dataset rows of any image representation to uint8 (B, C, H, W) batches.

The resolver (:mod:`hfssl.data.vision`) leaves images as cheap as they come: uint8 arrays for IDX
and built-in data, undecoded ``{"bytes", "path"}`` dicts for image files. The collator decodes
them in the DataLoader, converts them to one channel layout and stacks them; augmentation happens
later, batched on the device. :func:`load_image`, :func:`is_colour` and :func:`image_hw` read one
image value the same way for the resolver's probe of the leading train images.
"""

import io
from typing import Any, Optional, Union

import numpy as np
import torch
from PIL import Image as PILImage

# Modes PIL uses for single-channel images (with or without alpha); every other mode is colour.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})

_Image = Union[PILImage.Image, np.ndarray]


class ImageCollator:
    """Batch dataset rows into ``{"pixel_values": uint8 (B, C, H, W)}`` plus ``{"labels": int64 (B,)}``.

    Each row's "image" may be a PIL image, a ``{"bytes", "path"}`` dict (``datasets.Image(decode=False)``),
    a numpy array (H, W) or (H, W, C), a torch tensor (H, W) or (C, H, W), or nested lists of ints;
    pixel values must be integers in 0..255. Images become greyscale (C=1) or RGB (C=3): the
    ``num_channels`` given, else RGB as soon as one image of the batch is colour (alpha is dropped).
    With ``image_size``, images of another size are resized to (image_size, image_size) with PIL's
    bilinear filter; with ``resize_mixed_only`` too, only batches whose images differ in size are
    resized (the on-device views and eval transform resize anyway, so a uniform dataset such as
    CIFAR leaves the loader at its native size). Without ``image_size``, every image of a batch must
    have the same size. "labels" is only returned when every row has a non-None "label".
    """

    def __init__(
        self, image_size: Optional[int] = None, num_channels: Optional[int] = None, resize_mixed_only: bool = False
    ):
        if num_channels not in (None, 1, 3):
            raise ValueError(
                f"num_channels must be 1 (greyscale), 3 (RGB) or None (from the data), got {num_channels}."
            )
        if image_size is not None and image_size < 1:
            raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")
        self.image_size = image_size
        self.num_channels = num_channels
        self.resize_mixed_only = resize_mixed_only

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        images = [load_image(example["image"]) for example in examples]
        mode = self._target_mode(images)
        arrays = [_to_mode_array(image, mode) for image in images]
        if not (self.resize_mixed_only and len({array.shape[:2] for array in arrays}) == 1):
            arrays = [self._resize(array) for array in arrays]
        sizes = sorted({array.shape[:2] for array in arrays})
        if len(sizes) > 1:
            raise ValueError(
                f"Images in this batch have different sizes (H, W) {sizes}; pass --image_size to resize them to a common square size."
            )
        pixel_values = torch.from_numpy(np.stack(arrays))
        pixel_values = pixel_values.unsqueeze(1) if mode == "L" else pixel_values.permute(0, 3, 1, 2)
        batch = {"pixel_values": pixel_values.contiguous()}
        labels = [example.get("label") for example in examples]
        if all(label is not None for label in labels):
            batch["labels"] = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        return batch

    def _target_mode(self, images: list[_Image]) -> str:
        if self.num_channels is not None:
            return "L" if self.num_channels == 1 else "RGB"
        return "RGB" if any(is_colour(image) for image in images) else "L"

    def _resize(self, array: np.ndarray) -> np.ndarray:
        if self.image_size is None or array.shape[:2] == (self.image_size, self.image_size):
            return array
        resized = PILImage.fromarray(array).resize((self.image_size, self.image_size), PILImage.Resampling.BILINEAR)
        return np.asarray(resized)


def load_image(value: Any) -> _Image:
    """A PIL image, or a uint8 array (H, W) / (H, W, C), from any supported image value."""
    if isinstance(value, PILImage.Image):
        return value
    if isinstance(value, dict):
        return _decode(value)
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
        value = value.transpose(1, 2, 0) if value.ndim == 3 else value
    return _as_uint8_array(np.asarray(value))


def _decode(value: dict) -> PILImage.Image:
    """Decode a ``{"bytes", "path"}`` image; unreadable data raises ``ValueError`` naming the file."""
    path = value.get("path")
    source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else path
    if source is None:
        raise ValueError(
            f"Image value {value!r} has neither 'bytes' nor 'path'; is --image_column_name the image column?"
        )
    try:
        image = PILImage.open(source)
        image.load()
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(
            f"Cannot decode image {path or '<in-memory bytes without a path>'}: {error}. "
            "Remove the file from the dataset or re-encode it (e.g. open and save it again as PNG)."
        ) from error
    return image


def _as_uint8_array(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(
            f"Unsupported image array of shape {array.shape}; expected (H, W) or (H, W, C) with C in 1..4 "
            "(torch tensors: (H, W) or (C, H, W))."
        )
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) and array.size and 0 <= array.min() and array.max() <= 255:
        return array.astype(np.uint8)
    raise ValueError(
        f"Unsupported image pixel values of dtype {array.dtype}; expected integers in 0..255 "
        "(convert float images with (x * 255).round().astype('uint8'))."
    )


def is_colour(image: _Image) -> bool:
    """Whether ``image`` (PIL or a uint8 array from :func:`load_image`) has colour channels."""
    if isinstance(image, PILImage.Image):
        return image.mode not in _GREY_MODES
    return image.ndim == 3 and image.shape[2] >= 3


def _to_mode_array(image: _Image, mode: str) -> np.ndarray:
    """``image`` as uint8 (H, W) for mode "L" or (H, W, 3) for "RGB", with PIL's conversion rules."""
    if isinstance(image, PILImage.Image):
        if image.mode == "P":
            image = image.convert("RGBA")  # P -> RGB directly warns when the palette has transparency
        return np.asarray(image if image.mode == mode else image.convert(mode))
    if image.ndim == 3:
        image = image[..., 0] if image.shape[2] <= 2 else image[..., :3]
    if image.ndim == 2:
        return image if mode == "L" else np.repeat(image[..., None], 3, axis=2)
    return image if mode == "RGB" else np.asarray(PILImage.fromarray(image).convert("L"))


def image_hw(image: _Image) -> tuple[int, int]:
    """(height, width) of an image from :func:`load_image`."""
    if isinstance(image, PILImage.Image):
        return image.height, image.width
    return image.shape[0], image.shape[1]
