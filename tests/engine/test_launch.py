"""The launcher's config: mmengine's text, formatted once per content."""
import copy

from conftest import CONFIGS
from mmengine.config import Config
from mmengine.config import config as mmengine_config

from dmt_mm.engine.launch import FormattedOnceConfig, load_config

TOY_DMT = CONFIGS / 'toy' / 'dmt_vit-toy-p16_3xvit-toy_1xb16-40it_toyworld.py'


def test_config_text_is_mmengines_and_formatted_once_per_content(monkeypatch):
    monkeypatch.setattr(FormattedOnceConfig, '_last', (None, None))
    formatted = []
    format_code = mmengine_config.FormatCode
    monkeypatch.setattr(mmengine_config, 'FormatCode',
                        lambda *a, **k: formatted.append(1) or format_code(*a, **k))
    cfg = load_config(str(TOY_DMT), work_dir='work_dirs/x')
    text = cfg.pretty_text
    assert len(formatted) == 1
    # the log, the dump, the visualizer and the message hub read it from the Runner's copy
    for reader in (cfg, copy.deepcopy(cfg), copy.deepcopy(cfg), cfg):
        assert reader.pretty_text == text
    assert len(formatted) == 1
    assert text == Config.pretty_text.fget(cfg)  # mmengine's own formatting
    formatted.clear()
    cfg.train_cfg.max_iters = 7  # a changed config gets its own text
    changed = cfg.pretty_text
    assert len(formatted) == 1 and changed != text and 'max_iters=7' in changed
    assert changed == Config.pretty_text.fget(cfg)
