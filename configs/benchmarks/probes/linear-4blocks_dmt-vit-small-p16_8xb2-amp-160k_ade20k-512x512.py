# ADE20K linear segmentation of a frozen DMT ViT-Small/16 student on its last 4 blocks
# (DINOv2's "4 last layers": each normalised by the final norm, resized to one grid and
# concatenated; BatchNorm + 1x1 conv); otherwise the recipe of
# linear_dmt-vit-small-p16_8xb2-amp-160k_ade20k-512x512.py (docs/protocols/ade20k_linear.md).
_base_ = './linear_dmt-vit-small-p16_8xb2-amp-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(out_indices=[8, 9, 10, 11]),
    decode_head=dict(in_channels=[384] * 4, in_index=[0, 1, 2, 3],
                     input_transform='resize_concat', channels=4 * 384))
