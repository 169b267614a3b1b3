"""Training chunks, batches and evaluation inputs cut from per-user arrays, against hand-worked indices."""

from __future__ import annotations

import numpy as np

from ssrf.dataset.batches import input_batch, train_batch
from ssrf.dataset.sequences import Sequences


def seqs() -> Sequences:
    # user 1: items 11 12 13 14 15 (splits train x3, valid, test); user 2: items 21 22 (train, test)
    return Sequences(
        ptr=np.array([0, 0, 5, 7]),
        items=np.array([11, 12, 13, 14, 15, 21, 22]),
        behaviors=np.array([1, 2, 1, 1, 4, 1, 1]),
        split=np.array([0, 0, 0, 1, 2, 0, 2], dtype=np.int8),
        item_fields=(),
        n_users=2,
        n_items=30,
        n_behaviors=4,
        field_sizes=(),
    )


def test_train_chunks_make_every_training_position_a_target_once():
    s = seqs()
    # user 1 has 3 training events (0, 1, 2); with n = 1, chunks of <= 2 events overlap by one:
    # (1, 3) -> input 12, target 13; (0, 2) -> input 11, target 12. User 2 has one training event: none.
    assert s.train_chunks(1).tolist() == [[1, 1, 3], [1, 0, 2]]
    assert s.train_chunks(5).tolist() == [[1, 0, 3]]
    # up to the validation events (for a final fit on train + valid)
    assert s.train_chunks(5, until=1).tolist() == [[1, 0, 4]]


def test_train_batch_shifts_targets_by_one_and_pads_left():
    s = seqs()
    b = train_batch(s, np.array([[1, 0, 3]]), n=4)
    assert b.items.tolist() == [[0, 0, 11, 12]]
    assert b.targets.tolist() == [[0, 0, 12, 13]]  # a position's target is the next event, never itself
    assert b.behaviors.tolist() == [[0, 0, 1, 2]]
    assert b.target_behaviors.tolist() == [[0, 0, 2, 1]]
    assert b.user.tolist() == [1]


def test_evaluation_inputs_end_just_before_the_period():
    s = seqs()
    users, ends, starts = s.eval_users(2)  # test
    assert users.tolist() == [1, 2] and ends.tolist() == [4, 6] and starts.tolist() == [0, 5]
    users, ends, _ = s.eval_users(1)  # validation: only user 1 has a validation event
    assert users.tolist() == [1] and ends.tolist() == [3]
    b = input_batch(s, np.array([1, 2]), np.array([0, 5]), np.array([4, 6]), n=3)
    assert b.items.tolist() == [[12, 13, 14], [0, 0, 21]]
    assert [x.tolist() for x in s.items_before(np.array([1]), np.array([4]))] == [[11, 12, 13, 14]]
    assert [x.tolist() for x in s.period_items(np.array([1, 2]), 2)] == [[15], [22]]
