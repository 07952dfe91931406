"""The message format between the scorer and the sandboxed worker: round trips, and hostile bytes refused."""
import json
import random
import struct

import numpy as np
import pytest

from normgrade.run.worker import FrameError, FrameTooLarge, decode_frame, encode_frame

LIMIT = 1 << 20


def _raw(header, payload=b""):
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack(">Q", len(text)) + text + payload


def test_round_trip_keeps_shape_dtype_and_values():
    arrays = [np.arange(6.0).reshape(2, 3), np.array([True, False]), np.zeros((0, 4), np.float32),
              np.asfortranarray(np.ones((3, 2), np.int16)), np.array(1 + 2j)]
    header, decoded, used = decode_frame(encode_frame({"kind": "x"}, arrays) + b"next", LIMIT)
    assert header["kind"] == "x" and used == len(encode_frame({"kind": "x"}, arrays))
    for a, b in zip(arrays, decoded):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)


def test_incomplete_frames_wait_for_more_bytes():
    frame = encode_frame({"kind": "x"}, [np.ones(10)])
    for cut in range(len(frame)):
        assert decode_frame(frame[:cut], LIMIT) is None


HOSTILE = {
    "object dtype": _raw({"arrays": [{"dtype": "|O", "shape": [1]}]}, b"\0" * 8),
    "record dtype": _raw({"arrays": [{"dtype": [["a", "<f8"]], "shape": [1]}]}, b"\0" * 8),
    "string dtype": _raw({"arrays": [{"dtype": "<U4", "shape": [1]}]}, b"\0" * 16),
    "pickle-ish dtype text": _raw({"arrays": [{"dtype": "__import__('os')", "shape": [1]}]}),
    "negative dimension": _raw({"arrays": [{"dtype": "<f8", "shape": [-1]}]}),
    "not an object": _raw([1, 2, 3]),
    "arrays not a list": _raw({"arrays": 5}),
    "too many dimensions": _raw({"arrays": [{"dtype": "<f8", "shape": [1] * 100}]}, b"\0" * 8),
    "not JSON": _raw(b"{nope"),
    "deeply nested": _raw(b"[" * 100000),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_frames_are_refused(case):
    with pytest.raises(FrameError):
        decode_frame(HOSTILE[case], LIMIT)


@pytest.mark.parametrize("frame", [
    _raw({"arrays": [{"dtype": "<f8", "shape": [1 << 40, 1 << 40]}]}),  # overflows int64
    struct.pack(">Q", 1 << 40),  # a header of a terabyte
    _raw({"arrays": [{"dtype": "<f8", "shape": [LIMIT]}]}),
])
def test_oversized_frames_are_refused_before_reading_them(frame):
    with pytest.raises(FrameTooLarge):
        decode_frame(frame, LIMIT)


def test_random_bytes_never_escape_as_anything_but_frame_error():
    rng = random.Random(7)
    valid = encode_frame({"kind": "result", "values": {}}, [np.ones((2, 2))])
    for _ in range(3000):
        data = bytearray(valid)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            decode_frame(bytes(data), LIMIT)
        except FrameError:
            pass
