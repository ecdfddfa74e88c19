# The ViT-S DMT config with the JPEGs decoded on the GPU: the dataloader workers only read
# the files, draw the crop box and the flip (the same per-sample seeded draws) and pass the
# JPEG bytes on; JpegDecodeDataPreprocessor decodes the batch with nvJPEG
# (torchvision.io.decode_jpeg(device='cuda')), crops, resizes (bicubic, antialiased) and
# flips on the GPU. For nodes with few CPU cores per GPU (docs/performance.md); JPEG files
# only (ImageNet's few PNG / CMYK files: convert them, or they are skipped with a warning).
_base_ = './dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'

train_dataloader = dict(
    num_workers=4, collate_fn=dict(_delete_=True, type='pseudo_collate'),
    dataset=dict(dataset=dict(pipeline=[
        dict(type='LoadRandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0),
             interpolation='bicubic', gpu_decode=True, flip_prob=0.5),
        dict(type='PackJpegInputs')])))
model = dict(data_preprocessor=dict(type='JpegDecodeDataPreprocessor',
                                    interpolation='bicubic'))
