"""Benchmark and FLOPs tools (docs/performance.md): FLOPs against hand formulas and a second
counting library, their scaling with the number of teachers and the image size, the step
variants (naive peer, fp32 teachers), and the tools end to end on tiny
models, including the GPU script's dry run with only the pure-Python wheels."""
import copy
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import CONFIGS, REPO, TEST_DATA, assert_optimizers_update_alike
from mmengine.config import Config
from mmpretrain.registry import MODELS

import dmt_mm.models  # noqa: F401  (registers DMTViT, DMT, teachers)
from dmt_mm import analysis as B
from dmt_mm.analysis import count_flops, dmt_flops, mmengine_flops
from dmt_mm.analysis.variants import _autocast_disabled

DMT_CONFIG = CONFIGS / 'dmt' / 'dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'
TOOLS = REPO / 'tools' / 'analysis_tools'


def toy_config(prefix):
    found = sorted(p for p in (CONFIGS / 'toy').glob(f'{prefix}*.py') if 'ms-test' not in p.name)
    assert found, f'no configs/toy/{prefix}*.py'
    return found[0]


def tiny_vit(img=64, arch='vit-tiny'):
    vit = MODELS.build(dict(type='DMTViT', arch=arch, img_size=img, patch_size=16,
                            out_type='raw'))
    vit.eval()
    return vit


def vit_hand_flops(n_tokens, dims, depth, n_patches, patch=16, mlp_ratio=4):
    """2 x multiply-adds of a ViT forward, written out: per block qkv, attention (Q K^T and
    A V), projection, two MLP layers; plus the patch-embedding convolution."""
    N, D = n_tokens, dims
    block = 2 * N * D * 3 * D + 2 * 2 * N * N * D + 2 * N * D * D + 2 * 2 * N * D * mlp_ratio * D
    return depth * block + 2 * n_patches * (3 * patch * patch) * D


def dmt_cfg(k=3, img=32, **kw):
    cfg = Config.fromfile(str(DMT_CONFIG))
    return B.prepare_config(cfg, img_size=img, student_arch='vit-tiny', teacher_arch='vit-tiny',
                            num_teachers=k, random_teachers=True, **kw)


def tiny_dmt(k):
    """The shipped DMT config at ViT-T size with k random teachers, and its model."""
    torch.manual_seed(0)
    cfg = dmt_cfg(k)
    return cfg, B.build_model(cfg, 'cpu')


