"""Defaults are declared once: in the config dataclasses. The reference YAMLs are generated from them, the partial
configs hold only what they change, and every choice is a `Literal` checked wherever a config is built."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from polytask.commands.configs import reference_files
from polytask.learning.config import ConfigError, load_config, load_yaml
from polytask.learning.distill.config import DistillConfig
from polytask.learning.rl.expert_config import AgentConfig, ExpertConfig
from polytask.learning.rl.learners import LEARNERS
from polytask.learning.rl.multitask_config import METHODS, MultiTaskConfig

CONFIG = Path(__file__).resolve().parents[1] / "config"
CLASSES = {"expert.yaml": ExpertConfig, "multitask_rl.yaml": MultiTaskConfig, "distill.yaml": DistillConfig}
PARTIAL = {"expert_state_cpu.yaml": ExpertConfig, "dmc_cheetah_cpu.yaml": ExpertConfig}


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_reference_configs_are_generated_from_the_dataclasses(name):
    assert (CONFIG / name).read_text() == reference_files()[name], \
        f"config/{name} is stale: polytask configs --write config"
    assert load_config(CLASSES[name], CONFIG / name) == CLASSES[name]()


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("name", sorted(PARTIAL))
def test_partial_configs_hold_only_what_they_change(name):
    cls = PARTIAL[name]
    cfg = load_config(cls, CONFIG / name)  # every key exists and has the right type
    defaults = _flat(dataclasses.asdict(cls()))
    same = [k for k, v in _flat(load_yaml(CONFIG / name)).items() if defaults[k] == v]
    assert not same, f"config/{name} repeats defaults of {cls.__name__}: {same}"
    assert cfg != cls()


def test_choices_are_literals_checked_in_code_as_in_yaml():
    with pytest.raises(ValueError, match=r"'agent.bc_loss' is 'l1', expected one of \('logprob', 'mse'\)"):
        AgentConfig(bc_loss="l1")
    with pytest.raises(ConfigError, match=r"train\.method.*'ppo'.*expected one of"):
        load_config(MultiTaskConfig, None, {"train.method": "ppo"})
    with pytest.raises(ConfigError, match=r"network\.state_encoder"):
        load_config(ExpertConfig, None, {"network.state_encoder": "cnn"})
    with pytest.raises(ValueError, match="lr_schedule"):
        DistillConfig(lr_schedule="step")
    assert set(METHODS) == set(LEARNERS)  # one name list for the config and the learner registry
