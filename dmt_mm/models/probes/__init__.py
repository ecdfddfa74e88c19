"""Frozen-feature probes (mmpretrain scope): weighted k-NN classification (DINO's protocol)
and logistic regression on cached features (CLIP's linear probe). The trained linear probe
is mmpretrain's ImageClassifier with a frozen backbone; the dense linear probe is
``dmt_mm.seg.BNLinearHead``."""
from .knn import KNNClassifier, knn_vote
from .logistic import LogisticRegressionClassifier, fit_logistic_regression

__all__ = ['KNNClassifier', 'knn_vote', 'LogisticRegressionClassifier',
           'fit_logistic_regression']
