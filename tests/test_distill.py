"""Behaviour distillation at reduced scale on real Meta-World tasks with scripted teachers.

Asserts learning (held-out action error below a bound, high success after distilling two tasks), that
relabelling covers every stored episode with the teacher's exact action, that a lifelong step keeps the
parameter count, and that the pieces (goals, PCGrad, samplers, checkpoints) do what they claim.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.learning import goals as G
from polytask.learning.data.episodes import EpisodeStore, load_episode
from polytask.learning.distill.collect import collect_noisy_store
from polytask.learning.distill.config import DistillConfig, StudentConfig
from polytask.learning.distill.data import MemorySampler, StoreSampler, TaskData, load_task
from polytask.learning.distill.distill import action_error, distill, lr_at
from polytask.learning.distill.lifelong import add_task
from polytask.learning.distill.relabel import ScriptedTeacher, relabel_store
from polytask.learning.nets.student import StudentNet, StudentSpec
from polytask.learning.pcgrad import pcgrad_combine
from polytask.learning.policies.evaluate import evaluate
from polytask.learning.policies.student import StudentPolicy, load_student, save_student
from polytask.learning.reporting.lifelong import read_history
from polytask.sim import registry

TASKS = ["metaworld/drawer-close", "metaworld/button-press"]
torch.set_num_threads(1)


def small_cfg(**kw) -> DistillConfig:
    base = dict(lr=1e-3, lr_schedule="cosine", warmup_steps=50, steps=1000, log_every=100, checkpoint_every=500,
                student=StudentConfig(hidden=256, layers=3))
    base.update(kw)
    return DistillConfig(**base)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Noisy-teacher stores of two tasks (~2000 transitions each) and their relabelled copies."""
    root = tmp_path_factory.mktemp("distill")
    out = {}
    for t in TASKS:
        slug = t.replace("/", "_")
        collect_noisy_store(t, root / "raw" / slug, 2000, seed=0)
        task = registry.make(t, render=False)
        relabel_store(EpisodeStore(root / "raw" / slug), root / "rel" / slug, t, ScriptedTeacher(task))
        out[t] = (root / "raw" / slug, root / "rel" / slug)
    return root, out


def onehot_goals(tasks):
    return G.task_goals("onehot", tasks)


