"""The ImageNet-1K protocols against their sources: every fine-tuning and linear-probe config
(T / S / B) against the reference tables transcribed from open-mmlab/mmpretrain's MAE
benchmarks, through the protocol cards (tests/protocols.py)."""
import pytest

from protocols import check_protocol


@pytest.mark.parametrize('protocol', ['imagenet_finetune', 'imagenet_linear'])
def test_configs_match_the_source_or_the_card_says_why(protocol):
    problems = check_protocol(protocol)
    assert not problems, '\n'.join(problems)
