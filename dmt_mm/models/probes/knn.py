"""Weighted k-NN classification on frozen features: the DINO / iBOT protocol.

The vote is transcribed from ``knn_classifier`` of facebookresearch/dino ``eval_knn.py``
(commit 7c446df5b9f45747937fb0d72314eb9f7b66930a; bytedance/ibot
``evaluation/eval_knn.py`` is the same code): features L2-normalised, cosine similarity to
every training feature, the ``k`` most similar vote for their class with weight
``exp(similarity / T)``, the class with the largest sum wins.

The training set's features and labels (the *prototype*, as mmpretrain's
``ImageToImageRetriever`` calls it) are extracted once per backbone: once per run, and, with
``feature_cache``, once for every run of the same weights on the same data (DINO's
``--dump_features`` / ``--load_features``). Extraction runs on every rank over its shard of
the loader and is gathered with mmengine's dist utilities, as DINO gathers with
``torch.distributed.all_gather`` and ``index_copy_``.

Why not ``ImageToImageRetriever`` itself: its prototype keeps no labels, its ``all_reduce``
of zero-filled rows counts twice the samples a padding sampler repeats, and its encoder is
named ``image_encoder`` -- a student file (``backbone.*``, what
``tools/model_converters/extract_student.py`` writes) must load into this model as the
checkpoint of ``tools/test.py``, with strict keys. It shares the retriever's interface:
``prototype`` (a dataloader config), ``prepare_prototype`` (run lazily at the first batch,
or by mmpretrain's ``PrepareProtoBeforeValLoopHook``) and ``dump_prototype``.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Tuple

import mmengine.dist as dist
import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmpretrain.models.retrievers.base import BaseRetriever
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from mmpretrain.utils import track_on_main_process

from dmt_mm.errors import ConfigError


def knn_vote(features: torch.Tensor, train_features: torch.Tensor,
             train_labels: torch.Tensor, k: int, temperature: float,
             num_classes: int) -> torch.Tensor:
    """Per-class vote of DINO's weighted k-NN for L2-normalised ``features`` (B x D).

    ``train_features`` (N x D, L2-normalised) and ``train_labels`` (N) are the neighbours.
    Returns B x ``num_classes`` sums of ``exp(cosine / temperature)`` over the ``k`` nearest
    neighbours of each class (DINO's ``probs``, before its sort)."""
    return vote(*nearest(features, train_features, k), train_labels, temperature, num_classes)


def nearest(features: torch.Tensor, train_features: torch.Tensor,
            k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities (B x k, descending) and indices of the ``k`` nearest neighbours."""
    return (features @ train_features.t()).topk(k, dim=1, largest=True, sorted=True)


def vote(similarities: torch.Tensor, indices: torch.Tensor, train_labels: torch.Tensor,
         temperature: float, num_classes: int) -> torch.Tensor:
    """DINO's vote of the neighbours found by :func:`nearest`, for one labelling."""
    one_hot = F.one_hot(train_labels[indices], num_classes).to(similarities.dtype)  # B x k x C
    weights = (similarities / temperature).exp()
    return (one_hot * weights.unsqueeze(-1)).sum(dim=1)


def _gather(tensor: torch.Tensor) -> torch.Tensor:
    """Rows of every rank, concatenated (ranks may hold different numbers of rows)."""
    if dist.get_world_size() == 1:
        return tensor
    sizes = dist.all_gather(torch.tensor([tensor.shape[0]], device=tensor.device))
    longest = int(max(s.item() for s in sizes))
    padded = tensor.new_zeros((longest, ) + tuple(tensor.shape[1:]))
    padded[:tensor.shape[0]] = tensor
    parts = dist.all_gather(padded)
    return torch.cat([p[:int(s.item())] for p, s in zip(parts, sizes)])


@MODELS.register_module()
class KNNClassifier(BaseRetriever):
    """k-NN classifier for ``tools/test.py``: scores are the normalised class votes, so
    mmpretrain's ``Accuracy`` reports DINO's top-1 / top-5.

    Args:
        backbone: the frozen backbone; the feature is its last output (the CLS token after
            the final norm for ``out_type='cls_token'``, as DINO's ``model(samples)``).
        neck: optional neck after it.
        prototype: dataloader config of the labelled training set (neighbours).
        num_classes: classes of the labels.
        k: neighbours that vote (DINO: 20 is the reported setting).
        temperature: the vote's temperature T (DINO: 0.07).
        feature_cache: optional file for the prototype features; reused when it was written
            for the same weights and data, rewritten otherwise.
        extra_labels: more labellings of the same images, ``{name: num_classes}``, scored
            from the same features and neighbours in the same pass (as DINO's
            ``eval_knn.py`` scores several ``k`` in one). Every data sample carries
            ``gt_label_<name>`` (``PackInputs(algorithm_keys=...)``); the prediction is set
            as field ``<name>`` (``pred_score``, ``gt_label``, ``eval_mask``), the layout
            mmpretrain's ``MultiTasksMetric`` reads: it reports ``<name>_accuracy/top1``.
    """

    normalise_features = True  # cosine similarity; the logistic probe keeps them raw

    def __init__(self, backbone: dict, prototype: dict, num_classes: int,
                 neck: Optional[dict] = None, k: int = 20, temperature: float = 0.07,
                 feature_cache: Optional[str] = None,
                 extra_labels: Optional[Dict[str, int]] = None,
                 data_preprocessor: Optional[dict] = None, init_cfg: Optional[dict] = None):
        data_preprocessor = dict(data_preprocessor or {})
        data_preprocessor.setdefault('type', 'mmpretrain.ClsDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck) if neck is not None else None
        self.prototype = prototype
        self.prototype_inited = False
        if k < 1 or temperature <= 0:
            raise ConfigError(f'k-NN needs k >= 1 and temperature > 0, got k={k}, '
                              f'temperature={temperature}')
        self.num_classes = num_classes
        self.k = k
        self.temperature = temperature
        self.feature_cache = feature_cache
        if extra_labels is not None and not isinstance(extra_labels, dict):
            raise ConfigError(f'extra_labels must map a name to its number of classes, e.g. '
                              f'dict(colour=6), got {extra_labels!r}')
        self.extra_labels = dict(extra_labels or {})
        for name, classes in self.extra_labels.items():
            if not str(name).isidentifier() or hasattr(DataSample, name) or name in (
                    'gt_label', 'pred_score', 'pred_label', 'sample_idx', 'img_path'):
                raise ConfigError(f'extra_labels: {name!r} cannot name a data-sample field '
                                  '(a Python name, not one of DataSample\'s): rename it')
            if not isinstance(classes, int) or classes < 1:
                raise ConfigError(f'extra_labels: {name!r} needs its number of classes (an '
                                  f'integer >= 1), got {classes!r}')
        self.requires_grad_(False)

    # ------------------------------------------------------------------ features
    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.extract_feat(inputs)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        raise RuntimeError(f'invalid mode {mode!r}')

    def extract_feat(self, inputs):
        feats = self.backbone(inputs)
        if self.neck is not None:
            feats = self.neck(feats)
        if isinstance(feats, tuple):
            feats = feats[-1]
        feats = feats.flatten(1)
        return F.normalize(feats, dim=1, p=2) if self.normalise_features else feats

    def _extra_label(self, sample, name: str) -> int:
        label = sample.get(f'gt_label_{name}')
        if label is None:
            raise ConfigError(f'extra_labels names {name!r}, but the data samples carry no '
                              f'gt_label_{name}: give the dataset that labelling and pack it '
                              f"with PackInputs(algorithm_keys=['gt_label_{name}'])")
        return int(label)

    @torch.no_grad()
    def _extract(self, loader) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        """(features, labels, extra labels by name) of the whole loader's dataset, on every
        rank."""
        self.eval()
        feats, labels, indices = [], [], []
        extra = {name: [] for name in self.extra_labels}
        for data_batch in track_on_main_process(loader, 'Extracting k-NN features'):
            data = self.data_preprocessor(data_batch, False)
            feats.append(self.extract_feat(data['inputs']))
            labels += [int(s.gt_label[0]) for s in data['data_samples']]
            indices += [int(s.sample_idx) for s in data['data_samples']]
            for name, values in extra.items():
                values += [self._extra_label(s, name) for s in data['data_samples']]
        device = feats[0].device
        feats = _gather(torch.cat(feats))
        indices = _gather(torch.tensor(indices, device=device))
        size = len(loader.dataset)
        if torch.unique(indices).numel() != size:
            raise RuntimeError(f'k-NN features cover {torch.unique(indices).numel()} of the '
                               f'{size} training images: the prototype loader must visit '
                               'every image (a DefaultSampler with shuffle=False)')

        def in_order(values):
            values = _gather(torch.tensor(values, device=device))
            return values.new_zeros(size).index_copy_(0, indices, values)
        out_feats = feats.new_zeros(size, feats.shape[1]).index_copy_(0, indices, feats)
        return out_feats, in_order(labels), {name: in_order(v) for name, v in extra.items()}

    def _fingerprint(self, loader) -> str:
        """Hash of the probe type (their features differ), the encoder's weights and the
        dataset the features come from."""
        digest = hashlib.sha256(type(self).__name__.encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        dataset = loader.dataset
        digest.update(json.dumps(dict(n=len(dataset), data_root=getattr(
            dataset, 'data_root', None), ann_file=getattr(dataset, 'ann_file', None),
            pipeline=repr(getattr(dataset, 'pipeline', None))), default=str).encode())
        return digest.hexdigest()

    @torch.no_grad()
    def prepare_prototype(self):
        """Features and labels of the training set, from the cache or extracted."""
        from mmengine.runner import Runner
        if not isinstance(self.prototype, dict):
            raise TypeError('KNNClassifier.prototype must be a dataloader config (the '
                            f'labelled training set), got {type(self.prototype).__name__}')
        with DefaultScope.overwrite_default_scope('mmpretrain'):  # its datasets, transforms
            loader = Runner.build_dataloader(self.prototype)
        device = next(self.backbone.parameters()).device
        fingerprint = self._fingerprint(loader)
        cached = self._read_cache(fingerprint)
        if cached is None:
            feats, labels, extra = self._extract(loader)
            self._write_cache(feats, labels, extra, fingerprint)
        else:
            feats, labels, extra = cached
        checks = [(labels, self.num_classes, 'num_classes')] + [
            (extra[n], c, f'extra_labels.{n}') for n, c in self.extra_labels.items()]
        for values, classes, key in checks:
            if int(values.max()) >= classes:
                raise ConfigError(f'training label {int(values.max())} >= {key}={classes}: '
                                  f'set model.{key} to the dataset\'s')
        self.register_buffer('prototype_vecs', feats.to(device), persistent=False)
        self.register_buffer('prototype_labels', labels.to(device), persistent=False)
        self.prototype_extra_labels = {n: v.to(device) for n, v in extra.items()}
        self.fit_prototype()
        self.prototype_inited = True

    def fit_prototype(self):
        """What the probe learns from the training features: k-NN keeps them as they are."""
        if self.k > self.prototype_vecs.shape[0]:
            raise ConfigError(f'k={self.k} neighbours, but the training set has '
                              f'{self.prototype_vecs.shape[0]} images: lower model.k')

    def _read_cache(self, fingerprint):
        if not self.feature_cache or not osp.isfile(self.feature_cache):
            return None
        data = [None]
        if dist.is_main_process():
            data[0] = torch.load(self.feature_cache, map_location='cpu', weights_only=True)
        dist.broadcast_object_list(data, src=0)
        cache = data[0]
        extra = cache.get('extra_labels', {})
        if cache.get('fingerprint') != fingerprint:
            print_log(f'k-NN: {self.feature_cache} holds features of other weights or data; '
                      'extracting them again', logger='current')
            return None
        if set(self.extra_labels) - set(extra):
            print_log(f'k-NN: {self.feature_cache} lacks the labels '
                      f'{sorted(set(self.extra_labels) - set(extra))}; extracting again',
                      logger='current')
            return None
        print_log(f'k-NN: training features read from {self.feature_cache}', logger='current')
        return cache['features'], cache['labels'], {n: extra[n] for n in self.extra_labels}

    def _write_cache(self, feats, labels, extra, fingerprint):
        if not self.feature_cache or not dist.is_main_process():
            return
        os.makedirs(osp.dirname(osp.abspath(self.feature_cache)), exist_ok=True)
        tmp = self.feature_cache + '.tmp'
        torch.save(dict(features=feats.cpu(), labels=labels.cpu(), fingerprint=fingerprint,
                        extra_labels={n: v.cpu() for n, v in extra.items()}), tmp)
        os.replace(tmp, self.feature_cache)  # never a half-written cache
        print_log(f'k-NN: training features written to {self.feature_cache}',
                  logger='current')

    def dump_prototype(self, path):
        """Save the training features and labels (``feature_cache`` does it on the way)."""
        if not self.prototype_inited:
            self.prepare_prototype()
        torch.save(dict(features=self.prototype_vecs.cpu(),
                        labels=self.prototype_labels.cpu()), path)

    def matching(self, inputs: torch.Tensor):
        """Class votes of L2-normalised features."""
        return knn_vote(inputs, self.prototype_vecs, self.prototype_labels, self.k,
                        self.temperature, self.num_classes)

    def labellings(self):
        """(name, training labels, classes): the main labels (name None), then the extras."""
        return [(None, self.prototype_labels, self.num_classes)] + [
            (n, self.prototype_extra_labels[n], c) for n, c in self.extra_labels.items()]

    def class_scores(self, features: torch.Tensor) -> Dict[Optional[str], torch.Tensor]:
        """Scores (rows sum to 1) of every labelling: the normalised votes of the same
        ``k`` neighbours."""
        similarities, indices = nearest(features, self.prototype_vecs, self.k)
        scores = {}
        for name, labels, classes in self.labellings():
            votes = vote(similarities, indices, labels, self.temperature, classes)
            scores[name] = votes / votes.sum(dim=1, keepdim=True)
        return scores

    # ------------------------------------------------------------------ prediction
    def loss(self, inputs, data_samples):
        raise RuntimeError('a k-NN probe has nothing to train: run tools/test.py with this '
                           'config (no checkpoint needed beyond the backbone\'s init_cfg)')

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List[DataSample]] = None, **kwargs):
        if not self.prototype_inited:
            self.prepare_prototype()
        scores = self.class_scores(self.extract_feat(inputs))
        if data_samples is None:
            data_samples = [DataSample() for _ in range(inputs.shape[0])]
        for i, sample in enumerate(data_samples):
            score = scores[None][i]
            sample.set_pred_score(score).set_pred_label(score.argmax(keepdim=True))
            for name in self.extra_labels:
                result = dict(pred_score=scores[name][i], eval_mask=True)
                if 'gt_label' in sample:  # evaluated: every labelling needs its labels
                    result['gt_label'] = torch.tensor([self._extra_label(sample, name)])
                sample.set_field(result, name)
        return data_samples
