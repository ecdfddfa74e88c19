"""The logistic-regression linear probe (CLIP's): its fit against SciPy's L-BFGS-B on
scikit-learn's objective written here in NumPy, and the toy config through tools/test.py
against that reference on features computed outside mmengine."""
import json

import numpy as np
import pytest
import torch
from conftest import CONFIGS, TOOLS, run_tool
from scipy.optimize import minimize
from test_probes import ONE_THREAD, random_student, toy_features

from dmt_mm.models.probes import fit_logistic_regression

TOY_LOGREG = CONFIGS / 'toy' / 'pipeline' / 'logreg_dmt-vit-toy-p16_c0.316_toyworld-cls.py'


def sklearn_logistic_regression(x, y, num_classes, C=0.316):
    """Weights and biases minimising scikit-learn's multinomial objective
    ``C * sum_i CE_i + ||W||^2 / 2`` (bias unpenalised), by SciPy's L-BFGS-B."""
    x, y = np.asarray(x, np.float64), np.asarray(y)
    n, dim = x.shape

    def objective(params):
        w, b = params[:-num_classes].reshape(num_classes, dim), params[-num_classes:]
        z = x @ w.T + b
        z -= z.max(1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
        grad_z = np.exp(log_p)
        grad_z[np.arange(n), y] -= 1
        loss = -C * log_p[np.arange(n), y].sum() + 0.5 * (w ** 2).sum()
        return loss, np.concatenate([(C * grad_z.T @ x + w).ravel(), C * grad_z.sum(0)])
    res = minimize(objective, np.zeros(num_classes * (dim + 1)), jac=True, method='L-BFGS-B',
                   options=dict(maxiter=5000, gtol=1e-10, ftol=1e-15))
    return res.x[:-num_classes].reshape(num_classes, dim), res.x[-num_classes:]


def probabilities(x, w, b):
    z = np.asarray(x, np.float64) @ np.asarray(w).T + np.asarray(b)
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_fit_equals_scipy_on_sklearns_objective():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=g)
    feats = torch.randn(400, 12, generator=g) * 3
    feats[:, :4] += 2 * torch.nn.functional.one_hot(labels, 4)  # some signal, not separable
    w, b, steps = fit_logistic_regression(feats, labels, 4, C=0.316)
    ref_w, ref_b = sklearn_logistic_regression(feats, labels, 4, C=0.316)
    assert 1 < steps < 1000
    test = torch.randn(200, 12, generator=g) * 3
    ours, ref = probabilities(test, w, b), probabilities(test, ref_w, ref_b)
    assert np.abs(ours - ref).max() < 1e-4
    assert np.abs(w.numpy() - ref_w).max() < 1e-3
    # weaker regularisation gives larger weights: C is used the way scikit-learn uses it
    assert fit_logistic_regression(feats, labels, 4, C=10.0)[0].norm() > w.norm()


def test_each_labelling_gets_its_own_fit():
    """With ``extra_labels`` the probe fits one classifier per labelling of the same
    features, each equal to the SciPy reference fitted on that labelling alone."""
    from test_probes import toy_knn_model
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 8, (400,), generator=g)  # 8 = 4 categories x 2 colours
    feats = torch.randn(400, 12, generator=g) * 3
    feats[:, :8] += 2 * torch.nn.functional.one_hot(ids, 8)
    model, _ = toy_knn_model(type='LogisticRegressionClassifier', num_classes=4,
                             extra_labels=dict(colour=2))
    model.register_buffer('prototype_vecs', feats, persistent=False)
    model.register_buffer('prototype_labels', ids // 2, persistent=False)
    model.prototype_extra_labels = {'colour': ids % 2}
    model.fit_prototype()
    test = torch.randn(100, 12, generator=g) * 3
    scores = model.class_scores(test)
    for name, labels, classes in ((None, ids // 2, 4), ('colour', ids % 2, 2)):
        w, b = sklearn_logistic_regression(feats, labels, classes)
        assert np.abs(scores[name].numpy() - probabilities(test, w, b)).max() < 1e-4, name


@pytest.mark.slow
def test_toy_logistic_probe_through_test_tool(small_toy_world, tmp_path):
    """tools/test.py on the study's logistic-regression config: top-1 equals the SciPy
    reference fitted on features computed here by PIL + torchvision + the ViT."""
    state = random_student(tmp_path / 'student.pth')
    run_tool([TOOLS / 'test.py', TOY_LOGREG, tmp_path / 'student.pth', '--work-dir',
              tmp_path / 'logreg'], cwd=small_toy_world, env=ONE_THREAD)
    top1 = json.loads((tmp_path / 'logreg' / 'test_metrics.json').read_text())['accuracy/top1']
    train, train_labels = toy_features(state, small_toy_world, 'train', normalise=False)
    test, test_labels = toy_features(state, small_toy_world, 'val', normalise=False)
    w, b = sklearn_logistic_regression(train, train_labels, 6)
    expected = 100 * np.mean(probabilities(test, w, b).argmax(1) == test_labels.numpy())
    assert top1 == pytest.approx(expected, abs=1e-3)
