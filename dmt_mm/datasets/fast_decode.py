"""Decoding and RandomResizedCrop in one step, so a dataloader worker does only the work the
crop needs (docs/performance.md, BENCHMARKS.md).

mmpretrain's pipeline ``LoadImageFromFile -> RandomResizedCrop(backend='pillow')`` decodes the
whole JPEG with OpenCV, copies the crop, converts it to a PIL image, resizes it and copies it
back. :class:`LoadRandomResizedCrop` reads only the JPEG header to draw the crop box (with
mmpretrain's own ``RandomResizedCrop.rand_crop_params``: the same boxes for the same random
state), decodes with PIL -- at 1/2, 1/4 or 1/8 size through libjpeg's DCT scaling when the
crop at that size is still at least the output size on both axes (no pixel is then
upsampled that the full decode would have downsampled) -- and resizes straight from the
crop box (``Image.resize(box=...)``: no crop copy; filter taps at the box edges see the
real neighbouring pixels instead of a replicated border). The output is what
``LoadImageFromFile`` + ``RandomResizedCrop`` give (BGR uint8, ``img_shape``,
``ori_shape``), up to those edge taps and the DCT scaling.

Unreadable files follow :class:`~dmt_mm.datasets.robust_loading.LoadImageOrSkip`'s policy
(it is a subclass): skipped with a warning in training, an error naming the file otherwise.

``gpu_decode=True`` leaves the decoding to the GPU: the worker only reads the file, parses
the header, draws the crop box and the flip and packs the JPEG bytes;
:class:`~dmt_mm.datasets.fast_decode.JpegDecodeDataPreprocessor` decodes the batch with
nvJPEG (``torchvision.io.decode_jpeg(device='cuda')``), crops, resizes (antialiased) and flips
on the GPU. Use it with ``collate_fn=dict(type='pseudo_collate')`` and that preprocessor
(``configs/dmt/README.md``).
"""
import io
from typing import Optional

import numpy as np
import torch
from mmcv.image.geometric import pillow_interp_codes
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine import fileio
from mmengine.registry import TRANSFORMS
from PIL import Image, ImageOps

from .robust_loading import LoadImageOrSkip

EXIF_ORIENTATION = 0x0112
INTERPOLATIONS = {'nearest': 'nearest', 'bilinear': 'bilinear', 'bicubic': 'bicubic',
                  'area': 'box', 'lanczos': 'lanczos'}


class _Shape:
    """What ``RandomResizedCrop.rand_crop_params`` reads of an image: its shape."""

    def __init__(self, h, w):
        self.shape = (h, w, 3)


def dct_scale(crop_hw, out_hw, fmt: str) -> int:
    """The largest JPEG DCT scaling denominator (8, 4, 2 or 1) at which the crop is still
    at least the output size on both axes."""
    if fmt != 'JPEG':
        return 1
    return next((s for s in (8, 4, 2)
                 if crop_hw[0] / s >= out_hw[0] and crop_hw[1] / s >= out_hw[1]), 1)


