"""OpenMMLab model index (tools/misc/metafiles.py): the shipped files are up to date, load
with OpenMMLab's own ``modelindex`` reader, name every config once with metadata that
agrees with the config itself, and regeneration keeps the results entered by hand."""
import importlib.util
import shutil

import modelindex
import pytest
import yaml
from conftest import REPO, TOOLS
from mmengine.config import Config


def _tool(root=None):
    spec = importlib.util.spec_from_file_location('metafiles', TOOLS / 'misc' / 'metafiles.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if root is not None:
        module.REPO = root
    return module


def test_shipped_files_are_up_to_date(capsys):
    assert _tool().main(['--check']) == 0, capsys.readouterr().out


def test_model_index_loads_with_openmmlab_reader_and_covers_every_config():
    index = modelindex.load(str(REPO / 'model-index.yml'))
    configs = [m.config for m in index.models]
    assert len(configs) == len(set(configs))
    shipped = sorted(str(p.relative_to(REPO)) for folder in _tool().FOLDERS
                     for p in (REPO / folder).glob('*.py') if not p.name.startswith('_'))
    assert sorted(configs) == shipped
    for model in index.models:
        assert model.name == (REPO / model.config).stem and model.in_collection


@pytest.mark.slow
def test_metadata_agrees_with_the_resolved_configs():
    """GPUs x per-GPU batch stated by the name equals the config's own train batch size."""
    for folder in ('configs/dmt', 'configs/benchmarks/mmdet', 'configs/benchmarks/mmseg'):
        index = yaml.safe_load((REPO / folder / 'metafile.yml').read_text())
        for model in index['Models']:
            meta = model['Metadata']
            if 'Batch Size' not in meta:
                continue
            cfg = Config.fromfile(str(REPO / model['Config']))
            gpus = int(meta['Training Resources'].split('x')[0])
            assert gpus * cfg.train_dataloader.batch_size == meta['Batch Size'], model['Name']


def test_check_names_stale_files_and_results_survive_regeneration(tmp_path, capsys):
    root = tmp_path / 'repo'
    shutil.copytree(REPO / 'configs', root / 'configs')
    shutil.copy(REPO / 'model-index.yml', root)
    tool = _tool(root)
    assert tool.main(['--check']) == 0
    probes = root / 'configs' / 'benchmarks' / 'probes'
    new = probes / 'knn_dmt-vit-large-p16_k20-t0.07_in1k.py'
    shutil.copy(probes / 'knn_dmt-vit-base-p16_k20-t0.07_in1k.py', new)
    capsys.readouterr()
    assert tool.main(['--check']) == 1
    out = capsys.readouterr().out
    assert 'configs/benchmarks/probes/metafile.yml' in out and 'probes/README.md' in out
    assert 'configs/dmt/metafile.yml' not in out
    # a measured result entered by hand is kept, and shown in the README table
    metafile = yaml.safe_load((probes / 'metafile.yml').read_text())
    metafile['Models'][0]['Results'] = [{'Metrics': {'Top 1 Accuracy': 71.2}}]
    (probes / 'metafile.yml').write_text(yaml.safe_dump(metafile, sort_keys=False))
    assert tool.main([]) == 0 and tool.main(['--check']) == 0
    regenerated = yaml.safe_load((probes / 'metafile.yml').read_text())
    names = [m['Name'] for m in regenerated['Models']]
    assert new.stem in names
    result = regenerated['Models'][0]['Results'][0]
    assert result == {'Metrics': {'Top 1 Accuracy': 71.2}, 'Task': 'Frozen-feature Probing',
                      'Dataset': 'ImageNet-1k'}
    assert 'Top 1 Accuracy 71.2' in (probes / 'README.md').read_text()
