# Probe stage of the miniature study (tools/run_pipeline.py): the linear probe as CLIP's
# README defines it -- logistic regression (L2, C = 0.316, L-BFGS, at most 1000 iterations)
# fitted on the cached features (CLS token after the final norm) of the frozen student's
# training images, top-1 on the validation images. Nothing trains by gradient steps over
# images; the study runs
#   python tools/test.py THIS_CONFIG <student file> [--cfg-options ...factor=colour]
# Why not the MAE recipe (../vit-toy-p16_1xb32-linear-coslr-20e_toyworld-cls.py, which the
# study ran for 5 epochs): LARS moves the head by lr * eta of its norm per step, and 5
# epochs at the toy batch left it at its initialisation (training loss ln 6 throughout,
# measured), so that probe read noise (seed std 2.8 points).
_base_ = ['../knn_vit-toy-p16_k20-t0.07_toyworld-cls.py']  # the k-NN probe's data, features

protocol = dict(_delete_=True, name='clip-linear-probe', card='docs/protocols/logistic_probe.md',
                source='openai/CLIP README.md (Linear-probe evaluation)')
model = dict(type='LogisticRegressionClassifier', C=0.316, max_iter=1000)
test_evaluator = dict(topk=(1, ))
