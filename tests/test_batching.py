"""The one batch runner (stylemask_jax.batching): sequences, lazy streams and compiled sizes
share one padding rule (repeat the last real row, trim the outputs)."""

import numpy as np
import pytest

from stylemask_jax.batching import (bucket, group, iter_batches, pad_batch, run_batches,
                                    stream_batches)
from stylemask_jax.errors import UserInputError


def _recording(calls):
    def fn(*xs):
        calls.append([x.copy() for x in xs])
        return xs[0] * 2
    return fn


def test_stream_batches_pad_with_the_last_frame():
    items = [np.full((2, 3), i, np.uint8) for i in range(7)]
    calls = []
    batches = list(stream_batches(_recording(calls), iter(items), 3))
    assert [len(b) for b, _ in batches] == [3, 3, 1]
    assert all(c[0].shape == (3, 2, 3) for c in calls)            # one compiled shape
    assert [int(x[0, 0]) for x in calls[-1][0]] == [6, 6, 6]      # padded with the last frame
    np.testing.assert_array_equal(np.concatenate([b for b, _ in batches]), np.stack(items))
    np.testing.assert_array_equal(np.concatenate([o for _, o in batches]), 2 * np.stack(items))
    grouped = list(group(items, 3))
    assert grouped[0] is not grouped[1]                            # fresh arrays, safe to keep
    assert [b.shape[0] for b in group(items, 4)] == [4, 3]
    assert sum(len(b) for b in group(items, 4)) == 7
    assert pad_batch(np.zeros((2, 5)), 2).shape == (2, 5)
    assert list(stream_batches(_recording([]), [], 3)) == []
    with pytest.raises(ValueError):
        list(group([np.zeros(2), np.zeros(3)], 2))


def test_stream_batches_load_turns_each_batch_into_inputs():
    frames = (np.full((4,), i, np.float32) for i in range(5))
    calls = []
    out = list(stream_batches(_recording(calls), frames, 2, load=lambda b: [b[:, :1] + 10]))
    assert [c[0].shape for c in calls] == [(2, 1)] * 3
    np.testing.assert_array_equal(np.concatenate([o for _, o in out])[:, 0],
                                  2 * (np.arange(5) + 10))


def test_sequences_and_compiled_sizes():
    a = np.arange(11, dtype=np.float32)
    calls = []
    np.testing.assert_array_equal(run_batches(_recording(calls), [a], 4), 2 * a)
    assert [len(c[0]) for c in calls] == [4, 4, 4]
    calls.clear()
    np.testing.assert_array_equal(run_batches(_recording(calls), [a], (1, 2, 4)), 2 * a)
    assert [len(c[0]) for c in calls] == [4, 4, 4]                # chunks of 4, the last 3 -> 4
    calls.clear()
    run_batches(_recording(calls), [a[:5]], (4, 1, 2))
    assert [len(c[0]) for c in calls] == [4, 1]                   # 4 + 1: the smallest that fits
    assert [bucket((1, 2, 4), n) for n in (1, 2, 3, 4, 9)] == [1, 2, 4, 4, 4]
    starts = [start for start, _ in iter_batches(_recording([]), [a], 4)]
    assert starts == [0, 4, 8]


def test_batch_size_below_one_is_an_input_error():
    for call in (lambda: run_batches(_recording([]), [np.zeros(3)], 0),
                 lambda: list(stream_batches(_recording([]), [np.zeros(3)], 0)),
                 lambda: list(group([np.zeros(3)], 0))):
        with pytest.raises(UserInputError, match="^batch size must be at least 1, got 0$"):
            call()
