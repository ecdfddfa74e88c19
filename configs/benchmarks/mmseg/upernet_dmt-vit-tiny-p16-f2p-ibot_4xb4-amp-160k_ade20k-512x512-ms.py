# Multi-scale (0.5-1.75) + flip test of the config without "-ms", with the sources' scales
# (iBOT's vit_*_512_ade20k_160k_ms.py: SETR_Resize, short side max(512, 512 x ratio);
# _base_/ade20k_ms-flip-test.py) and mmseg's SegTTAModel; test only:
#   bash tools/dist_test.sh THIS_CONFIG CHECKPOINT GPUS
_base_ = ['./upernet_dmt-vit-tiny-p16-f2p-ibot_4xb4-amp-160k_ade20k-512x512.py',
          './_base_/ade20k_ms-flip-test.py']

model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
test_dataloader = dict(dataset=dict(pipeline={{_base_.ms_flip_test_pipeline}}))
