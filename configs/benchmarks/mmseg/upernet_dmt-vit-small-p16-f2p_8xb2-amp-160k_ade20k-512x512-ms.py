# Multi-scale (0.5-1.75) + flip test of the ViT-Small ADE20K config, with the sources' scales
# (short side max(512, 512 x ratio), _base_/ade20k_ms-flip-test.py) and mmseg's SegTTAModel;
# test only, on a checkpoint trained with the single-scale config:
#   bash tools/dist_test.sh THIS_CONFIG CHECKPOINT 8
_base_ = ['./upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-512x512.py',
          './_base_/ade20k_ms-flip-test.py']

model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
test_dataloader = dict(dataset=dict(pipeline={{_base_.ms_flip_test_pipeline}}))
