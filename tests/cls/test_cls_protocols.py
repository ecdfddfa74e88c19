"""The ImageNet-1K protocols against their sources: every fine-tuning and linear-probe config
(T / S / B) against the reference tables transcribed from open-mmlab/mmpretrain's MAE
benchmarks, through the protocol cards (tests/protocols.py)."""
import pytest
from protocols import check_protocol


@pytest.mark.parametrize('protocol', ['imagenet_finetune', 'imagenet_linear',
                                      'imagenet_knn'])
@pytest.mark.slow
def test_configs_match_the_source_or_the_card_says_why(protocol):
    problems = check_protocol(protocol)
    assert not problems, '\n'.join(problems)


@pytest.mark.slow
def test_collect_results_names_the_protocol_of_each_number(tmp_path):
    """A work dir holding the config mmengine dumped (a benchmark config, a config derived
    from one) -> the table's notes name the protocol and its card."""
    import json

    from conftest import CONFIGS, TOOLS, run_tool
    from mmengine.config import Config
    runs = {'cls': ('classification', 'dmt-vit-tiny-p16_8xb2048-linear-coslr-90e_in1k.py',
                    {'accuracy/top1': 70.0}),
            'seg': ('mmseg', 'upernet_dmt-vit-tiny-p16-f2p-ibot_4xb4-amp-160k_ade20k-512x512.py',
                    {'mIoU': 40.0})}
    args = []
    for task, (folder, name, metrics) in runs.items():
        work_dir = tmp_path / task
        work_dir.mkdir()
        Config.fromfile(str(CONFIGS / 'benchmarks' / folder / name)).dump(str(work_dir / name))
        (work_dir / 'test_metrics.json').write_text(json.dumps(metrics))
        args += ['--run', 'DMT', task, work_dir]
    derived = tmp_path / 'derived'
    derived.mkdir()
    Config.fromfile(str(CONFIGS / 'benchmarks' / 'classification' / runs['cls'][1])).dump(
        str(derived / 'my_linear.py'))
    (derived / 'test_metrics.json').write_text(json.dumps({'accuracy/top1': 60.0}))
    args += ['--run', 'Other', 'cls', derived]
    # a second seed of DMT cls, and Other's seg (listed before DMT's) with DMT's config:
    # one line each, not three
    args += ['--run', 'DMT', 'cls', tmp_path / 'cls', '1']
    args[4:4] = ['--run', 'Other', 'seg', tmp_path / 'seg']
    out = run_tool([TOOLS / 'analysis_tools' / 'collect_results.py', *args, '--out-dir',
                    tmp_path / 'out'], cwd=tmp_path).stdout
    notes = [line for line in out.splitlines() if line.startswith('- ')]
    assert notes == [
        f'- DMT cls: imagenet-linear protocol (docs/protocols/imagenet_linear.md; config '
        f'{runs["cls"][1]})',
        f'- seg (every row): ade20k-ibot protocol (docs/protocols/ade20k_ibot.md; config '
        f'{runs["seg"][1]})',
        '- Other cls: config my_linear.py, not a shipped benchmark config, derived from the '
        'imagenet-linear protocol (docs/protocols/imagenet_linear.md)']
    recorded = json.loads((tmp_path / 'out' / 'results.json').read_text())
    info = recorded['rows'][0]['info']
    assert info['cls_protocol']['name'] == 'imagenet-linear'
    assert info['seg_protocol']['name'] == 'ade20k-ibot'
