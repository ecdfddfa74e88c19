# Multi-scale (0.5-1.75) + flip test of the ViT-Small ADE20K config (mmseg's SegTTAModel and
# ADE20K tta_pipeline); test only, on a checkpoint trained with the single-scale config:
#   bash tools/dist_test.sh THIS_CONFIG CHECKPOINT 8
_base_ = './upernet_dmt-vit-small-p16-f2p_8xb2-amp-160k_ade20k-512x512.py'

model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
test_dataloader = dict(dataset=dict(pipeline={{_base_.tta_pipeline}}))
