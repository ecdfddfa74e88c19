"""Paired statistics of the study's tables (dmt_mm.study.stats, results): means, sample std,
t-intervals and paired differences against hand computations and scipy.stats, the marks in
the table, the per-seed values in results.json and the results figure."""
import json
import math

import pytest
from scipy import stats as scipy_stats

from dmt_mm.study.results import Run, build_results
from dmt_mm.study.stats import mean_std, paired_difference, t_interval


def test_mean_std_by_hand():
    assert mean_std([50.0, 60.0, 70.0]) == (60.0, 10.0)
    assert mean_std([4.0]) == (4.0, None)
    with pytest.raises(ValueError):
        mean_std([])


def test_t_interval_by_hand_and_scipy():
    # 3 values: mean 2, sample std 1; t(0.975, 2) = 4.302653: half width 4.302653 / sqrt(3)
    low, high = t_interval([1.0, 2.0, 3.0])
    assert (low, high) == pytest.approx((2 - 2.4841377, 2 + 2.4841377), abs=1e-6)
    values = [81.2, 79.9, 83.4, 80.1, 82.6]
    expected = scipy_stats.t.interval(0.95, len(values) - 1, loc=sum(values) / len(values),
                                      scale=scipy_stats.sem(values))
    assert t_interval(values) == pytest.approx(expected)
    assert t_interval([5.0]) is None


def test_paired_difference_equals_scipys_paired_t_test():
    dmt = {0: 95.8, 1: 93.1, 2: 98.4}
    other = {0: 88.0, 1: 88.9, 2: 90.1, 3: 70.0}  # seed 3 has no partner: left out
    diff = paired_difference(other, dmt)
    a, b = [other[s] for s in (0, 1, 2)], [dmt[s] for s in (0, 1, 2)]
    result = scipy_stats.ttest_rel(a, b)
    ci = result.confidence_interval(0.95)
    assert diff['n'] == 3 and diff['seeds'] == [0, 1, 2]
    # by hand: differences -7.8, -4.2, -8.3 -> mean -6.7667, std 2.2368
    assert diff['mean'] == pytest.approx(-20.3 / 3)
    assert diff['std'] == pytest.approx(math.sqrt(((-7.8 + 20.3 / 3) ** 2 + (-4.2 + 20.3 / 3) ** 2
                                                   + (-8.3 + 20.3 / 3) ** 2) / 2))
    assert (diff['low'], diff['high']) == pytest.approx((ci.low, ci.high))
    assert diff['excludes_zero'] is True  # [-12.3, -1.2]


def test_paired_difference_that_includes_zero_and_the_single_seed():
    diff = paired_difference({0: 1.0, 1: 3.0}, {0: 2.0, 1: 2.0})
    assert diff['mean'] == 0.0 and diff['low'] < 0 < diff['high']
    assert diff['excludes_zero'] is False
    single = paired_difference({0: 5.0}, {0: 3.0, 1: 4.0})
    assert single == dict(n=1, seeds=[0], mean=2.0, std=None, low=None, high=None,
                          excludes_zero=False)
    assert paired_difference({1: 5.0}, {0: 3.0}) is None


def _runs(tmp_path, table):
    """Work dirs with test_metrics.json for {method: {seed: (knn top-1, linear top-1)}}."""
    runs = []
    for method, seeds in table.items():
        for seed, (knn, linear) in seeds.items():
            for task, value in (('knn', knn), ('linear', linear)):
                work_dir = tmp_path / f'{method}_{task}_{seed}'
                work_dir.mkdir()
                (work_dir / 'test_metrics.json').write_text(json.dumps(
                    {'accuracy/top1': value}))
                runs.append(Run(method, task, str(work_dir), seed))
    return runs


def test_table_marks_the_cells_whose_interval_excludes_zero(tmp_path):
    runs = _runs(tmp_path, {
        'DMT': {0: (60.0, 70.0), 1: (62.0, 71.0), 2: (61.0, 72.0)},
        'random': {0: (40.0, 69.0), 1: (43.0, 73.0), 2: (41.0, 70.0)}})
    out = build_results(runs, str(tmp_path), title='T')
    md = out['markdown']
    # k-NN: differences -20, -19, -20 (excludes 0); linear: -1, +2, -2 (includes 0)
    assert '| DMT |  | 61.0 ± 1.0 | 71.0 ± 1.0 | - |' in md
    assert '| random |  | 41.3 ± 1.5 * | 70.7 ± 2.1 | - |' in md
    assert '| random | 3 | -19.7 [-21.1, -18.2] * | -0.3 [-5.5, +4.8] |' in md
    row = out['rows'][1]
    knn = row['columns']['knn_top1']
    assert knn['values'] == [40.0, 43.0, 41.0] and knn['seeds'] == [0, 1, 2]
    assert knn['diff']['excludes_zero'] and not row['columns']['linear_top1']['diff'][
        'excludes_zero']
    saved = json.loads((tmp_path / 'results.json').read_text())
    assert saved['rows'][1]['columns']['knn_top1']['values'] == [40.0, 43.0, 41.0]
    assert {(r['method'], r['seed']) for r in saved['records']} == \
        {(m, s) for m in ('DMT', 'random') for s in (0, 1, 2)}


def test_factor_columns_and_the_reference_row(tmp_path):
    runs = []
    for method, values in (('A', (10.0, 20.0)), ('B', (30.0, 40.0))):
        for factor, value in zip(('colour', 'depth'), values):
            work_dir = tmp_path / f'{method}_{factor}'
            work_dir.mkdir()
            (work_dir / 'test_metrics.json').write_text(json.dumps({'mIoU': value}))
            runs.append(Run(method, f'seg_linear/{factor}', str(work_dir), 0))
    md = build_results(runs, str(tmp_path), reference='B')['markdown']
    assert '| method | teachers | linear seg mIoU (colour) | linear seg mIoU (depth) |' in md
    assert 'Paired difference from B' in md and '| A | 1 | -20.0 | -20.0 |' in md
    with pytest.raises(ValueError, match="reference method 'C' is not among the rows"):
        build_results(runs, str(tmp_path), reference='C')


def test_results_figure_has_a_panel_per_metric(tmp_path):
    import matplotlib.image as mpimg

    from dmt_mm.study.plots import plot_results_figure
    runs = _runs(tmp_path, {'DMT': {0: (60.0, 70.0), 1: (62.0, 71.0)},
                            'random': {0: (40.0, 69.0), 1: (43.0, 73.0)}})
    rows = build_results(runs, str(tmp_path))['rows']
    path = plot_results_figure(rows, str(tmp_path / 'figure.png'))
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[1] > image.shape[0]  # two panels side by side
