"""Image <-> numpy: exact round trips (property-based) and clear errors for every malformed field."""

from __future__ import annotations

import array

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sensor_msgs.msg import Image

from polytask.ros import topics
from polytask.ros.image_conversion import (
    ENCODINGS,
    ImageError,
    image_to_numpy,
    image_to_rgb8,
    numpy_to_image,
    to_rgb8,
)


def _shape(encoding: str, h: int, w: int) -> tuple[int, ...]:
    c = ENCODINGS[encoding].channels
    return (h, w) if c == 1 else (h, w, c)


@st.composite
def image_arrays(draw):
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    dtype = ENCODINGS[encoding].dtype
    elements = st.floats(-1e6, 1e6, width=32) if dtype == np.float32 else None
    arr = draw(arrays(dtype, _shape(encoding, h, w), elements=elements))
    return encoding, arr


@settings(max_examples=150, deadline=None)
@given(image_arrays())
def test_round_trip_is_exact(case):
    encoding, arr = case
    msg = numpy_to_image(arr, encoding, frame_id="cam")
    assert msg.step == arr.shape[1] * ENCODINGS[encoding].pixel_bytes
    assert len(msg.data) == msg.step * msg.height
    back = image_to_numpy(msg)
    assert back.dtype == arr.dtype and back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


@settings(max_examples=80, deadline=None)
@given(image_arrays(), st.integers(1, 7))
def test_padded_rows_are_skipped(case, pad):
    """A publisher may pad rows (step > width * pixel size); the padding must not leak into the pixels."""
    encoding, arr = case
    tight = numpy_to_image(arr, encoding)
    rows = np.frombuffer(tight.data, np.uint8).reshape(tight.height, tight.step)
    padded = np.concatenate([rows, np.full((tight.height, pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=tight.height, width=tight.width, encoding=encoding, is_bigendian=tight.is_bigendian,
                step=tight.step + pad)
    msg.data = array.array("B", padded.tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint16, st.tuples(st.integers(1, 8), st.integers(1, 8))))
def test_16uc1_other_byte_order_is_swapped(arr):
    """16UC1 from a big-endian publisher decodes to the same depth values (PyPI cv_bridge got this wrong)."""
    msg = Image(height=arr.shape[0], width=arr.shape[1], encoding="16UC1", is_bigendian=1, step=arr.shape[1] * 2)
    msg.data = array.array("B", arr.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), arr)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(3))))
def test_bgr_and_mono_to_rgb(arr):
    np.testing.assert_array_equal(image_to_rgb8(numpy_to_image(arr[:, :, ::-1].copy(), "bgr8")), arr)
    mono = arr[:, :, 0].copy()
    rgb = to_rgb8(mono, "mono8")
    assert rgb.shape == (*mono.shape, 3)
    assert all(np.array_equal(rgb[:, :, i], mono) for i in range(3))


def _msg(**fields) -> Image:
    base = dict(height=2, width=3, encoding="rgb8", step=9, is_bigendian=0)
    data = fields.pop("data", bytes(18))
    base.update(fields)
    msg = Image(**base)
    msg.data = array.array("B", data)
    return msg


@pytest.mark.parametrize(("fields", "needle"), [
    (dict(encoding="yuv422"), "encoding 'yuv422' is not supported"),
    (dict(encoding=""), "encoding '' is not supported"),
    (dict(width=0, step=0, data=b""), "is empty"),
    (dict(height=0, data=b""), "is empty"),
    (dict(step=8), "step 8 is shorter than one row"),
    (dict(data=b""), "data is empty"),
    (dict(data=bytes(17)), "data has 17 bytes; expected step 9 x height 2 = 18"),
    (dict(data=bytes(19)), "data has 19 bytes"),
    (dict(height=100000, width=100000, step=300000, data=b"\x00"), "exceeds the limit"),
])
def test_malformed_messages_raise_clear_errors(fields, needle):
    with pytest.raises(ImageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        image_to_numpy(_msg(**fields))


def test_bad_arrays_are_refused():
    with pytest.raises(ImageError, match="dtype float64 does not match encoding rgb8"):
        numpy_to_image(np.zeros((2, 2, 3)), "rgb8")
    with pytest.raises(ImageError, match=r"shape \(2, 2\) does not match encoding rgb8"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ImageError, match="empty"):
        numpy_to_image(np.zeros((0, 2, 3), np.uint8), "rgb8")
    with pytest.raises(ImageError, match="without a scaling rule"):
        to_rgb8(np.zeros((2, 2), np.uint16), "16UC1")


def test_topics_doc_is_current():
    """docs/topics.md is generated from the topic table; a table change must regenerate it."""
    from pathlib import Path

    doc = Path(__file__).resolve().parents[1] / "docs" / "topics.md"
    assert doc.read_text() == topics.markdown(), "regenerate: python -m polytask.ros.topics > docs/topics.md"
    for t in topics.TOPICS.values():
        assert topics.load_type(t.msg_type).__name__ == t.msg_type.rsplit("/", 1)[1]
        assert t.qos in topics.QOS_PROFILES