def test_relabelling_covers_every_episode_with_the_teacher_action(stores):
    _root, paths = stores
    task = registry.make(TASKS[0], render=False)
    raw, rel = paths[TASKS[0]]
    src = EpisodeStore(raw).paths()
    dst = EpisodeStore(rel).paths()
    assert [p.name for p in src] == [p.name for p in dst]  # every stored episode, none skipped
    for p in (dst[0], dst[len(dst) // 2], dst[-1]):
        ep = load_episode(p)
        assert ep.source == "relabelled" and ep.expert_action.shape == (len(ep) + 1, 4)
        ref = np.stack([task.scripted_action(type("S", (), {"state": s})()) for s in ep.state])
        np.testing.assert_array_equal(ep.expert_action, ref)
        # the stored (noisy) actions differ from the teacher's: relabelling matters
    noisy = [load_episode(p) for p in dst]
    assert any(np.abs(e.action - e.expert_action[:-1]).max() > 0.05 for e in noisy)


def test_relabel_resumes_and_caps_to_the_most_recent(stores, tmp_path):
    _root, paths = stores
    raw, rel = paths[TASKS[1]]
    task = registry.make(TASKS[1], render=False)
    victim = EpisodeStore(rel).paths()[3]
    victim.unlink()
    rep = relabel_store(EpisodeStore(raw), rel, TASKS[1], ScriptedTeacher(task))
    assert rep.written == 1 and rep.episodes == rep.source_episodes and victim.exists()
    capped = relabel_store(EpisodeStore(raw), tmp_path / "cap", TASKS[1], ScriptedTeacher(task), cap=300)
    names = [p.name for p in EpisodeStore(tmp_path / "cap").paths()]
    assert names == [p.name for p in EpisodeStore(raw).paths()][-len(names):]
    assert 300 - 70 < capped.transitions <= 300


def test_student_action_error_on_held_out_states_falls_below_bound(stores):
    _root, paths = stores
    t = TASKS[0]
    full = load_task(paths[t][1], t)
    n_train = int(0.8 * len(full))
    # hold out the last episodes (rows are in episode order; cut at an episode boundary of 63+1 rows)
    n_train -= n_train % 64
    train = TaskData(t, full.task_id, full.states[:n_train], full.actions[:n_train], 0)
    held = TaskData(t, full.task_id, full.states[n_train:], full.actions[n_train:], 0)
    goals = onehot_goals([t])
    cfg = small_cfg(steps=800)
    from polytask.learning.distill.distill import new_student

    student = new_student(cfg, [train], goals)
    before = action_error(student, goals, [held])[t]
    distiller, res = distill([train], goals, cfg, student=student)
    after = action_error(distiller.student, goals, [held])[t]
    assert after < 0.05, (before, after)
    assert after < 0.2 * before
    assert res.step == 800


def test_two_task_distillation_reaches_high_success(stores, tmp_path):
    _root, paths = stores
    data = [load_task(paths[t][1], t) for t in TASKS]
    goals = onehot_goals(TASKS)
    distiller, _ = distill(data, goals, small_cfg(steps=1200), run_dir=tmp_path / "run")
    ckpt = distiller.save_student()
    student, loaded_goals, header, _ = load_student(ckpt)
    assert header["tasks"] == TASKS and header["step"] == 1200
    policy = StudentPolicy(student, loaded_goals)
    for t in TASKS:
        r = evaluate(policy, t, episodes=10, seed=1000)
        assert r.success_rate >= 0.8, (t, r.successes)


def test_lifelong_step_keeps_parameter_count(stores, tmp_path):
    _root, paths = stores
    data = {t: load_task(paths[t][1], t) for t in TASKS}
    goals = onehot_goals(TASKS)
    cfg = small_cfg(lr_schedule="constant", warmup_steps=0)
    for method in ("polytask", "finetune"):
        for _ in TASKS:
            add_task(tmp_path / method, method, data, TASKS, goals, cfg, steps=60, eval_episodes=1,
                     log=lambda _m: None)
        hist = read_history(tmp_path / method)
        assert [s["task"] for s in hist] == TASKS
        assert hist[0]["parameters"] == hist[1]["parameters"]
        s1, _, _, _ = load_student(hist[0]["checkpoint"])
        s2, g2, _, _ = load_student(hist[1]["checkpoint"])
        assert s1.num_parameters() == s2.num_parameters() and sorted(g2) == sorted(TASKS)
        assert not all(torch.equal(a, b) for a, b in zip(s1.parameters(), s2.parameters(), strict=True))
    with pytest.raises(ValueError, match="already added"):
        add_task(tmp_path / "polytask", "polytask", data, TASKS, goals, cfg, steps=1, log=lambda _m: None)


def test_samplers_draw_rows_of_the_sampled_task(stores):
    _root, paths = stores
    data = [load_task(paths[t][1], t) for t in TASKS]
    mem = MemorySampler(data)
    obs, act = mem.sample(1, 64)
    assert obs.shape == (64, 39) and act.shape == (64, 4)
    rows = {tuple(r) for r in data[1].states.round(5)}
    store = StoreSampler({t: paths[t][1] for t in TASKS}, batch=64, seed=0)
    try:
        s_obs, s_act = store.sample(1, 64)
    finally:
        store.close()
    assert s_obs.shape == (64, 39) and s_act.shape == (64, 4)
    assert all(tuple(r) in rows for r in s_obs.numpy().round(5))


def test_store_feed_refuses_damaged_and_unrelabelled_files(stores, tmp_path):
    from polytask.learning.data.episodes import EpisodeError
    from polytask.learning.distill.data import read_rows

    _root, paths = stores
    bad = tmp_path / "000000_x_63.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(EpisodeError, match=r"000000_x_63\.npz"):
        read_rows(bad)
    raw_episode = EpisodeStore(paths[TASKS[0]][0]).paths()[0]  # a store that was never relabelled
    with pytest.raises(EpisodeError, match="expert_action"):
        read_rows(raw_episode)


def test_goal_modalities():
    a, b = G.onehot(3, 16), G.sinusoid(3, 64)
    assert a.sum() == 1 and a[3] == 1 and b.shape == (64,)
    assert not np.allclose(G.sinusoid(3), G.sinusoid(4))
    with pytest.raises(ValueError, match="does not fit a width of 16"):
        G.onehot(16, 16)
    emb = G.language(["open the door", "press the button", "open the door"])
    assert emb.shape == (3, G.LANGUAGE_DIM)
    np.testing.assert_allclose(emb[0], emb[2], atol=1e-5)
    assert float(emb[0] @ emb[1]) < 0.95


def test_pcgrad_removes_conflicts():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    out = pcgrad_combine([g1, g2], np.random.default_rng(0))
    assert float(out @ g1) >= -1e-6 and float(out @ g2) >= -1e-6
    same = pcgrad_combine([g1, g1 * 2], np.random.default_rng(0))
    torch.testing.assert_close(same, (g1 + 2 * g1) / 2)


def test_lr_schedule_and_student_checkpoint_round_trip(tmp_path):
    cfg = small_cfg(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(cfg, 0, 100) == pytest.approx(1e-4)
    assert lr_at(cfg, 10, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 100, 100) == pytest.approx(1e-4)
    spec = StudentSpec(obs="state", obs_dim=39, action_dim=4, goal="image", hidden=32, layers=2, feature_dim=16)
    net = StudentNet(spec)
    goal = np.random.default_rng(0).integers(0, 255, (84, 84, 3), dtype=np.uint8)
    path = save_student(tmp_path / "s.safetensors", net, {"metaworld/hammer": goal}, ["metaworld/hammer"], 7)
    back, goals, header, _ = load_student(path)
    x = torch.randn(5, 39)
    from polytask.learning.nets.student import goal_tensor

    torch.testing.assert_close(back(x, goal_tensor(goals["metaworld/hammer"], "image")),
                               net(x, goal_tensor(goal, "image")))
    assert header["step"] == 7 and back.num_parameters() == net.num_parameters()
    with pytest.raises(ValueError, match="goal"):
        StudentSpec(obs="state", obs_dim=39, action_dim=4, goal="onehot", goal_dim=0)


def test_progressive_grows_a_column_and_never_forgets(stores, tmp_path):
    from polytask.learning.baselines import get
    from polytask.learning.policies.progressive import load_progressive

    _root, paths = stores
    data = {t: load_task(paths[t][1], t) for t in TASKS}
    run = get("progressive").runner
    s1 = run(tmp_path, data, TASKS, hidden=32, layers=2, steps=100, eval_episodes=1, log=lambda _m: None)
    net1, _ = load_progressive(s1.checkpoint)
    s2 = run(tmp_path, data, TASKS, hidden=32, layers=2, steps=100, eval_episodes=1, log=lambda _m: None)
    net2, cols2 = load_progressive(s2.checkpoint)
    assert cols2 == {TASKS[0]: 0, TASKS[1]: 1} and s2.parameters > s1.parameters  # grows, unlike the student
    x = torch.from_numpy(data[TASKS[0]].states[:50])
    torch.testing.assert_close(net2(x, 0), net1(x, 0))  # column 0 frozen: task 1 is not forgotten
    assert not torch.allclose(net2(x, 1), net2(x, 0))


def test_cli_lifelong_adds_one_task_per_command(stores, tmp_path, capsys):
    from polytask.cli import main

    _root, paths = stores
    out = tmp_path / "ll"
    common = ["--experts", "scripted", "--out", str(out), "--lifelong", "--steps", "40", "--eval-episodes", "1",
              "--no-progress", "--set", "student.hidden=32", "student.layers=2", "lr=1e-3"]
    for t in TASKS:
        assert main(["distill", "--stores", str(paths[t][0]), *common]) == 0
    hist = read_history(out / "lifelong" / "polytask")
    assert [s["task"] for s in hist] == TASKS  # the second command added the second task
    assert hist[0]["parameters"] == hist[1]["parameters"]
    assert sorted(hist[1]["scores"]) == sorted(TASKS)  # the new policy is evaluated on every task seen so far
    assert "lifelong polytask: 2 tasks" in capsys.readouterr().out


def test_expert_checkpoint_teacher_relabels_through_the_cli(stores, tmp_path):
    """A (random) expert checkpoint in the experts' format is a valid teacher: the relabelled actions are exactly
    what the loaded expert policy does on the stored states, replayed in order."""
    from polytask.cli import main
    from polytask.learning.data.checkpoint import module_tensors, save_checkpoint
    from polytask.learning.distill.relabel import _step_at
    from polytask.learning.nets.drqv2 import Actor, Encoder, NetworkSpec
    from polytask.learning.policies.expert import load_policy

    _root, paths = stores
    t = TASKS[0]
    spec = NetworkSpec(obs_modality="state", obs_shape=(39,), action_dim=4, hidden=32, actor_layers=2)
    torch.manual_seed(0)
    tensors = {**module_tensors("encoder", Encoder(spec)), **module_tensors("actor", Actor(spec))}
    ckpt = save_checkpoint(tmp_path / "expert.safetensors", tensors,
                           {"kind": "expert", "network": spec.to_dict(), "task": t, "tasks": [t], "step": 0})
    out = tmp_path / "run"
    assert main(["distill", "--experts", str(ckpt), "--stores", str(paths[t][0]), "--out", str(out), "--steps", "1",
                 "--eval-episodes", "0", "--no-progress", "--set", "student.hidden=16", "student.layers=1"]) == 0
    rel = load_episode(EpisodeStore(out / "relabelled" / t.replace("/", "_")).paths()[0])
    policy = load_policy(ckpt, task=t)
    goal = registry.make(t, render=False).goal
    steps = [_step_at(rel, i, goal) for i in range(len(rel) + 1)]
    policy.reset(steps[0])
    expected = np.stack([policy.act(s) for s in steps])
    np.testing.assert_allclose(rel.expert_action, np.clip(expected, -1, 1), atol=1e-6)


def test_a_state_student_takes_image_goals_of_the_size_it_is_given():


    from polytask.learning.distill.distill import new_student
    from polytask.learning.nets.student import goal_tensor

    rng = np.random.default_rng(0)
    data = TaskData("metaworld/door-open", 1, rng.normal(size=(50, 39)).astype(np.float32),
                    rng.uniform(-1, 1, (50, 4)).astype(np.float32), 1)
    goals = {"metaworld/door-open": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)}
    student = new_student(DistillConfig(goal="image", student=StudentConfig(hidden=16, layers=1, feature_dim=8)),
                          [data], goals)
    assert student.spec.goal_image_size == 64
    out = student(torch.from_numpy(data.states[:5]), goal_tensor(goals["metaworld/door-open"], "image"))
    assert out.shape == (5, 4) and torch.isfinite(out).all()
