"""Keep OpenMMLab model-index files in step with the configs.

Writes ``model-index.yml`` (the root ``mim search`` reads) and one ``metafile.yml`` per config
folder, in the format of OpenMMLab's repositories (Collections + Models: Name, In Collection,
Config, Metadata, Results, Weights), and regenerates the table between the
``<!-- metafile-table -->`` markers of each folder's README.md from them. Results and Weights
are entered by hand after a measured run and are kept across regenerations; everything else
comes from the config file names (OpenMMLab naming:
``algo_backbone_GPUSxBATCH-tricks-schedule_dataset``).

    python tools/misc/metafiles.py           # rewrite the files
    python tools/misc/metafiles.py --check   # exit 1 and name the stale files (tests, CI)
"""
import argparse
import os.path as osp
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
PAPER = dict(Title='Comprehensive Distillation with Multiple Self-supervised Teachers',
             URL='https://arxiv.org/abs/2312.11938')
DATASETS = {'in1k': 'ImageNet-1k', 'coco': 'COCO', 'ade20k': 'ADE20K'}
EPOCHS_PER_X = 12  # mmdet's 1x schedule
# folder -> (collection name, task, architecture notes)
FOLDERS = {
    'configs/dmt': ('DMT', 'Self-Supervised Distillation', ['ViT', 'TFD', 'SFD']),
    'configs/benchmarks/classification': ('DMT ImageNet-1k transfer', 'Image Classification',
                                          ['ViT']),
    'configs/benchmarks/mmdet': ('DMT COCO transfer', 'Instance Segmentation',
                                 ['ViT', 'Cascade Mask R-CNN']),
    'configs/benchmarks/mmseg': ('DMT ADE20K transfer', 'Semantic Segmentation',
                                 ['ViT', 'UperNet']),
    'configs/benchmarks/probes': ('DMT frozen-feature probes', 'Frozen-feature Probing',
                                  ['ViT']),
}
TABLE_START, TABLE_END = '<!-- metafile-table -->', '<!-- /metafile-table -->'


def parse_name(name: str) -> dict:
    """Metadata an OpenMMLab config name states: GPUs x batch, schedule, training data."""
    meta = {}
    parts = name.split('_')
    dataset = re.split(r'[-]', parts[-1])[0]
    if dataset in DATASETS:
        meta['Training Data'] = DATASETS[dataset]
    for part in parts:
        match = re.match(r'^(\d+)xb(\d+)(?:-|$)', part)
        if not match:
            continue
        gpus, per_gpu = int(match.group(1)), int(match.group(2))
        meta['Training Resources'] = f'{gpus}x GPUs'
        meta['Batch Size'] = gpus * per_gpu
        for token in part.split('-')[1:]:
            if re.fullmatch(r'\d+e', token):
                meta['Epochs'] = int(token[:-1])
            elif re.fullmatch(r'\d+x', token):
                meta['Epochs'] = EPOCHS_PER_X * int(token[:-1])
            elif re.fullmatch(r'\d+k', token):
                meta['Iterations'] = 1000 * int(token[:-1])
    return meta


def configs_of(folder: Path):
    return sorted(p for p in folder.glob('*.py') if not p.name.startswith('_'))


def build_metafile(folder: str, old: dict) -> dict:
    collection, task, architecture = FOLDERS[folder]
    kept = {m['Name']: m for m in (old or {}).get('Models', [])}
    models = []
    for path in configs_of(REPO / folder):
        name = path.stem
        meta = parse_name(name)
        dataset = meta.get('Training Data', 'ImageNet-1k')
        model = {'Name': name, 'In Collection': collection,
                 'Config': osp.relpath(path, REPO), 'Metadata': meta,
                 'Results': kept.get(name, {}).get('Results'),
                 'Weights': kept.get(name, {}).get('Weights')}
        if model['Results']:
            for result in model['Results']:
                result.setdefault('Task', task)
                result.setdefault('Dataset', dataset)
        models.append(model)
    return {'Collections': [{'Name': collection,
                             'Metadata': {'Architecture': architecture},
                             'Paper': PAPER, 'README': f'{folder}/README.md'}],
            'Models': models}


def readme_table(metafile: dict) -> str:
    rows = ['| config | GPUs | batch | schedule | results | weights |',
            '|---|---|---|---|---|---|']
    for model in metafile['Models']:
        meta = model['Metadata']
        schedule = (f"{meta['Epochs']} epochs" if 'Epochs' in meta
                    else f"{meta['Iterations'] // 1000}k iterations" if 'Iterations' in meta
                    else '–')
        results = '; '.join(
            ', '.join(f'{k} {v}' for k, v in r['Metrics'].items())
            for r in model['Results'] or []) or '– (not measured yet)'
        weights = f"[file]({model['Weights']})" if model['Weights'] else '–'
        rows.append(f"| [`{model['Name']}`]({osp.basename(model['Config'])}) | "
                    f"{meta.get('Training Resources', '–').split('x')[0]} | "
                    f"{meta.get('Batch Size', '–')} | {schedule} | {results} | {weights} |")
    return '\n'.join(rows)


def dump(data) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def expected_files() -> dict:
    """{path: text} of every file this tool owns, as it would write them now."""
    files, imports = {}, []
    for folder in FOLDERS:
        if not (REPO / folder).is_dir() or not configs_of(REPO / folder):
            continue
        meta_path = REPO / folder / 'metafile.yml'
        old = yaml.safe_load(meta_path.read_text()) if meta_path.exists() else None
        metafile = build_metafile(folder, old)
        files[meta_path] = dump(metafile)
        imports.append(f'{folder}/metafile.yml')
        readme = REPO / folder / 'README.md'
        text = readme.read_text() if readme.exists() else \
            f'# {FOLDERS[folder][0]}\n\n{TABLE_START}\n{TABLE_END}\n'
        if TABLE_START not in text:
            text = text.rstrip('\n') + f'\n\n## Configs\n\n{TABLE_START}\n{TABLE_END}\n'
        head, rest = text.split(TABLE_START, 1)
        tail = rest.split(TABLE_END, 1)[1]
        files[readme] = f'{head}{TABLE_START}\n{readme_table(metafile)}\n{TABLE_END}{tail}'
    files[REPO / 'model-index.yml'] = dump({'Import': imports})
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 if a file is out of date')
    args = parser.parse_args(argv)
    stale = []
    for path, text in expected_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(osp.relpath(path, REPO))
        if not args.check:
            path.write_text(text)
    if args.check and stale:
        print(f'out of date: {", ".join(stale)}; run python tools/misc/metafiles.py')
        return 1
    print('metafiles ' + ('up to date' if not stale else f'written: {", ".join(stale)}'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
