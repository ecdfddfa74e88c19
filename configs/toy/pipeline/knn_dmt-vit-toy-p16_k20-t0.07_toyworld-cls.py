# Probe stage of the miniature study (tools/run_pipeline.py): weighted k-NN (DINO's
# protocol: CLS token after the final norm, cosine, k = 20, T = 0.07) of the frozen student
# on the toy world's single-object split. Nothing trains; the study runs
#   python tools/test.py THIS_CONFIG <student file>
# The same pass also scores the images' colour, texture and size (toy world v2): the same
# features and neighbours, each factor's labels voting (KNNClassifier.extra_labels), as
# DINO's eval_knn.py scores several k in one pass. It reports accuracy/top1 (category) and
# colour_ / texture_ / size_accuracy/top1 (mmpretrain's MultiTasksMetric); one process
# instead of four (start-up is most of a toy probe's time).
_base_ = ['../knn_vit-toy-p16_k20-t0.07_toyworld-cls.py']

extra_factors = dict(colour=6, texture=4, size=3)  # factor: its number of values
img_size = 64  # the base's pipeline, with the factor labels packed (a test checks they agree)
pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size * 256 // 224, edge='short',
         backend='pillow', interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs', algorithm_keys=[f'gt_label_{f}' for f in extra_factors])]
model = dict(extra_labels=extra_factors,
             prototype=dict(dataset=dict(extra_factors=list(extra_factors), pipeline=pipeline)))
test_dataloader = dict(dataset=dict(extra_factors=list(extra_factors), pipeline=pipeline))
test_evaluator = [
    dict(type='Accuracy', topk=(1, 5)),
    dict(type='MultiTasksMetric',
         task_metrics={f: [dict(type='Accuracy', topk=(1, ))] for f in extra_factors})]
