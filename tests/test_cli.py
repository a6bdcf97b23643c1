"""The `polytask` command: every subcommand has working --help; record-demos and inspect on a real suite."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from polytask.cli import build_parser, command_modules, main
from polytask.learning.data.episodes import EpisodeStore


def test_every_subcommand_is_listed_and_its_help_explains_every_option(capsys) -> None:
    names = [m.NAME for m in command_modules()]
    assert {"record-demos", "inspect", "train-expert", "distill", "eval", "launch", "demo", "tasks"} <= set(names)
    def squeezed(text: str) -> str:  # argparse wraps lines, at hyphens too
        return "".join(text.split())

    parser = build_parser()
    top = squeezed(parser.format_help())
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for module in command_modules():
        name = module.NAME
        assert name in top and squeezed(module.HELP) in top, name
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        out = squeezed(capsys.readouterr().out)
        assert out.startswith(squeezed(f"usage: polytask {name}")), name
        assert squeezed(module.__doc__)[:60] in out, f"{name}: the module docstring is not the description"
        for action in sub.choices[name]._actions:
            if action.dest == "help":
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"
            assert squeezed(str(action.help))[:30] in out, f"{name}: help of {action.dest} not shown"
            assert all(flag in out for flag in action.option_strings), (name, action.option_strings)


def test_console_script_runs_in_a_fresh_process() -> None:
    exe = Path(sys.executable).with_name("polytask")
    proc = subprocess.run([str(exe), "tasks", "xarm/*"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MUJOCO_GL": "egl"})
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split()
    assert listed[:2] == ["xarm/reach", "xarm/push"] and "xarm/peg-green" in listed and len(listed) == 11


def test_record_demos_then_inspect(tmp_path: Path, capsys) -> None:
    store = tmp_path / "demos"
    assert main(["record-demos", "--task", "xarm/reach", "--episodes", "2", "--out", str(store), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "kept 2/2 demos" in out
    episodes = EpisodeStore(store).episodes()
    assert len(episodes) == 2 and all(ep.episode_success for ep in episodes)
    assert episodes[0].pixels.shape[1:] == (84, 84, 3)
    assert (episodes[0].goal_pixels == episodes[0].pixels[-1]).all()
    sheet = tmp_path / "sheet.png"
    assert main(["inspect", str(store), "--sheet", str(sheet), "--episode", "1"]) == 0
    out = capsys.readouterr().out
    assert "xarm/reach" in out and "2/2" in out
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[0] >= 168 and image.shape[1] >= 168


def test_errors_are_one_clear_line(tmp_path: Path, capsys) -> None:
    assert main(["record-demos", "--task", "xarm/reech", "--episodes", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "unknown task 'xarm/reech'" in err and "xarm/reach" in err
    assert main(["inspect", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["record-demos", "--task", "nosuite/*", "--episodes", "1", "--out", str(tmp_path)]) == 1
    assert "'nosuite/*' matches no registered task" in capsys.readouterr().err


def test_task_patterns_expand_in_order_without_duplicates() -> None:
    """The one expansion of `--tasks` items that record-demos, train-experts and train-multitask share."""
    from polytask.sim import registry

    metaworld = registry.names("metaworld/*")
    got = registry.expand(["metaworld/button-press", "metaworld/*", "xarm/reach"])
    assert got[0] == "metaworld/button-press" and got[-1] == "xarm/reach"
    assert len(got) == len(set(got)) == len(metaworld) + 1


def test_readme_topic_table_is_generated_from_the_topic_module() -> None:
    from polytask.ros import topics

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert topics.with_readme_section(readme) == readme, \
        "README topic table is stale: python -m polytask.ros.topics --write-readme README.md"
    assert "`/robot/action`" in readme and "| Topic | Type | QoS | Publishers | Subscribers | What |" in readme


@pytest.mark.parametrize("command", ["train-expert", "train-multitask", "distill"])
def test_set_takes_several_pairs_per_flag_and_repeats(command):
    """One grammar for --set on every training command: `--set a=1 b=2 --set c=3`."""
    from polytask.cli import build_parser

    required = {"train-expert": [], "train-multitask": ["--method", "mtrl", "--tasks", "x"],
                "distill": ["--experts", "scripted", "--stores", "s", "--out", "o"]}[command]
    args = build_parser().parse_args([command, *required, "--set", "a=1", "b=2", "--set", "c=3"])
    assert args.set == ["a=1", "b=2", "c=3"]