class _DecodeRandomResizedCrop(LoadImageFromFile):
    """The decoding part of :class:`LoadRandomResizedCrop` (robustness comes from its
    other base, :class:`LoadImageOrSkip`, which calls this ``transform``)."""

    def transform(self, results):
        data = fileio.get(results['img_path'], backend_args=self.backend_args)
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        orientation = img.getexif().get(EXIF_ORIENTATION, 1) if img.format == 'JPEG' else 1
        if orientation in (5, 6, 7, 8):  # OpenCV applies the EXIF rotation: so do we
            w, h = h, w
        top, left, ch, cw = self.crop.rand_crop_params(_Shape(h, w))
        out_h, out_w = self.crop.scale
        flip = bool(np.random.rand() < self.flip_prob) if self.gpu_decode else None
        results.update(ori_shape=(h, w), img_shape=(out_h, out_w),
                       crop_box=(left, top, left + cw, top + ch))
        if self.gpu_decode:
            if img.format != 'JPEG' or orientation != 1:
                raise ValueError(f'gpu_decode handles plain JPEG files only (this is '
                                 f'{img.format}, EXIF orientation {orientation})')
            # the undecoded file stands in for the image until the GPU decodes it
            results.update(img=np.frombuffer(data, dtype=np.uint8), flip=flip,
                           flip_direction='horizontal' if flip else None)
            return results
        scale = 1
        if orientation == 1:
            scale = dct_scale((ch, cw), (out_h, out_w), img.format) if self.dct_scaling else 1
            if scale > 1:
                img.draft('RGB', (w // scale, h // scale))
                scale = img.decoderconfig[0] if img.decoderconfig else 1
        else:
            img = ImageOps.exif_transpose(img)
        if img.mode != 'RGB':
            img = img.convert('RGB')
        box = (left / scale, top / scale, (left + cw) / scale, (top + ch) / scale)
        out = img.resize((out_w, out_h), self.resample, box=box)
        results['img'] = np.ascontiguousarray(np.asarray(out)[..., ::-1])  # BGR, as mmcv
        results['dct_scale'] = scale
        return results


@TRANSFORMS.register_module()
class LoadRandomResizedCrop(LoadImageOrSkip, _DecodeRandomResizedCrop):
    """``LoadImageFromFile`` + ``RandomResizedCrop`` in one transform (see module docstring).

    Args:
        scale, crop_ratio_range, aspect_ratio_range, max_attempts, interpolation: as
            mmpretrain's ``RandomResizedCrop`` (pillow resampling; ``area`` is PIL's box).
        dct_scaling: decode JPEGs at reduced size when the crop allows it.
        gpu_decode: leave decoding, crop, resize and flip to the GPU data preprocessor
            (then ``flip_prob`` is drawn here and no ``RandomFlip`` follows).
        flip_prob: horizontal flip probability with ``gpu_decode``.
        on_corrupt: ``'skip'`` (training) or ``'error'``, as ``LoadImageOrSkip``.
        backend_args: file backend, as ``LoadImageFromFile``.
    """

    def __init__(self, scale, crop_ratio_range=(0.08, 1.0),
                 aspect_ratio_range=(3. / 4., 4. / 3.), max_attempts: int = 10,
                 interpolation: str = 'bilinear', dct_scaling: bool = True,
                 gpu_decode: bool = False, flip_prob: float = 0.5, on_corrupt: str = 'skip',
                 backend_args: Optional[dict] = None):
        from mmpretrain.datasets.transforms import RandomResizedCrop
        super().__init__(on_corrupt=on_corrupt, backend_args=backend_args)
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f'LoadRandomResizedCrop: interpolation {interpolation!r} is not '
                             f'one of {sorted(INTERPOLATIONS)}')
        self.crop = RandomResizedCrop(scale, crop_ratio_range=crop_ratio_range,
                                      aspect_ratio_range=aspect_ratio_range,
                                      max_attempts=max_attempts, interpolation=interpolation,
                                      backend='pillow')
        self.resample = pillow_interp_codes[INTERPOLATIONS[interpolation]]
        self.dct_scaling = bool(dct_scaling)
        self.gpu_decode = bool(gpu_decode)
        self.flip_prob = float(flip_prob)

    def __repr__(self):
        return (f'{type(self).__name__}(crop={self.crop!r}, dct_scaling={self.dct_scaling}, '
                f'gpu_decode={self.gpu_decode}, on_corrupt={self.on_corrupt!r})')


@TRANSFORMS.register_module()
class PackJpegInputs(BaseTransform):
    """Pack ``LoadRandomResizedCrop(gpu_decode=True)``'s output: the JPEG bytes as a uint8
    tensor in ``inputs`` and the crop box, output size and flip in the data sample."""

    def transform(self, results):
        from mmpretrain.structures import DataSample
        sample = DataSample(metainfo=dict(
            img_path=results.get('img_path'), ori_shape=results['ori_shape'],
            img_shape=results['img_shape'], crop_box=results['crop_box'],
            flip=results['flip']))
        return dict(inputs=torch.from_numpy(results['img'].copy()), data_samples=sample)

    def __repr__(self):
        return 'PackJpegInputs()'


def decode_crop_resize(jpegs, samples, device, interpolation='bicubic'):
    """(B, 3, H, W) uint8 RGB: every JPEG decoded on ``device`` (nvJPEG on CUDA), its crop
    box resized (antialiased) to the output size and flipped where drawn."""
    from torchvision.io import ImageReadMode, decode_jpeg
    from torchvision.transforms.v2 import functional as TF
    mode = getattr(TF.InterpolationMode, interpolation.upper())
    images = decode_jpeg(list(jpegs), mode=ImageReadMode.RGB, device=device)
    out = []
    for img, sample in zip(images, samples):
        left, top, right, bottom = sample.crop_box
        img = TF.resized_crop(img, top, left, bottom - top, right - left,
                              list(sample.img_shape), interpolation=mode, antialias=True)
        out.append(TF.horizontal_flip(img) if sample.flip else img)
    return torch.stack(out)


def _register_preprocessor():
    from mmpretrain.models.utils import SelfSupDataPreprocessor
    from mmpretrain.registry import MODELS

    @MODELS.register_module()
    class JpegDecodeDataPreprocessor(SelfSupDataPreprocessor):
        """``SelfSupDataPreprocessor`` for batches of JPEG bytes (``PackJpegInputs``):
        decode, crop, resize and flip on the model's device, then normalise. The decoded
        images are RGB: ``to_rgb`` is not applied to them.

        Args:
            interpolation: ``'bicubic'`` | ``'bilinear'`` (antialiased).
            Other arguments: as ``SelfSupDataPreprocessor``.
        """

        def __init__(self, *args, interpolation: str = 'bicubic', **kwargs):
            super().__init__(*args, **kwargs)
            self.interpolation = interpolation

        def forward(self, data, training=False):
            inputs = data['inputs']
            if isinstance(inputs, (list, tuple)) and inputs and inputs[0].dim() == 1:
                samples = data['data_samples']
                images = decode_crop_resize(inputs, samples, self.device, self.interpolation)
                data = dict(data, inputs=images)
                conversion, self._channel_conversion = self._channel_conversion, False
                try:
                    return super().forward(data, training)
                finally:
                    self._channel_conversion = conversion
            return super().forward(data, training)

    return JpegDecodeDataPreprocessor


JpegDecodeDataPreprocessor = _register_preprocessor()

__all__ = ['LoadRandomResizedCrop', 'PackJpegInputs', 'JpegDecodeDataPreprocessor',
           'decode_crop_resize', 'dct_scale']
