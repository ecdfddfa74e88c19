"""Frozen-feature probes (mmpretrain scope): weighted k-NN classification (DINO's protocol).
The linear probe is mmpretrain's ImageClassifier with a frozen backbone; the dense linear
probe is ``dmt_mm.seg.BNLinearHead``."""
from .knn import KNNClassifier, knn_vote

__all__ = ['KNNClassifier', 'knn_vote']
