# Multi-scale + flip test (mmseg's SegTTAModel) of the toy segmentation config; test only:
#   python tools/test.py THIS_CONFIG CHECKPOINT   (a checkpoint of the single-scale config)
# Same mechanism as configs/benchmarks/mmseg/*-ms.py.
_base_ = './upernet_vit-toy-f2p_1xb4-120it_toyworld-128x128.py'

model = dict(_delete_=True, type='SegTTAModel', module={{_base_.model}})
test_dataloader = dict(dataset=dict(pipeline={{_base_.tta_pipeline}}))