# ----------------------------------------------------------------------------- FLOPs
def test_vit_flops_match_hand_formula_and_mmengine():
    vit = tiny_vit(64)  # 4x4 patches + CLS
    x = torch.randn(1, 3, 64, 64)
    counted = count_flops(vit.forward_tokens, x)
    assert counted['total'] == vit_hand_flops(17, 192, 12, 16)
    assert counted['by_op']['bmm'] == 12 * 2 * 2 * 17 * 17 * 192  # attention is counted

    class Tokens(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = vit

        def forward(self, inp):
            return self.vit.forward_tokens(inp)['tokens']
    mm = mmengine_flops(Tokens(), (x,))  # multiply-adds, also counts layer norms
    matmuls = sum(v for k, v in mm['by_op'].items() if 'norm' not in k)
    assert 2 * matmuls == counted['total']


def test_flops_scale_with_image_size():
    """Linear layers see N + 1 tokens, the patch embedding N patches, attention (N + 1)^2."""
    small = count_flops(tiny_vit(32).forward_tokens, torch.randn(1, 3, 32, 32))['by_op']
    large = count_flops(tiny_vit(64).forward_tokens, torch.randn(1, 3, 64, 64))['by_op']
    assert large['addmm'] * 5 == small['addmm'] * 17
    assert large['convolution'] == 4 * small['convolution']
    assert large['bmm'] * 25 == small['bmm'] * 17 ** 2


@pytest.mark.slow
def test_dmt_flops_scale_with_teachers():
    results = {}
    for k in (1, 2, 4):
        _, model = tiny_dmt(k)
        results[k] = dmt_flops(model, (32, 32), counted_train=(k == 2))
    one = results[1]['teachers_total']
    assert one == vit_hand_flops(5, 192, 12, 4)
    for k, r in results.items():
        assert len(r['teachers']) == k
        assert r['teachers_total'] == k * one
        assert r['student'] == results[1]['student']  # the student does not depend on K
        assert r['heads'] == pytest.approx(k * results[1]['heads'])  # one head pair per teacher
        assert r['train'] == 3 * (r['student'] + r['heads']) + r['teacher_targets']
        assert r['params_heads'] > 0 and len(r['params_teachers']) == k
    # the 3x convention against forward + backward counted op by op on a real step
    assert results[2]['train_counted'] == pytest.approx(results[2]['train'], rel=0.03)


# ----------------------------------------------------------------------------- variants
def test_optim_wrapper_variants():
    cfg = Config.fromfile(str(DMT_CONFIG))
    shipped = copy.deepcopy(cfg.optim_wrapper.to_dict())
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    cpu = B.optim_wrapper_cfg(cfg, B.resolve_variant('config', 'cpu'), 'cpu')
    assert cpu['type'] == 'OptimWrapper' and 'loss_scale' not in cpu  # AMP needs CUDA
    gpu = B.optim_wrapper_cfg(cfg, B.resolve_variant('optimized', 'cuda'), 'cuda')
    assert gpu['type'] == 'AmpOptimWrapper' and gpu['dtype'] == 'bfloat16'
    assert gpu['loss_scale'] == dict(enabled=False) and gpu['optimizer']['fused'] is True
    naive = B.optim_wrapper_cfg(cfg, B.resolve_variant('naive', 'cuda'), 'cuda')
    assert naive['type'] == 'OptimWrapper'
    assert 'fused' not in naive['optimizer'] and 'foreach' not in naive['optimizer']
    foreach = B.optim_wrapper_cfg(cfg, B.resolve_variant('optimized-foreach-adamw', 'cuda'),
                                  'cuda')
    assert foreach['optimizer']['foreach'] is True and 'fused' not in foreach['optimizer']
    assert cfg.optim_wrapper.to_dict() == shipped  # the config itself is untouched


@pytest.mark.slow
def test_merged_param_groups_update_like_per_tensor_groups():
    from mmengine.optim import build_optim_wrapper
    cfg, model = tiny_dmt(1)
    variant = B.resolve_variant('optimized-merged-groups', 'cpu')
    # mmengine's own constructor (the shipped configs name the merged one)
    per_tensor_cfg = dict(B.optim_wrapper_cfg(cfg, variant, 'cpu'),
                          constructor='DefaultOptimWrapperConstructor')
    per_tensor = build_optim_wrapper(model, per_tensor_cfg).optimizer
    merged = B.build_variant_optim_wrapper(model, cfg, variant, 'cpu').optimizer
    params = [p for g in per_tensor.param_groups for p in g['params']]
    assert len(per_tensor.param_groups) == len(params) > 2  # mmengine: one group per tensor
    assert len(merged.param_groups) == 2  # with and without weight decay
    merged_params = [p for g in merged.param_groups for p in g['params']]
    assert sorted(map(id, merged_params)) == sorted(map(id, params))
    assert_optimizers_update_alike((per_tensor, merged), params)


def test_autocast_disabled_inside():
    lin = torch.nn.Linear(4, 4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with _autocast_disabled(), torch.autocast('cpu', dtype=torch.bfloat16):
        assert lin(torch.randn(2, 4)).dtype == torch.float32
    assert torch.autocast is not None and torch.autocast.__name__ == 'autocast'


@pytest.mark.slow
def test_naive_teachers_get_gradients_frozen_ones_do_not():
    from mmengine.optim import build_optim_wrapper
    cfg, model = tiny_dmt(2)
    data = B.synthetic_batch(2, (32, 32), 'cpu')
    teachers = model.target_generator.teachers
    teacher_params = lambda: [p for t in teachers for p in t.backbone.parameters()]  # noqa
    for mode, expect_grads in (('frozen', False), ('naive', True), ('fp32', False)):
        variant = B.resolve_variant(dict(amp=None, optimizer='default', attention='math',
                                         teachers=mode, name=mode), 'cpu')
        with B.variant_context(model, variant):
            ow = build_optim_wrapper(model, B.optim_wrapper_cfg(cfg, variant, 'cpu'))
            log = model.train_step(data, ow)
            assert torch.isfinite(log['loss'])
            got = [p.grad is not None for p in teacher_params()]
            assert all(got) if expect_grads else not any(got), mode
        # restored: frozen again, no gradients kept, the class forward back
        assert not any(p.requires_grad for p in teacher_params())
        assert all(p.grad is None for p in teacher_params())
        assert all('forward' not in t.__dict__ for t in teachers)
    # teacher weights never reach the optimizer
    assert not {id(p) for p in teacher_params()} & {
        id(p) for g in ow.optimizer.param_groups for p in g['params']}


@pytest.mark.slow
def test_measure_parts_and_timing_fields():
    cfg, model = tiny_dmt(2)
    variant = B.resolve_variant('optimized', 'cpu')
    parts = B.measure_parts(model, cfg, variant, 2, 'cpu', rounds=2, warmup=1)
    for clock in ('wall', 'cpu'):
        med = parts[clock]['median_s']
        assert set(med) == {'full', 'preprocess', 'teachers', 'student', 'heads', 'optimizer'}
        assert all(v > 0 for v in med.values())
        assert parts[clock]['sum_of_parts_s'] == pytest.approx(
            sum(v for k, v in med.items() if k != 'full'))
        assert parts[clock]['overhead_ratio'] == pytest.approx(
            med['full'] / parts[clock]['sum_of_parts_s'])
    assert all(p.grad is None for p in model.parameters())


# ----------------------------------------------------------------------------- tools
def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_benchmark_tool_with_naive_peer_and_pipeline(tmp_path):
    out = tmp_path / 'bench.json'
    tool = load_tool('benchmark_pretrain')
    res = tool.main([str(toy_config('dmt_')), '--batch-size', '4', '--iters', '2',
                     '--warmup', '1', '--peer', 'naive', '--peak-tflops', '0.1',
                     '--pipeline', str(TEST_DATA / 'coco_real_mini' / 'images'),
                     '--pipeline-images', '4', '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['ratios'] == pytest.approx(res['ratios'])
    names = [v['variant'] for v in saved['variants']]
    assert names == ['optimized', 'naive']
    flops = saved['flops']
    assert flops['train'] == 3 * (flops['student'] + flops['heads']) + flops['teacher_targets']
    for v in saved['variants']:
        assert v['batch_size'] == 4 and v['losses_finite']
        assert v['images_per_s'] == pytest.approx(4 / v['step_time_median_s'])
        assert v['images_per_s'] > 0 and v['images_per_s_wall'] > 0
        assert v['mfu'] == pytest.approx(flops['train'] * v['images_per_s'] / 0.1e12)
        assert v['peak_memory']['bytes'] > 0
    assert saved['variants'][1]['settings'] == dict(amp=None, optimizer='default',
                                                    attention='math', teachers='naive',
                                                    compile=False, merge_groups=False)
    assert saved['ratios']['optimized/naive'] == pytest.approx(
        saved['variants'][0]['images_per_s'] / saved['variants'][1]['images_per_s'])
    pipe = saved['pipeline']
    assert pipe['images_per_s_per_worker'] > 0 and pipe['output_shape'] == [3, 64, 64]
    assert pipe['workers_needed'] >= 1
    table = tool.main(['--summarize', str(out)])
    assert '| optimized |' in table and '| naive |' in table


@pytest.mark.slow
def test_get_flops_tool(tmp_path):
    tool = load_tool('get_flops')
    out = tool.main([str(DMT_CONFIG), '--random-teachers', '--shape', '64',
                     '--cfg-options', 'model.backbone.arch=vit-tiny',
                     'model.backbone.img_size=64', '--out', str(tmp_path / 'f.json')])
    assert out['backbone'] == vit_hand_flops(17, 192, 12, 16)
    assert set(out['teachers']) == {'mae', 'mocov3', 'ibot'}
    vit_b = vit_hand_flops(17, 768, 12, 16)
    assert all(t['flops'] == vit_b for t in out['teachers'].values())
    assert all(t['params'] > 85e6 for t in out['teachers'].values())
    assert out['dmt']['teachers_total'] == 3 * vit_b
    assert out['params_total'] < 30e6  # frozen teachers are not the model's parameters
    mm = tool.main([str(toy_config('upernet_vit-toy')), '--counter', 'mmengine'])
    torch_count = tool.main([str(toy_config('upernet_vit-toy'))])
    assert 'teachers' not in torch_count and torch_count['backbone'] > 0
    # mmengine also counts layer norms: a little more, never less
    assert torch_count['backbone'] <= mm['backbone'] <= 1.02 * torch_count['backbone']


@pytest.mark.slow
def test_gpu_script_dry_run_with_wheels_only(tmp_path):
    """The GPU script on CPU at tiny sizes, with mmengine/mmpretrain/mmcv-lite from the
    prepared wheels, mmdet/mmseg made unimportable, and the pkg_resources stand-in."""
    wheels = sorted((REPO / '.whl').glob('*.whl')) if (REPO / '.whl').is_dir() else []
    pure = [str(w) for w in wheels if 'none-any' in w.name]
    if not any('mmcv_lite' in w for w in pure) or shutil.which('timeout') is None:
        pytest.skip('.whl/ with the pure-Python wheels (mmcv_lite, mmengine, mmpretrain) is '
                    'absent: the GPU dry run needs them')
    blocker = tmp_path / 'blocker'
    blocker.mkdir()
    (blocker / 'sitecustomize.py').write_text(
        'import importlib.abc, sys\n'
        'class _Block(importlib.abc.MetaPathFinder):\n'
        '    def find_spec(self, name, path, target=None):\n'
        '        if name.split(".")[0] in ("mmdet", "mmseg"):\n'
        '            raise ModuleNotFoundError(f"No module named {name!r}")\n'
        'sys.meta_path.insert(0, _Block())\n')
    out = tmp_path / 'out'
    env = dict(os.environ, OUT=str(out), PY=sys.executable,
               DMT_BENCH_SITE=str(tmp_path / 'site'), DMT_BENCH_WHEELS=' '.join(pure),
               DMT_BENCH_PKG_SHIM='force', DMT_BENCH_PYTHONPATH=str(blocker),
               DMT_BENCH_QUICK='1', DMT_BENCH_COMPILE='0', OMP_NUM_THREADS='2')
    env.pop('PYTHONPATH', None)
    proc = subprocess.run(['bash', str(TOOLS / 'gpu_benchmark.sh')], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900)
    log = proc.stdout
    assert proc.returncode == 0, log[-4000:]
    assert str(tmp_path / 'site') + '/mmengine' in log  # the wheels' copies were used
    assert "loaded: []" in log  # no mmdet, mmseg or compiled mmcv ops
    res = json.loads((out / 'bench.json').read_text())
    assert res['heavy_modules_loaded'] == []
    names = {v['variant'] for v in res['variants'] if 'error' not in v}
    assert {'shipped', 'optimized', 'naive'} <= names
    shipped = res['shipped']
    assert shipped['end_to_end_images_per_s'] > 0 and shipped['step_images_per_s'] > 0
    assert shipped['config_settings']['param_groups'] == 2  # the merged-groups constructor
    assert shipped['config_settings']['pipeline'][0] == 'LoadRandomResizedCrop'
    assert res['loader']['images_per_cpu_s'] > 0
    teachers = json.loads((out / 'teachers.json').read_text())['modes']
    assert teachers['eager']['ms_median'] > 0
    assert 'needs a CUDA GPU' in teachers['fp8']['error']  # FP8: GPU only, said in one line
    costs = json.loads((out / 'costs.json').read_text())['results']
    assert len(costs) == 1 and 'error' not in costs[0], costs
    assert costs[0]['s_per_iter'] > 0  # 90 epochs of ImageNet at 8 x 2048:
    assert costs[0]['schedule_iters'] == 90 * -(-1281167 // (8 * 2048))
    summary = (out / 'summary.md').read_text()
    assert summary.count('| shipped |') == 1 and '| eager |' in summary


@pytest.mark.slow
def test_shipped_config_runs_as_the_train_tool_builds_it():
    """--shipped: the config trained through the launch layer's runner (its constructor,
    compile setting and data pipeline) on real photos, then its compiled step timed; the
    model comes back with the uncompiled train_step for the peers."""
    cfg = dmt_cfg(k=2)
    crops = [t for t in B.train_pipeline(cfg) if t.type == 'LoadRandomResizedCrop']
    assert crops and all(t.scale == 32 for t in crops)  # the loader crops the measured size
    cfg.compile = dict(backend='eager')  # dynamo without inductor: the same graph capture
    res, model = B.measure_shipped(cfg, B.list_images([str(TEST_DATA / 'coco_real_mini')
                                                       + '/images']), 2, 'cpu', iters=1,
                                   warmup=2, step_iters=1)
    settings = res['config_settings']
    assert settings['compiled_train_step'] and settings['compile'] == dict(backend='eager')
    assert settings['param_groups'] == 2
    assert settings['pipeline'] == ['LoadRandomResizedCrop', 'RandomFlip', 'PackInputs']
    assert res['end_to_end_images_per_s'] > 0 and res['step_images_per_s'] > 0
    assert res['iters'] == 1 and res['notes']  # AmpOptimWrapper needs CUDA: said so
    assert 'train_step' not in model.__dict__


def test_schedule_iterations_follow_the_configs():
    from dmt_mm.analysis.config_costs import gpus_of, schedule_iterations
    cfg = Config.fromfile(str(DMT_CONFIG))
    assert gpus_of(DMT_CONFIG.name) == 8
    assert schedule_iterations(cfg, 8) == 100 * -(-1281167 // 1024)  # 100 epochs, 8 x 128
    vitdet = Config.fromfile(str(CONFIGS / 'benchmarks' / 'mmdet' / (
        'cascade-mask-rcnn_dmt-vit-small-p16-win14-simplefpn_4conv1fc_8xb8-amp-lsj-100e_coco.py')))
    # ViTDet's 100 COCO epochs at 64 images per iteration: 100 x 117266 / 64 = 183,229
    assert schedule_iterations(vitdet, 8) == pytest.approx(100 * 117266 / 64, rel=1e-3)
