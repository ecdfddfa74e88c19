# Multi-scale + flip test of the BEiT / MAE / iBOT ADE20K recipes: image ratios 0.5-1.75 of
# the (2048, 512) test scale, each with and without horizontal flip, softmax-averaged.
# The sources (mmsegmentation 0.x configs/mae/upernet_mae-base_fp16_512x512_160k_ade20k_ms.py:
# MultiScaleFlipAug + Resize(keep_ratio=True, min_size=512); iBOT's SETR_Resize with
# crop_size 512) rescale each image so that its short side is max(512, int(512 * ratio)),
# with no cap on the long side. mmseg 1.x has no ``min_size``; its own ADE20K tta_pipeline
# (Resize(scale_factor=ratio)) scales the original image instead, so this file states the
# sources' rule with mmseg's ResizeShortestEdge (identical sizes, tested).
ms_img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
ms_flip_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='ResizeShortestEdge', scale=max(512, int(512 * r)), max_size=2**31 - 1)
             for r in ms_img_ratios],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')],
        ])
]
