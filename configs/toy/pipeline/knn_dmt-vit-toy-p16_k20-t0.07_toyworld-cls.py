# Probe stage of the miniature study (tools/run_pipeline.py): weighted k-NN (DINO's
# protocol: CLS token after the final norm, cosine, k = 20, T = 0.07) of the frozen student
# on the toy world's single-object split. Nothing trains; the study runs
#   python tools/test.py THIS_CONFIG <student file> [--cfg-options ...factor=colour]
# (factor: label the same images by another factor of a version-2 world).
_base_ = ['../knn_vit-toy-p16_k20-t0.07_toyworld-cls.py']
