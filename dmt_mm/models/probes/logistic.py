"""Linear classification of frozen features by logistic regression: CLIP's linear probe.

openai/CLIP ``README.md`` ("Linear-probe evaluation") caches the image features of the
training and test sets once and fits scikit-learn's
``LogisticRegression(random_state=0, C=0.316, max_iter=1000)`` on the raw features: a
multinomial L2-regularised logistic regression solved by L-BFGS, which minimises
``C * sum_i CE_i + ||W||^2 / 2`` (the bias is not penalised). This module minimises the same
objective (divided by ``C * N``) with ``torch.optim.LBFGS`` in float64, on the features the
k-NN probe extracts (CLS token after the final norm, not normalised), so it reuses
:class:`KNNClassifier`'s extraction, multi-rank gathering and ``feature_cache``.

Why beside the trained linear probe (MAE's BN + linear head, LARS): LARS scales each step to
``lr * eta`` of the weight's norm, so a short schedule leaves the head at its initialisation
(the toy study's 5 epochs did: training loss ln 6 throughout); the fit here converges to the
unique optimum, so two runs on the same features agree and only the features vary.
"""
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmpretrain.registry import MODELS

from dmt_mm.errors import ConfigError

from .knn import KNNClassifier


def fit_logistic_regression(features: torch.Tensor, labels: torch.Tensor, num_classes: int,
                            C: float = 0.316, max_iter: int = 1000):
    """(weight C x D, bias C) minimising mean cross-entropy + ||weight||^2 / (2 C N)."""
    x = features.double()
    n, dim = x.shape
    weight = torch.zeros(num_classes, dim, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    # scikit-learn stops at a gradient of 1e-4 of its objective, C * N times this one's
    optimizer = torch.optim.LBFGS([weight, bias], lr=1, max_iter=max_iter,
                                  tolerance_grad=1e-4 / (C * n), tolerance_change=1e-12,
                                  history_size=10, line_search_fn='strong_wolfe')

    def closure():
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight.t() + bias, labels) + \
            weight.pow(2).sum() / (2 * C * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    steps = optimizer.state[weight].get('n_iter', 0)
    return weight.detach(), bias.detach(), steps


@MODELS.register_module()
class LogisticRegressionClassifier(KNNClassifier):
    """Frozen backbone + logistic regression fitted on the training set's features.

    Args:
        C: inverse regularisation strength, as scikit-learn's (CLIP: 0.316).
        max_iter: L-BFGS iterations at most (CLIP: 1000).
        Other arguments as :class:`KNNClassifier` (``k`` and ``temperature`` unused).
    """

    normalise_features = False  # CLIP fits the raw features

    def __init__(self, *args, C: float = 0.316, max_iter: int = 1000, **kwargs):
        super().__init__(*args, **kwargs)
        if C <= 0 or max_iter < 1:
            raise ConfigError(f'logistic regression needs C > 0 and max_iter >= 1, got C={C}, '
                              f'max_iter={max_iter}')
        self.C = C
        self.max_iter = max_iter

    def fit_prototype(self):
        """Fit one classifier per labelling on the training features (the k-NN size check
        does not apply)."""
        self.classifiers = {}
        for name, labels, classes in self.labellings():
            weight, bias, steps = fit_logistic_regression(
                self.prototype_vecs.cpu(), labels.cpu(), classes, self.C, self.max_iter)
            print_log(f'logistic regression{f" ({name})" if name else ""}: fitted on '
                      f'{labels.numel()} training features in {steps} L-BFGS iterations '
                      f'(C={self.C})', logger='current')
            device = self.prototype_vecs.device
            self.classifiers[name] = (weight.to(device), bias.to(device))

    def _probabilities(self, inputs: torch.Tensor, name=None) -> torch.Tensor:
        weight, bias = self.classifiers[name]
        return (inputs.double() @ weight.t() + bias).softmax(dim=1).to(inputs.dtype)

    def matching(self, inputs: torch.Tensor):
        """Class probabilities of the fitted classifier."""
        return self._probabilities(inputs)

    def class_scores(self, features: torch.Tensor):
        """Class probabilities of every labelling's classifier."""
        return {name: self._probabilities(features, name) for name, _, _ in self.labellings()}

    def loss(self, inputs, data_samples):
        raise RuntimeError('the logistic-regression probe is fitted when it is tested: run '
                           'tools/test.py with this config')
