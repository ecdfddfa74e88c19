"""What the DMT configs run is what is fast (docs/performance.md): bf16 AMP without a loss
scaler, fused AdamW with merged param groups and torch.compile, as tools/train.py resolves
them; no graph break in the student, the head, the losses and the target norms; the
compiled loss region and the teacher execution options compute the same thing as eager."""
import importlib.util

import pytest
import torch
import torch._dynamo
from conftest import CONFIGS, REPO, assert_optimizers_update_alike
from mmengine.config import Config
from mmpretrain.registry import MODELS
from torch.overrides import TorchFunctionMode

import dmt_mm.models  # noqa: F401
import dmt_mm.optim  # noqa: F401
from dmt_mm import analysis as A
from dmt_mm.engine.launch import load_config
from dmt_mm.models.teachers.execution import TeacherExecution, check_fp8_device

DMT_CONFIGS = sorted((CONFIGS / 'dmt').glob('*.py'))
S100 = CONFIGS / 'dmt' / 'dmt_vit-small-p16_mae-mocov3-ibot_8xb128-amp-coslr-100e_in1k.py'
TINY_STUDENT = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
TINY_TEACHER = dict(embed_dims=48, num_layers=2, num_heads=2, feedforward_channels=96)


def train_tool():
    spec = importlib.util.spec_from_file_location('train_tool', REPO / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_dmt(k=2, img=32, **model_options):
    """The shipped ViT-S config with tiny widths, k random teachers (same code paths)."""
    torch.manual_seed(0)
    cfg = Config.fromfile(str(S100))
    A.prepare_config(cfg, img_size=img, student_arch=TINY_STUDENT, teacher_arch=TINY_TEACHER,
                     num_teachers=k, random_teachers=True)
    cfg.model.update(model_options)
    return cfg, A.build_model(cfg, 'cpu')


def explain(fn, *args, **kwargs):
    torch._dynamo.reset()
    return torch._dynamo.explain(fn)(*args, **kwargs)


# ------------------------------------------------------------------ resolved configs
@pytest.mark.slow
def test_configs_resolve_to_bf16_without_loss_scaler_and_compile():
    """Every config of configs/dmt/ as tools/train.py resolves it (load_config +
    merge_args), with and without --amp: bf16 autocast, no loss scaling, fused AdamW with
    merged groups, mmengine's compile."""
    tool = train_tool()
    assert len(DMT_CONFIGS) >= 10
    for path in DMT_CONFIGS:
        loaded = load_config(str(path))
        for amp_flag in (False, True):
            args = tool.parse_args([str(path)] + (['--amp'] if amp_flag else []))
            cfg = tool.merge_args(loaded.copy(), args)
            ow = cfg.optim_wrapper
            where = (path.name, amp_flag)
            assert ow.type == 'AmpOptimWrapper' and ow.dtype == 'bfloat16', where
            assert ow.loss_scale == dict(enabled=False), where  # --amp keeps it
            assert ow.optimizer.fused is True, where
            assert ow.constructor == 'MergedGroupsOptimWrapperConstructor', where
            assert cfg.compile is True, where  # mmengine: torch.compile(train_step)
            assert 'dmt_mm.optim' in cfg.custom_imports.imports, where


def test_bf16_wrapper_autocasts_and_never_scales(monkeypatch):
    """The shipped optim wrapper, built by mmengine from the config (its CUDA check
    patched, since this machine has none): the forward's matmuls run in bf16, the GradScaler
    is disabled (the loss is not multiplied, the step is the optimizer's own) and the
    groups are merged."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    cfg, model = tiny_dmt()
    ow_cfg = cfg.optim_wrapper.to_dict()
    ow_cfg['optimizer'].pop('fused')  # fused AdamW on CPU tensors needs torch's CPU kernel
    with A.quiet_mmengine_log():
        ow = build_optim_wrapper(model, ow_cfg)
    assert type(ow).__name__ == 'AmpOptimWrapper' and ow.cast_dtype == torch.bfloat16
    assert not ow.loss_scaler.is_enabled()
    loss = torch.tensor(3.0, requires_grad=True)
    assert ow.loss_scaler.scale(loss) is loss
    assert len(ow.optimizer.param_groups) == 2  # decay / no decay
    dtypes = []
    hook = model.head.tfd_heads['mae'].fc1.register_forward_hook(
        lambda m, i, o: dtypes.append(o.dtype))
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    log = model.train_step(A.synthetic_batch(2, (32, 32), 'cpu'), ow)
    hook.remove()
    assert dtypes == [torch.bfloat16] and torch.isfinite(log['loss'])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_merged_groups_constructor_updates_like_one_group_per_tensor():
    from mmengine.optim import build_optim_wrapper
    cfg, model = tiny_dmt(k=1)
    base = dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.05),
                paramwise_cfg=cfg.optim_wrapper.paramwise_cfg.to_dict())
    with A.quiet_mmengine_log():
        per_tensor = build_optim_wrapper(model, base).optimizer
        merged = build_optim_wrapper(
            model, dict(base, constructor='MergedGroupsOptimWrapperConstructor')).optimizer
    params = [p for g in per_tensor.param_groups for p in g['params']]
    assert len(per_tensor.param_groups) == len(params) > 2
    assert sorted(g['weight_decay'] for g in merged.param_groups) == [0.0, 0.05]
    assert sorted(id(p) for g in merged.param_groups for p in g['params']) == \
        sorted(map(id, params))
    assert_optimizers_update_alike((per_tensor, merged), params, steps=2)


class _CountRandom(TorchFunctionMode):
    NAMES = ('rand', 'randn', 'randint', 'randperm', 'bernoulli', 'dropout', 'uniform_',
             'normal_', 'multinomial')

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, '__name__', '')
        kwargs = kwargs or {}
        if 'dropout' in name:  # F.dropout(x, p, training): a draw only when it drops
            p = args[1] if len(args) > 1 else kwargs.get('p', 0.5)
            training = args[2] if len(args) > 2 else kwargs.get('training', True)
            if p > 0 and training:
                self.calls.append(name)
        elif name in self.NAMES or name.rstrip('_') in self.NAMES:
            self.calls.append(name)
        return func(*args, **kwargs)


@pytest.mark.slow
def test_shipped_dmt_forward_draws_no_random_numbers():
    """tools/train.py turns per-sample randomness off when the config compiles (its
    TorchFunctionMode cannot be traced); the DMT configs' training forward draws nothing
    at random (no masking, drop path or teacher dropping), so N ranks still follow one
    process. Counted on the shipped ViT-S model config at tiny widths."""
    cfg, model = tiny_dmt()
    assert cfg.model.mask_ratio == 0 and cfg.model.head.teacher_drop_prob == 0
    model.train()
    x = torch.randn(2, 3, 32, 32)
    with _CountRandom() as counter:
        model.loss(x)
    assert counter.calls == []
    cfg, model = tiny_dmt(**{'backbone': dict(cfg.model.backbone, drop_path_rate=0.1)})
    model.train()
    with _CountRandom() as counter:  # the counter sees draws where there are some
        model.loss(x)
    assert counter.calls


# ------------------------------------------------------------------ graph breaks
def test_student_compiles_without_graph_breaks_with_drop_path():
    vit = MODELS.build(dict(type='DMTViT', arch=TINY_STUDENT, img_size=32, patch_size=16,
                            drop_path_rate=0.1, out_type='raw'))
    drop = [m.drop_prob for m in vit.modules() if type(m).__name__ == 'DropPath']
    assert drop and all(type(p) is float for p in drop) and max(drop) == pytest.approx(0.1)
    vit.train()
    out = explain(vit.forward_tokens, torch.randn(2, 3, 32, 32), layers=[0])
    assert out.graph_break_count == 0, out.break_reasons
    assert out.graph_count == 1


@pytest.mark.parametrize('norm', ['ln', 'none', pytest.param('ema_std', marks=pytest.mark.slow),
                                  pytest.param('phis', marks=pytest.mark.slow)])
@pytest.mark.slow
def test_loss_head_and_target_norms_compile_without_graph_breaks(norm):
    """The whole DMT loss (student, teachers, target norms, TFD/SFD heads, losses) is one
    graph. Running-statistics norms update outside the graph while their statistics move;
    once frozen (max_updates reached) they are in the graph too."""
    spec = norm if norm in ('ln', 'none') else dict(
        type={'ema_std': 'EMAStdTargetNorm', 'phis': 'PHISTargetNorm'}[norm], max_updates=1)
    _, model = tiny_dmt(target_generator=dict(target_norm=spec))
    model.train()
    x = torch.randn(2, 3, 32, 32)
    if norm in ('ema_std', 'phis'):
        warm = explain(model.loss, x)  # the one update runs eagerly (a break), then frozen
        assert warm.graph_break_count > 0
    out = explain(model.loss, x)
    assert out.graph_break_count == 0, [str(r.reason)[:200] for r in out.break_reasons]
    assert out.graph_count == 1
    student = model.student_features(x)
    targets = model.target_generator(x, student['grid'])
    head = explain(model.head.loss, student, targets)
    assert head.graph_break_count == 0 and head.graph_count == 1


@pytest.mark.slow
def test_compiled_tail_gives_the_eager_losses_and_gradients():
    """compile_tail: normalisation + heads + losses of every teacher in one inductor
    region; same loss terms and gradients (student and heads) as the eager path."""
    _, eager = tiny_dmt(k=2)
    _, fused = tiny_dmt(k=2, compile_tail=True)
    fused.load_state_dict(eager.state_dict())
    for t_e, t_f in zip(eager.target_generator.teachers, fused.target_generator.teachers):
        t_f.backbone.load_state_dict(t_e.backbone.state_dict())
    x = torch.randn(4, 3, 32, 32)
    results = []
    torch._dynamo.reset()
    for model in (eager, fused):
        model.train()
        losses = model.loss(x)
        total = sum(v for k, v in losses.items() if 'loss' in k)
        total.backward()
        results.append((losses, {n: p.grad.clone() for n, p in model.named_parameters()
                                 if p.grad is not None}))
    (l_e, g_e), (l_f, g_f) = results
    assert set(l_e) == set(l_f) and set(g_e) == set(g_f)
    assert any(n.startswith('backbone.') for n in g_e) and any(n.startswith('head.') for n in g_e)
    for k in l_e:
        torch.testing.assert_close(l_f[k], l_e[k], rtol=1e-5, atol=1e-6)
    for n in g_e:
        torch.testing.assert_close(g_f[n], g_e[n], rtol=1e-4, atol=1e-6)
    assert fused._compiled_tail is not None


@pytest.mark.slow
def test_compiled_train_step_is_not_recompiled_for_each_batch(small_toy_world, monkeypatch):
    """The runner tools/train.py builds, with mmengine's ``compile`` (eager backend: dynamo's
    graph capture without code generation), on the toy DMT config: every batch brings other
    images (other ``img_path`` strings in the data samples), and after the first two
    iterations nothing is compiled any more. Before the runner kept the data preprocessor
    out of the graph, every iteration compiled the step again."""
    from mmengine.hooks import Hook

    from dmt_mm.engine.launch import build_runner
    monkeypatch.chdir(small_toy_world)
    cfg = load_config(str(CONFIGS / 'toy' / 'dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py'),
                      {'compile': dict(backend='eager'), 'train_cfg.max_iters': 5},
                      work_dir=str(small_toy_world / 'work_dirs' / 'compiled_step'))
    compiled = []

    class CountCompiledFrames(Hook):
        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            compiled.append(torch._dynamo.utils.counters['frames']['total'])

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        runner = build_runner(cfg)
        runner.register_hook(CountCompiledFrames())
        runner.train()
        graphs = torch._dynamo.utils.counters['stats']['unique_graphs']
    finally:
        torch._dynamo.reset()  # no compiled code left for the tests that follow
    assert len(compiled) == 5 and compiled[0] > 0 and graphs > 0  # it did compile
    assert compiled[1] == compiled[-1], compiled


# ------------------------------------------------------------------ teacher execution
def test_teacher_execution_options_are_checked():
    assert TeacherExecution.build(None).is_default
    assert TeacherExecution.build('compile').mode == 'compile'
    with pytest.raises(ValueError, match="mode 'fast' is not one of"):
        TeacherExecution.build(dict(mode='fast'))
    with pytest.raises(ValueError, match='unknown key .fp16.'):
        TeacherExecution.build(dict(fp16=True))
    with pytest.raises(ValueError, match='freezing needs mode'):
        TeacherExecution.build(dict(freezing=True))
    with pytest.raises(RuntimeError, match=r'fp8=True needs a CUDA GPU .* run on cpu'):
        check_fp8_device(torch.device('cpu'))


def test_fp8_teachers_on_cpu_fail_with_one_clear_line():
    _, model = tiny_dmt(k=1, target_generator=dict(teacher_execution=dict(fp8=True)))
    with pytest.raises(RuntimeError, match='Remove teacher_execution.fp8'):
        model.loss(torch.randn(1, 3, 32, 32))


@pytest.mark.slow
def test_compiled_teachers_give_the_eager_targets():
    _, eager = tiny_dmt(k=2)
    _, compiled = tiny_dmt(k=2, target_generator=dict(teacher_execution=dict(mode='compile')))
    for t_e, t_c in zip(eager.target_generator.teachers, compiled.target_generator.teachers):
        t_c.backbone.load_state_dict(t_e.backbone.state_dict())
        assert callable(t_c.backbone.__dict__['forward_tokens'])  # routed through the runner
    x = torch.randn(2, 3, 32, 32)
    torch._dynamo.reset()
    ref = eager.target_generator(x, (2, 2))
    got = compiled.target_generator(x, (2, 2))
    for r, g in zip(ref, got):
        assert set(r) == set(g)
        for key in r:
            torch.testing.assert_close(g[key], r[key], rtol=1e-4, atol=1e-5)


def test_teacher_attention_is_fused_sdpa(monkeypatch):
    """The teachers' attention goes through F.scaled_dot_product_attention (flash /
    memory-efficient kernels on GPU), not a hand-written softmax(QK^T)V."""
    import torch.nn.functional as F
    calls = []
    original = F.scaled_dot_product_attention

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)
    _, model = tiny_dmt(k=1)
    for layer in model.target_generator.teachers[0].backbone.layers:
        monkeypatch.setattr(layer.attn, 'scaled_dot_product_attention', counting)
    model.target_generator.teachers[0](torch.randn(1, 3, 32, 32))
    assert len(calls) == TINY_TEACHER['num_layers']
