# Toy k-NN probe on CPU: the ImageNet k-NN protocol (DINO: CLS token after the final norm,
# cosine, k = 20, T = 0.07) on the toy student and the toy world's image-folder split
# (cls/train are the neighbours, cls/val is classified). Nothing trains:
#   python tools/test.py CONFIG student_vit-toy-p16.pth
_base_ = '../benchmarks/probes/knn_dmt-vit-tiny-p16_k20-t0.07_in1k.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.models.probes', 'dmt_mm.engine',
                               'dmt_mm.datasets.toy_cls'], allow_failed_imports=False)

img_size = 64
data_root = 'data/toy_world/'
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs')]
loader = dict(batch_size=64, num_workers=0, persistent_workers=False,
              sampler=dict(type='DefaultSampler', shuffle=False))
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2,
                            feedforward_channels=128), img_size=img_size),
    num_classes=6,
    prototype=dict(loader, dataset=dict(_delete_=True, type='ToyWorldImageFolder',
                                        data_root=data_root, data_prefix='cls/train',
                                        pipeline=pipeline)),
    data_preprocessor=dict(num_classes=6))
test_dataloader = dict(loader, dataset=dict(_delete_=True, type='ToyWorldImageFolder',
                                            data_root=data_root, data_prefix='cls/val',
                                            pipeline=pipeline))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
