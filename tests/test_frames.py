"""One frame preprocessing for training and deployment: the same camera image becomes the same policy input whether
it is recorded as a demo, rendered by a simulated task, received by the online trainer or served to a policy; and
the library's record flow turns ticks into a valid stored episode."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from polytask.learning.data.episodes import EpisodeStore
from polytask.learning.data.recording import IDLE, RECORDING, RESETTING, SAVING, RecordingSession
from polytask.ros.image_conversion import image_to_rgb8, numpy_to_image
from polytask.sim.frames import crop_box, prepare_frame
from polytask.sim.task import Task, TaskSpec

SPEC = TaskSpec(name="xarm/reach", suite="xarm", task_id=0, state_dim=3, action_dim=4, horizon=5, action_repeat=1)


def camera_image(seed: int = 0) -> np.ndarray:
    """A 640x480 camera frame with structure at every scale (so two different resizes cannot agree by chance)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    base = np.stack([xx % 256, yy % 256, (xx * yy) % 256], -1).astype(np.int32)
    return np.clip(base + rng.integers(-40, 40, base.shape), 0, 255).astype(np.uint8)


class CameraTask(Task):
    """A task whose camera renders full-size frames: what `Task` hands a policy goes through `prepare_frame`."""

    def __init__(self, image: np.ndarray) -> None:
        super().__init__(SPEC, render=True)
        self.image = image

    def _reset(self, seed):
        return np.zeros(3, np.float32)

    def _step(self, action):
        return np.zeros(3, np.float32), 0.0, False, False, {}

    def _render(self) -> np.ndarray:
        return self.image


def test_train_and_deploy_frames_are_identical_for_the_same_image(tmp_path):
    image = camera_image()
    # recorded as a demonstration (teleop recorder -> episode store -> replay)
    session = RecordingSession(EpisodeStore(tmp_path), SPEC.name, SPEC.task_id, image_size=84)
    session.start(reset=False)
    session.record(session.frame(image), np.zeros(3), np.zeros(4))
    saved = session.finish((session.frame(image), np.zeros(3))).path
    recorded = EpisodeStore(tmp_path).episodes()[0].pixels
    assert saved is not None and recorded.shape == (2, 84, 84, 3)
    # deployed: the policy server decodes the camera message and brings it to its image_size
    served = prepare_frame(image_to_rgb8(numpy_to_image(image, "rgb8")), 84)
    # trained on a task that renders the camera (a suite, or the online trainer's topic task)
    rendered = CameraTask(image).reset().pixels
    for frame in (recorded[0], recorded[1], rendered):
        np.testing.assert_array_equal(frame, served)
    # a different resize would not pass: the identity above is not a property of any downscaling
    other = cv2.resize(image, (84, 84), interpolation=cv2.INTER_LINEAR)
    assert np.abs(other.astype(int) - served).max() > 10


def test_crop_then_resize_and_bad_frames_are_named():
    image = camera_image(1)
    out = prepare_frame(image, 84, crop=[100, 50, 300, 300])
    np.testing.assert_array_equal(out, cv2.resize(image[50:350, 100:400], (84, 84), interpolation=cv2.INTER_AREA))
    np.testing.assert_array_equal(prepare_frame(out, 84), out)  # already the right size: unchanged
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        prepare_frame(image.astype(np.float32), 84)
    with pytest.raises(ValueError, match="outside the 640x480 frame"):
        prepare_frame(image, 84, crop=[700, 0, 10, 10])


def test_non_square_camera_frames_and_the_crop_box_the_calibration_uses():
    """The camera node publishes width x height through the same function; its CameraInfo shifts K by crop_box."""
    image = camera_image(2)
    out = prepare_frame(image, (48, 64), crop=[600, 400, 100, 100])  # (height, width); the crop runs off the frame
    np.testing.assert_array_equal(out, cv2.resize(image[400:480, 600:640], (64, 48), interpolation=cv2.INTER_AREA))
    assert crop_box(image.shape, [600, 400, 100, 100]) == (600, 400, 640, 480)
    assert crop_box(image.shape, []) == (0, 0, 640, 480)
    with pytest.raises(ValueError, match="frame size must be >= 1"):
        prepare_frame(image, (0, 64))


def test_record_flow_builds_aligned_episodes_and_keeps_them_on_a_failed_write(tmp_path, monkeypatch):
    store = EpisodeStore(tmp_path)
    session = RecordingSession(store, SPEC.name, SPEC.task_id, image_size=16, extra={"rate_hz": 10.0})
    frame = session.frame(camera_image())
    session.start(reset=True)
    assert session.state == RESETTING
    with pytest.raises(RuntimeError, match="record while resetting"):
        session.record(frame, np.zeros(3), np.zeros(4))
    session.reset_finished(True)
    assert session.state == RECORDING
    for t in range(3):
        session.record(frame, np.full(3, t), np.full(4, 0.1 * t))
    assert session.steps == 3
    waiting = session.finish(None)  # no fresh final observation yet
    assert waiting.retry and session.state == SAVING and session.waiting_for_final

    def disk_full(_episode):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "append", disk_full)
    failed = session.finish((frame, np.full(3, 3)))
    assert failed.retry and "No space left" in failed.error and session.steps == 3 and not session.waiting_for_final
    monkeypatch.undo()
    done = session.finish(None)  # the retry needs no new observation
    assert done.path is not None and session.state == IDLE and session.counters == {
        "saved": 1, "discarded": 0, "save_errors": 1}
    ep = store.episodes()[0]
    np.testing.assert_array_equal(ep.state[:, 0], [0, 1, 2, 3])  # T+1 observations, the final one last
    np.testing.assert_allclose(ep.action[:, 0], [0.0, 0.1, 0.2])  # each tick's action after its observation
    assert (ep.source, ep.episode_success, ep.extra["rate_hz"], len(ep)) == ("teleop", True, 10.0, 3)

    session.start(reset=False)
    session.record(frame, np.zeros(3), np.zeros(4))
    session.record(frame, np.zeros(5), np.zeros(4))  # the robot state changed size mid-episode
    bad = session.finish((frame, np.zeros(5)))
    assert bad.path is None and "changed size" in bad.error and session.counters["discarded"] == 1
    assert len(store.episodes()) == 1 and session.state == IDLE
