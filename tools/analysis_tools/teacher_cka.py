"""Teacher diversity: linear CKA per block between every pair of a DMT config's teachers and
between each teacher and the student, on any image folder -> heatmap PNG + JSON.

    python tools/analysis_tools/teacher_cka.py CONFIG IMAGE_FOLDER [--out-dir DIR] [--stem S]
        [--checkpoint DMT_OR_STUDENT.pth] [--teacher-checkpoint NAME=PATH ...]
        [--blocks 4 | --blocks 3 7 11] [--pool tokens|mean] [--max-images 32]
        [--no-student] [--random-teachers] [--cfg-options key=value ...]

Teachers load from the config's files (``model.target_generator.teacher_checkpoints``, or
``--teacher-checkpoint``). The student is the config's at initialisation (before
distillation) unless ``--checkpoint`` gives a DMT checkpoint or an extracted student (after).
Low CKA between two teachers' last blocks means they see the images differently: such a
pair is complementary (docs/teachers.md). Method and API: dmt_mm/analysis/cka.py.
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from dmt_mm.errors import run_tool_main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('config', help='a DMT pretraining config')
    p.add_argument('images', help='a folder of images (searched recursively)')
    p.add_argument('--out-dir', default=None,
                   help='where teacher_cka.png / .json go (default: work_dirs/teacher_cka/'
                        '<config name>)')
    p.add_argument('--stem', default='teacher_cka',
                   help='file names in --out-dir: <stem>.png and <stem>.json')
    p.add_argument('--checkpoint', default=None,
                   help='student weights: a DMT checkpoint or extract_student.py output '
                        '(default: the initialised student)')
    p.add_argument('--teacher-checkpoint', nargs='+', default=[], metavar='NAME=PATH',
                   help='override teacher files, e.g. sam=/ckpt/sam_vit_b_01ec64.pth')
    p.add_argument('--blocks', type=int, nargs='+', default=[4],
                   help='one positive number: that many blocks per model, spread over its '
                        'depth (the last included); otherwise block indices (negative from '
                        'the end), e.g. --blocks -1 for the last block alone')
    p.add_argument('--pool', choices=['tokens', 'mean'], default='tokens',
                   help='samples: every token on the student grid (default), or per-image means')
    p.add_argument('--max-images', type=int, default=32)
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--no-student', action='store_true', help='teachers only')
    p.add_argument('--random-teachers', action='store_true',
                   help='random frozen teachers (tests only: their CKA means nothing)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config keys')
    return p.parse_args(argv)


def teacher_checkpoints(pairs):
    out = {}
    for pair in pairs:
        name, sep, path = pair.partition('=')
        if not sep or not name or not path:
            raise ValueError(f'--teacher-checkpoint {pair!r}: write NAME=PATH, e.g. '
                             'sam=/ckpt/sam_vit_b_01ec64.pth')
        out[name] = path
    return out


def main(argv=None):
    from dmt_mm.analysis.cka import block_features, cka_matrix

    args = parse_args(argv)
    blocks = args.blocks[0] if len(args.blocks) == 1 and args.blocks[0] > 0 else args.blocks
    name = osp.splitext(osp.basename(args.config))[0]
    out_dir = args.out_dir or osp.join('work_dirs', 'teacher_cka', name)
    features = block_features(
        args.config, args.images, checkpoint=args.checkpoint,
        teacher_checkpoints=teacher_checkpoints(args.teacher_checkpoint), blocks=blocks,
        pool=args.pool, include_student=not args.no_student,
        random_teachers=args.random_teachers, max_images=args.max_images,
        batch_size=args.batch_size, device=args.device)
    result = cka_matrix(features)
    samples = next(iter(features.values())).shape[0]
    student = 'none' if args.no_student else (
        osp.basename(args.checkpoint) if args.checkpoint else 'initialised (before distillation)')
    title = f'{name}\nlinear CKA, {samples} samples ({args.pool}), student: {student}'
    paths = result.save(out_dir, stem=args.stem, title=title, meta=dict(
        config=args.config, images=args.images, checkpoint=args.checkpoint,
        pool=args.pool, samples=samples, random_teachers=args.random_teachers))

    # the last block of each model: what the distillation targets are made of
    lasts = {}  # rows come per model in block order: the last one wins
    for key in result.rows:
        lasts[key.rsplit('.b', 1)[0]] = key
    index = {k: i for i, k in enumerate(result.rows)}
    print(f'linear CKA of the last blocks ({samples} samples, {args.pool}):')
    models = list(lasts)
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            value = float(result.values[index[lasts[a]], index[lasts[b]]])
            print(f'  {lasts[a]:>16} vs {lasts[b]:<16} {value:.3f}')
    print(f'wrote {paths["png"]} and {paths["json"]}')
    return result


if __name__ == '__main__':
    run_tool_main(main)
