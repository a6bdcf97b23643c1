"""Bad input into the policy server: counted, reported, never fatal; bad start-up parameters stop it with one line.

Frames with an unknown encoding, a step shorter than a row, data of the wrong length, no data, or a size the
policy cannot take are sent to a running policy server; it must stay alive, count each one on `policy/status`
with a clear `last_error`, and still answer the next good frame. Start-up with an unknown task or a missing
checkpoint must exit with code 2 and an error naming the parameter.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest

pytestmark = pytest.mark.ros


def _image(h: int, w: int, encoding: str = "rgb8", step: int | None = None, data: bytes | None = None):
    from sensor_msgs.msg import Image

    msg = Image(height=h, width=w, encoding=encoding, step=step if step is not None else w * 3)
    msg.data = data if data is not None else bytes(h * (step if step is not None else w * 3))
    return msg


def _pixel_student(path, nan: bool = False):
    """A tiny pixel unified policy of xarm/reach for 84x84 frames (every weight NaN with `nan`: a corrupted but
    well-formed checkpoint)."""
    import torch

    from polytask.learning.goals import onehot
    from polytask.learning.nets.student import StudentNet, StudentSpec
    from polytask.learning.policies.student import save_student

    student = StudentNet(StudentSpec(obs="pixels", obs_dim=84, action_dim=4, goal="onehot", goal_dim=16, hidden=32,
                                     feature_dim=16))
    if nan:
        with torch.no_grad():
            for p in student.parameters():
                p.fill_(float("nan"))
    return save_student(path, student, {"xarm/reach": onehot(0, 16)}, ["xarm/reach"], step=0)


@contextmanager
def _served(tmp_path, ckpt, probe_name: str):
    """A policy server process on `ckpt` and a probe matched to its image input: (server, probe, image publisher,
    policy/status messages, robot/action messages)."""
    from polytask.ros.testing import NodeProcess, Probe, allocate_domain

    with allocate_domain(70, 99) as domain:
        server = NodeProcess("policy_server_node", domain_id=domain.id, log_dir=tmp_path,
                             params={"checkpoint": str(ckpt), "task": "xarm/reach", "use_state": False})
        probe = Probe(domain.id, name=probe_name)
        try:
            pub = probe.publisher("image")
            status = probe.subscribe("policy_status")
            actions = probe.subscribe("action")
            assert probe.spin_until(lambda: pub.get_subscription_count() >= 1, 30), server.log_text()
            yield server, probe, pub, status, actions
        finally:
            probe.close()
            server.stop()


def test_bad_frames_are_counted_and_the_server_keeps_answering(tmp_path):
    # a pixel unified policy for 84x84 frames: a 64x64 frame is a size it cannot take
    ckpt = _pixel_student(tmp_path / "pixel.safetensors")
    bad = [
        (_image(84, 84, encoding="yuv422_weird"), "encoding"),
        (_image(84, 84, step=100), "step"),
        (_image(84, 84, data=bytes(10)), "bytes"),
        (_image(84, 84, data=b""), "empty"),
        (_image(64, 64), "expects 84x84"),
    ]
    with _served(tmp_path, ckpt, "inputs_probe") as (server, probe, pub, status, actions):
        good = _image(84, 84, data=np.full((84, 84, 3), 128, np.uint8).tobytes())
        # Image subscriptions are best effort: until the server's side of the match is complete a frame can
        # be dropped, so the first good frame is repeated until it is answered; counts are taken from there.
        for _ in range(60):
            pub.publish(good)
            if probe.spin_until(lambda: len(actions) >= 1, 0.5):
                break
        assert actions, server.log_text()
        probe.spin_until(lambda: bool(status) and json.loads(status[-1][1].data)["actions"] >= 1, 5)
        first_actions = json.loads(status[-1][1].data)["actions"]
        errors = []
        for msg, expected in bad:
            pub.publish(msg)

            def reported(word: str = expected) -> bool:
                return bool(status) and word in json.loads(status[-1][1].data)["last_error"]

            probe.spin_until(reported, 5)
            errors.append(json.loads(status[-1][1].data)["last_error"])
        n = len(actions)
        pub.publish(good)
        assert probe.spin_until(lambda: len(actions) > n, 10), "no answer after bad frames"
        probe.spin(1.2)  # one status heartbeat
        final = json.loads(status[-1][1].data)
        assert server.alive
    for (_, expected), err in zip(bad, errors, strict=True):
        assert expected in err, (expected, err)
    assert final["bad_frames"] == 5 and final["policy_errors"] == 0 and final["actions"] == first_actions + 1


@pytest.mark.parametrize(("params", "message"), [
    ({"task": "xarm/no-such-task"}, "unknown task 'xarm/no-such-task'"),
    ({"checkpoint": "/nonexistent/x.safetensors"}, "does not exist"),
    ({"threads": 0}, "parameter 'threads' = 0"),
])
def test_bad_startup_parameters_exit_with_one_clear_line(tmp_path, params, message):
    from polytask.ros.testing import NodeProcess, allocate_domain

    with allocate_domain(70, 99) as domain:
        server = NodeProcess("policy_server_node", domain_id=domain.id, log_dir=tmp_path, params=params)
        try:
            server.proc.wait(60)
        finally:
            server.stop()
        text = server.log_path.read_text()
    assert server.returncode == 2, text
    assert message in text and "Traceback" not in text, text


def test_a_policy_producing_nan_publishes_nothing(tmp_path):
    ckpt = _pixel_student(tmp_path / "nan.safetensors", nan=True)  # every action is NaN
    with _served(tmp_path, ckpt, "nan_probe") as (server, probe, pub, status, actions):
        frame = _image(84, 84, data=np.full((84, 84, 3), 7, np.uint8).tobytes())

        def ten_refused() -> bool:  # best-effort images: a busy machine may drop some, so keep sending
            if status and json.loads(status[-1][1].data)["bad_actions"] >= 10:
                return True
            pub.publish(frame)
            return False

        assert probe.spin_until(ten_refused, 30)
        final = json.loads(status[-1][1].data)
        assert server.alive
    assert actions == [] and final["actions"] == 0
    assert "invalid action" in final["last_error"] and "not published" in final["last_error"]
