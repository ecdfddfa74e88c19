"""The DMT algorithm on tiny models: every loss term against a hand computation written here
(TFD, SFD, fusion modes, teacher dropping, masking, resized teacher grids), gradients and
teacher immutability, K = 1..3, checkpoints without teachers, clear errors."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS

import dmt_mm.models  # noqa: F401  (registers everything)

S_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)
T_ARCH = dict(embed_dims=24, num_layers=3, num_heads=2, feedforward_channels=48)
DECODER = dict(type='MAEPretrainDecoder', decoder_embed_dim=16, decoder_depth=1,
               decoder_num_heads=2)


def teacher_cfg(name, patch=8, img=32, arch=T_ARCH, **kwargs):
    return dict(type='FrozenViTTeacher', name=name,
                backbone=dict(arch=arch, img_size=img, patch_size=patch), **kwargs)


GENERATOR_KEYS = ('target_norm', 'teacher_checkpoints', 'resize_mode', 'resize_antialias')
HEAD_KEYS = ('tfd', 'sfd', 'loss', 'fusion', 'teacher_drop_prob')


def dmt_cfg(teachers=('a', 'b'), **kwargs):
    """A DMT config with a 32-d student (patch 8 on 32 px: a 4x4 grid) and random frozen
    teachers; target generator and head options go to their parts."""
    teachers = [teacher_cfg(t) if isinstance(t, str) else t for t in teachers]
    generator = {k: kwargs.pop(k) for k in GENERATOR_KEYS if k in kwargs}
    head = {k: kwargs.pop(k) for k in HEAD_KEYS if k in kwargs}
    return dict(type='DMT', backbone=dict(arch=S_ARCH, img_size=32, patch_size=8),
                target_generator=dict(teachers=teachers, allow_random_teachers=True, **generator),
                head=dict(type='DMTDistillHead', **head), **kwargs)


def build(teachers=('a', 'b'), seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dmt_cfg(teachers, **kwargs))
    model.init_weights()
    # random but non-trivial teachers (pos-embed, CLS token)
    for teacher in model.target_generator.teachers:
        torch.nn.init.trunc_normal_(teacher.backbone.pos_embed, std=0.5)
        torch.nn.init.trunc_normal_(teacher.backbone.cls_token, std=0.5)
    return model


def images(b=3, seed=1):
    return torch.randn(b, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- independent reference
def ln(x):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(((x - mean) ** 2).mean(-1, keepdim=True) + 1e-6)


def sl1(pred, target, beta=2.0):
    """Per-token smooth-L1 (mean over channels), written out."""
    d = (pred - target).abs()
    return torch.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta).mean(-1)


def wmean(values, weight=None):
    """Per-sample mean over tokens, optionally weighted."""
    if weight is None:
        return values.mean(1)
    return (values * weight).sum(1) / weight.sum(1)


def to_map(tokens, grid):
    B, N, C = tokens.shape
    return tokens.permute(0, 2, 1).reshape(B, C, *grid)


def hand_terms(model, x, a=0.5, teacher_grid_fn=None, student=None, token_weight=None):
    """Per teacher: per-sample TFD and SFD losses (B,), with LN targets and smooth-L1."""
    if student is None:
        s = model.backbone.forward_tokens(x)
        seq, grid = s['tokens'], s['grid']
    else:
        seq, grid = student
    terms = {}
    for teacher in model.target_generator.teachers:
        t = teacher(x)
        patch = t['patch']
        if tuple(t['grid']) != tuple(grid):
            patch = teacher_grid_fn(to_map(patch, t['grid'])).flatten(2).transpose(1, 2)
        cls_t, patch_t = ln(t['cls']), ln(patch)
        pred = model.head.tfd_heads[teacher.name](seq)
        tfd = a * sl1(pred[:, 0], cls_t) + (1 - a) * wmean(sl1(pred[:, 1:], patch_t), token_weight)
        sfd = None
        if model.head.sfd_cfg is not None:
            pmap = model.head.sfd_adaptors[teacher.name](to_map(seq[:, 1:], grid))
            sfd = wmean(sl1(pmap.flatten(2).transpose(1, 2), patch_t), token_weight)
        terms[teacher.name] = (tfd, sfd)
    return terms


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(actual.detach().float(), torch.as_tensor(expected).detach().float(),
                               rtol=tol, atol=tol)


# ---------------------------------------------------------------- loss terms
def test_fixed_fusion_terms_and_total_equal_hand_computation():
    model = build(tfd=dict(loss_weight=0.7, cls_weight=0.3), sfd=dict(loss_weight=1.3))
    x = images()
    losses = model.loss(x)
    assert set(losses) == {'loss_tfd_a', 'loss_tfd_b', 'loss_sfd_a', 'loss_sfd_b'}
    terms = hand_terms(model, x, a=0.3)
    expected_total = 0
    for name, (tfd, sfd) in terms.items():
        close(losses[f'loss_tfd_{name}'], 0.7 * 0.5 * tfd.mean())
        close(losses[f'loss_sfd_{name}'], 1.3 * 0.5 * sfd.mean())
        expected_total = expected_total + 0.7 * 0.5 * tfd.mean() + 1.3 * 0.5 * sfd.mean()
    total, log_vars = model.parse_losses(losses)
    close(total, expected_total)
    close(log_vars['loss'], expected_total)


def test_fixed_fusion_with_given_weights():
    model = build(fusion=dict(mode='fixed', weights=[0.2, 0.8]))
    x = images()
    losses = model.loss(x)
    terms = hand_terms(model, x)
    for w, (name, (tfd, sfd)) in zip([0.2, 0.8], terms.items()):
        close(losses[f'loss_tfd_{name}'], w * tfd.mean())
        close(losses[f'loss_sfd_{name}'], w * sfd.mean())


def test_adaptive_fusion_softmax_of_detached_losses():
    model = build(fusion=dict(mode='adaptive', temperature=0.05), sfd=None)
    x = images()
    losses = model.loss(x)
    raw = torch.stack([tfd.mean() for tfd, _ in hand_terms(model, x).values()])
    weights = torch.exp(raw / 0.05) / torch.exp(raw / 0.05).sum()
    for k, name in enumerate(['a', 'b']):
        close(losses[f'raw_tfd_{name}'], raw[k])
        close(losses[f'weight_tfd_{name}'], weights[k])
        close(losses[f'loss_tfd_{name}'], weights[k] * raw[k])
    total, log_vars = model.parse_losses(losses)
    close(total, (weights * raw).sum())  # weight_* / raw_* are logged, not summed
    assert 'weight_tfd_a' in log_vars and 'raw_tfd_a' in log_vars
    # the weights are constants for backprop: d total / d head_a = w_a * d L_a / d head_a
    bias = model.head.tfd_heads['a'].fc2.bias
    g_model = torch.autograd.grad(total, bias)[0]
    tfd_a = hand_terms(model, x)['a'][0].mean()
    g_hand = torch.autograd.grad(weights[0].detach() * tfd_a, bias)[0]
    close(g_model, g_hand)


def test_learned_uncertainty_weights_and_their_gradient():
    model = build(fusion='learned', tfd=dict(loss_weight=2.0))
    s = torch.tensor([0.5, -0.3])
    with torch.no_grad():
        model.head.fusion_log_vars['tfd'].copy_(s)
    x = images()
    losses = model.loss(x)
    raw = torch.stack([tfd.mean() for tfd, _ in hand_terms(model, x).values()]).detach()
    for k, name in enumerate(['a', 'b']):
        close(losses[f'loss_tfd_{name}'], 2.0 * torch.exp(-s[k]) / 2 * raw[k])
    close(losses['loss_tfd_uncertainty'], 2.0 * s.sum() / 2)
    close(losses['loss_sfd_uncertainty'], 0.0)
    model.parse_losses(losses)[0].backward()
    # d/ds_k [2 * (exp(-s_k) L_k + s_k) / 2] = -exp(-s_k) L_k + 1
    close(model.head.fusion_log_vars['tfd'].grad, -torch.exp(-s) * raw + 1)


def test_sfd_with_several_blocks_fuses_them_by_channel_concatenation():
    model = build(tfd=None, sfd=dict(teacher_layers=[1, -1]))
    # depth fractions: teacher block 2/3 -> student block round(2 * 2 / 3) - 1 = 0; last -> 1
    assert model.head.sfd_layers == [([1, 2], [0, 1])] * 2
    assert all(t.out_layers == [1] for t in model.target_generator.teachers)
    x = images()
    losses = model.loss(x)
    s = model.backbone.forward_tokens(x, layers=[0])
    s_map = torch.cat([to_map(s['layers'][0][:, 1:], s['grid']),
                       to_map(s['tokens'][:, 1:], s['grid'])], dim=1)
    for teacher in model.target_generator.teachers:
        t = teacher(x)
        pred = model.head.sfd_adaptors[teacher.name](s_map)  # (B, 2 * D_k, 4, 4)
        p1, p2 = pred.flatten(2).transpose(1, 2).chunk(2, dim=-1)
        expected = (sl1(p1, ln(t['layers'][1])).mean() + sl1(p2, ln(t['patch'])).mean()) / 2
        close(losses[f'loss_sfd_{teacher.name}'], expected / 2)


def test_sfd_student_map_is_built_once_per_distinct_student_blocks():
    """Teachers reading the same student blocks share one student map (one tensor), a
    teacher of another depth (other depth fractions) gets its own."""
    shallow = dict(T_ARCH, num_layers=2)
    model = build(teachers=['a', 'b', teacher_cfg('c', arch=shallow)], tfd=None,
                  sfd=dict(teacher_layers=[1, -1]))
    assert [s for _, s in model.head.sfd_layers] == [[0, 1], [0, 1], [1, 1]]
    seen = {}
    for name, adaptor in model.head.sfd_adaptors.items():
        adaptor.register_forward_pre_hook(lambda m, args, name=name: seen.update({name: args[0]}))
    model.loss(images())
    assert seen['a'] is seen['b'] and seen['c'] is not seen['a']
    assert seen['a'].shape[1] == seen['c'].shape[1] == 2 * 32  # two student blocks each


def test_other_loss_types_are_used():
    model = build(loss=dict(type='CosineDistillLoss'), sfd=dict(loss=dict(type='MSEDistillLoss')))
    x = images()
    losses = model.loss(x)
    s = model.backbone.forward_tokens(x)
    t = model.target_generator.teachers[0](x)
    pred = model.head.tfd_heads['a'](s['tokens'])
    cos = lambda p, q: 1 - (p * q).sum(-1) / p.norm(dim=-1) / q.norm(dim=-1)  # noqa: E731
    tfd = 0.5 * cos(pred[:, 0], ln(t['cls'])).mean() + \
        0.5 * cos(pred[:, 1:], ln(t['patch'])).mean()
    close(losses['loss_tfd_a'], tfd / 2)
    pmap = model.head.sfd_adaptors['a'](to_map(s['tokens'][:, 1:], s['grid']))
    mse = ((pmap.flatten(2).transpose(1, 2) - ln(t['patch'])) ** 2).mean()
    close(losses['loss_sfd_a'], mse / 2)


def test_teacher_dropping_weights_samples_by_hand(monkeypatch):
    model = build(teachers=('a', 'b', 'c'), teacher_drop_prob=0.5)
    x = images(4)
    M = torch.tensor([[3., 0., 0.], [1.5, 1.5, 0.], [1., 1., 1.], [0., 0., 3.]])
    monkeypatch.setattr(model.head, '_teacher_sample_weights', lambda B, K, device: M)
    losses = model.loss(x)
    for k, (name, (tfd, sfd)) in enumerate(hand_terms(model, x).items()):
        close(losses[f'loss_tfd_{name}'], (M[:, k] * tfd).mean() / 3)
        close(losses[f'loss_sfd_{name}'], (M[:, k] * sfd).mean() / 3)


def test_teacher_drop_weights_keep_one_teacher_and_rescale():
    model = build(teachers=('a', 'b', 'c'), teacher_drop_prob=0.5)
    torch.manual_seed(0)
    w = model.head._teacher_sample_weights(4000, 3, 'cpu')
    kept = w > 0
    assert kept.any(1).all()
    close(w.sum(1), torch.full((4000,), 3.0))
    close(w[kept], (3.0 / kept.sum(1, keepdim=True).float()).expand_as(w)[kept])
    # P(drop) = 0.5 each, all-dropped rows (1/8) keep one: dropped fraction (1.5 - 1/8) / 3
    assert abs((~kept).float().mean().item() - 1.375 / 3) < 0.03


# ---------------------------------------------------------------- masking
@pytest.mark.slow
@pytest.mark.parametrize('loss_on', ['masked', 'all'])
def test_masked_student_path_equals_hand_computation(loss_on):
    model = build(mask_ratio=0.5, mask_loss_on=loss_on, neck=DECODER)
    recorded = {}
    original = model._random_masking

    def record(*args):
        recorded['out'] = original(*args)
        return recorded['out']

    model._random_masking = record
    x = images()
    losses = model.loss(x)
    keep, mask, restore = recorded['out']
    assert keep.shape == (3, 8) and mask.sum(1).tolist() == [8.0] * 3
    tokens = model.backbone.forward_tokens(x, keep_index=keep)['tokens']
    assert tokens.shape[1] == 1 + 8  # CLS + visible patches only
    seq = torch.cat([tokens[:, :1], model.neck(tokens, restore)], dim=1)
    weight = mask if loss_on == 'masked' else None
    for name, (tfd, sfd) in hand_terms(model, x, student=(seq, (4, 4)),
                                       token_weight=weight).items():
        close(losses[f'loss_tfd_{name}'], tfd.mean() / 2)
        close(losses[f'loss_sfd_{name}'], sfd.mean() / 2)
    model.parse_losses(losses)[0].backward()
    assert model.neck.mask_token.grad is not None


def test_masking_rejects_intermediate_student_blocks():
    with pytest.raises(ValueError, match='student_layers'):
        build(mask_ratio=0.5, neck=DECODER, sfd=dict(teacher_layers=[1, -1]))


# ---------------------------------------------------------------- teacher grids
def test_patch4_teacher_grid_is_resized_to_the_student_grid():
    """A patch-4 teacher gives 8x8 tokens; bilinear 2x downsampling without antialias is
    exactly 2x2 average pooling, an independent reference."""
    model = build(teachers=[teacher_cfg('fine', patch=4), 'b'])
    x = images()
    targets = model.target_generator(x, (4, 4))
    t = model.target_generator.teachers[0](x)
    assert tuple(t['grid']) == (8, 8)
    pooled = F.avg_pool2d(to_map(t['patch'], (8, 8)), 2).flatten(2).transpose(1, 2)
    close(targets[0][2], ln(pooled))
    losses = model.loss(x)
    for name, (tfd, sfd) in hand_terms(model, x, teacher_grid_fn=lambda m: F.avg_pool2d(m, 2)
                                       ).items():
        close(losses[f'loss_tfd_{name}'], tfd.mean() / 2)
        close(losses[f'loss_sfd_{name}'], sfd.mean() / 2)


def test_teacher_at_another_resolution_and_patch_16():
    """img_size 48 with patch 8 -> 6x6 and patch 16 -> 2x2: both resized to 4x4."""
    model = build(teachers=[teacher_cfg('big', img=48, img_size=48),
                            teacher_cfg('coarse', patch=16)])
    x = images()
    targets = model.target_generator(x, (4, 4))
    for k, grid in enumerate([(6, 6), (2, 2)]):
        t = model.target_generator.teachers[k](x)
        assert tuple(t['grid']) == grid
        ref = F.interpolate(to_map(t['patch'], grid), size=(4, 4), mode='bilinear',
                            align_corners=False).flatten(2).transpose(1, 2)
        close(targets[k][2], ln(ref))
    total = model.parse_losses(model.loss(x))[0]
    assert torch.isfinite(total)


# ---------------------------------------------------------------- K, grads, teachers
@pytest.mark.parametrize('K', [1, 2, 3])
def test_any_number_of_teachers(K):
    names = ['mae', 'mocov3', 'ibot'][:K]
    model = build(teachers=names)
    x = images()
    losses = model.loss(x)
    assert set(losses) == {f'loss_{s}_{n}' for s in ('tfd', 'sfd') for n in names}
    expected = sum(tfd.mean() / K + sfd.mean() / K for tfd, sfd in hand_terms(model, x).values())
    total = model.parse_losses(losses)[0]
    close(total, expected)
    total.backward()


def test_only_student_heads_and_adaptors_learn_and_teachers_never_change():
    model = build(teachers=('a', 'b', 'c'))
    model.train()
    teachers = model.target_generator.teachers
    assert all(not t.training and not t.backbone.training for t in teachers)
    teacher_params = [p for t in teachers for p in t.backbone.parameters()]
    assert teacher_params and not any(p.requires_grad for p in teacher_params)
    before = [p.detach().clone() for p in teacher_params]
    optim = build_optim_wrapper(model, dict(type='OptimWrapper',
                                            optimizer=dict(type='AdamW', lr=1e-2)))
    in_optim = {id(p) for g in optim.optimizer.param_groups for p in g['params']}
    assert not in_optim & {id(p) for p in teacher_params}
    named = dict(model.named_parameters())
    assert all(n.startswith(('backbone.', 'head.tfd_heads.', 'head.sfd_adaptors.'))
               for n in named)
    watched = ('backbone.cls_token', 'backbone.pos_embed', 'backbone.patch_embed.projection.weight',
               'backbone.layers.1.ffn.layers.1.weight', 'head.tfd_heads.c.fc1.weight',
               'head.sfd_adaptors.b.conv1.weight')
    student_before = {n: named[n].detach().clone() for n in watched}

    total = model.parse_losses(model.loss(images()))[0]
    optim.update_params(total)
    assert all(p.grad is None for p in teacher_params)
    assert all(torch.equal(b, p) for b, p in zip(before, teacher_params))
    for name in watched:
        assert not torch.equal(student_before[name], named[name]), f'{name} did not learn'


def test_gradients_reach_exactly_the_trainable_parts():
    model = build()
    model.parse_losses(model.loss(images()))[0].backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # the student's second norm (only for avg_featmap outputs) is the one unused tensor
    assert trainable - with_grad <= {'backbone.ln2.weight', 'backbone.ln2.bias'}
    assert any(n.startswith('head.tfd_heads.') for n in with_grad)
    assert any(n.startswith('head.sfd_adaptors.') for n in with_grad)
    assert all(p.grad is None for t in model.target_generator.teachers
               for p in t.backbone.parameters())


def test_loss_under_bf16_autocast_stays_float32():
    model = build(target_norm='phis')
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model.loss(images())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    model.parse_losses(losses)[0].backward()


# ---------------------------------------------------------------- statistics in training
def test_ema_and_phis_statistics_are_per_teacher_buffers_updated_in_training():
    model = build(target_norm=['ema_std', 'phis'])
    norms = model.target_generator.target_norms
    assert {t: set(n) for t, n in norms.items()} == {'a': {'cls', '2'}, 'b': {'cls', '2'}}
    model.train()
    model.loss(images())
    assert int(norms['a']['2'].num_updates) == 1 and int(norms['b']['cls'].num_updates) == 1
    t = model.target_generator.teachers[0](images())
    flat = t['patch'].reshape(-1, 24).double()
    torch.testing.assert_close(norms['a']['2'].mean, flat.mean(0))
    model.eval()
    model.loss(images())
    assert int(norms['a']['2'].num_updates) == 1


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_has_no_teacher_and_loads_back_strictly(tmp_path):
    from mmengine.runner.checkpoint import load_checkpoint

    import dmt_mm.engine  # noqa: F401  (safe loader)
    model = build(target_norm='ema_std', fusion='learned')
    model.train()
    model.loss(images())  # statistics move
    state = model.state_dict()
    assert state and not any('teachers.' in k for k in state)
    assert 'target_generator.target_norms.a.2.mean' in state
    assert 'head.fusion_log_vars.tfd' in state
    path = tmp_path / 'dmt.pth'
    torch.save({'state_dict': state}, path)

    fresh = build(target_norm='ema_std', fusion='learned', seed=5)
    teacher = fresh.target_generator.teachers[0]
    teacher_before = [p.clone() for p in teacher.backbone.parameters()]
    load_checkpoint(fresh, str(path), strict=True)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert fresh.target_generator.target_norms['a']['2']._num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, teacher.backbone.parameters()))
    # an (older) checkpoint that did store teacher tensors still loads strictly; the live
    # teachers keep their own weights
    polluted = dict(state)
    polluted['target_generator.teachers.0.backbone.cls_token'] = torch.full((1, 1, 24), 7.0)
    fresh.load_state_dict(polluted, strict=True)
    assert not torch.equal(teacher.backbone.cls_token, torch.full((1, 1, 24), 7.0))


# ---------------------------------------------------------------- errors
def test_missing_teacher_checkpoint_names_the_config_field(tmp_path):
    field = r'model\.target_generator\.teacher_checkpoints\.mae'
    cfg = dmt_cfg(['mae'], teacher_checkpoints=dict(mae=str(tmp_path / 'nowhere.pth')))
    cfg['target_generator']['allow_random_teachers'] = False
    with pytest.raises(FileNotFoundError, match=field):
        MODELS.build(cfg).init_weights()
    cfg = dmt_cfg(['mae'])
    cfg['target_generator']['allow_random_teachers'] = False
    with pytest.raises(ValueError, match=field):
        MODELS.build(cfg).init_weights()


@pytest.mark.parametrize('kwargs, match', [
    (dict(tfd=None, sfd=None), 'at least one strategy'),
    (dict(teachers=('a', 'a')), 'distinct'),
    (dict(teachers=()), 'at least one teacher'),
    (dict(fusion=dict(mode='fixed', weights=[1.0])), 'one weight per teacher'),
    (dict(fusion='magic'), 'fusion mode'),
    (dict(target_norm=['ln']), 'target_norm lists 1'),
    (dict(sfd=dict(teacher_layers=[1, 2], student_layers=[0])), 'pair one-to-one'),
    (dict(mask_loss_on='visible'), 'mask_loss_on'),
    # unknown / misspelled keys name the valid ones
    (dict(sfd=dict(teacher_layer=[1, 2])),
     r"head\.sfd: unknown key 'teacher_layer' \(did you mean 'teacher_layers'\?\); valid keys: "
     'adaptor, loss, loss_weight, student_layers, teacher_layers'),
    (dict(tfd=dict(token_head=dict(type='DMTTokenHead', hiden_dims=8))),
     r"token_head \(DMTTokenHead\): unknown key 'hiden_dims'.*valid keys: hidden_dims"),
    (dict(target_norm=dict(type='EMAStdTargetNorm', momentun=0.9)), "'momentun'.*momentum"),
    (dict(sfd=dict(adaptor=dict(type='DMTSpatialAdaptor', in_channels=8))), 'derived'),
    (dict(resize_mode='bilinera'), 'resize_mode'),
    # options that do nothing in the chosen mode
    (dict(fusion=dict(mode='fixed', temperature=2.0)),
     "`temperature` does nothing with mode 'fixed'.*mode 'adaptive'"),
    (dict(fusion=dict(mode='learned', weights=[0.5, 0.5])), "`weights` does nothing"),
    (dict(mask_loss_on='masked'), 'does nothing without masking'),
    (dict(neck=DECODER), 'does nothing with mask_ratio=0'),
    (dict(mask_ratio=0.5), 'needs a `neck`'),
    (dict(teachers=('a',), teacher_drop_prob=0.2), 'does nothing with a single teacher'),
    (dict(resize_mode='nearest', resize_antialias=True), 'resize_antialias does nothing'),
    # one naming scheme for target norms: registered types, or a whole shorthand string
    (dict(target_norm=dict(type='phis')), "shorthand; inside a dict write type='PHISTargetNorm'"),
    (dict(target_norm='zca'), 'unknown shorthand'),
    (dict(target_norm=dict(type='DMTTokenHead')), 'not a target normaliser'),
    (dict(teacher_checkpoints=dict(a=None, moco=None)), r"names \['moco'\].*not among"),
])
def test_bad_configs_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(**kwargs)


def test_keys_of_the_flat_layout_say_where_they_moved():
    cfg = dmt_cfg()
    cfg['tfd'] = dict()
    cfg['teacher_checkpoints'] = dict(a='x.pth')
    cfg['temperature'] = 1.0
    with pytest.raises(ValueError, match=r'`tfd` moved to `model\.head\.tfd`; '
                       r'`teacher_checkpoints` moved to `model\.target_generator\.'
                       r'teacher_checkpoints`; unknown key `temperature`'):
        MODELS.build(cfg)


def test_teacher_checkpoints_field_loads_the_teacher_files(tmp_path):
    """model.target_generator.teacher_checkpoints.<name> -> the teacher's weights after
    init_weights."""
    from dmt_mm.models.backbones import DMTViT
    torch.manual_seed(3)
    reference = DMTViT(arch=T_ARCH, img_size=32, patch_size=8, out_type='raw')
    path = tmp_path / 'teacher_a.pth'
    torch.save({'state_dict': {'backbone.' + k: v for k, v in reference.state_dict().items()}},
               path)
    model = MODELS.build(dmt_cfg([teacher_cfg('a', checkpoint_format='mmpretrain'), 'b'],
                                 teacher_checkpoints=dict(a=str(path))))
    model.init_weights()
    teacher = model.target_generator.teachers[0]
    loaded = teacher.backbone.state_dict()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded[key], value), key
    assert not teacher.training
