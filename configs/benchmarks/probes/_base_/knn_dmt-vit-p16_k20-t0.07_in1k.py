# ImageNet-1K weighted k-NN classification of a frozen DMT student: DINO's protocol,
# transcribed from facebookresearch/dino eval_knn.py (bytedance/ibot evaluation/eval_knn.py is
# the same code; card: docs/protocols/imagenet_knn.md). The CLS token after the final norm,
# L2-normalised; the 20 most cosine-similar training images vote with weight exp(cos / 0.07);
# train and val images both resized (short side 256, bicubic) and centre-cropped to 224.
# Nothing trains: run tools/test.py with the student file as the checkpoint,
#   python tools/test.py CONFIG student.pth [--cfg-options model.feature_cache=feats.pth]
# (feature_cache keeps the training features for later runs of the same weights).
_base_ = 'mmpretrain::_base_/default_runtime.py'
custom_imports = dict(imports=['dmt_mm.models', 'dmt_mm.models.probes', 'dmt_mm.engine'],
                      allow_failed_imports=False)
protocol = dict(name='imagenet-knn', card='docs/protocols/imagenet_knn.md',
                source='facebookresearch/dino eval_knn.py')

data_root = 'data/imagenet'
# DINO: Resize(256, interpolation=3), CenterCrop(224), ToTensor, Normalize(ImageNet mean/std)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs')]
data_preprocessor = dict(type='ClsDataPreprocessor', num_classes=1000,
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                         to_rgb=True)
# DINO's --batch_size_per_gpu 128 and --num_workers 10; the training set in order
# (DistributedSampler(shuffle=False)), the val set the same way
loader = dict(batch_size=128, num_workers=10, persistent_workers=False,
              sampler=dict(type='DefaultSampler', shuffle=False))
model = dict(
    type='KNNClassifier',
    backbone=dict(type='DMTViT', arch='vit-base', img_size=224, patch_size=16,
                  out_type='cls_token', final_norm=True),
    num_classes=1000,
    k=20,  # DINO's --nb_knn 10 20 100 200; "20 is usually working the best"
    temperature=0.07,
    feature_cache=None,
    prototype=dict(loader, dataset=dict(type='ImageNet', data_root=data_root, split='train',
                                        pipeline=pipeline)),
    data_preprocessor=data_preprocessor)

test_dataloader = dict(loader, dataset=dict(type='ImageNet', data_root=data_root,
                                            split='val', pipeline=pipeline))
test_evaluator = dict(type='Accuracy', topk=(1, 5))
test_cfg = dict(type='TestLoop')
