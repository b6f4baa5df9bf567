"""Run ids (nectar/registry/model.py): UUIDv7s whose random part comes from a per-process buffer of os.urandom."""

from __future__ import annotations

import os
import time
import uuid

from nectar.registry.model import RAND_B, RANDOM, RandomBytes, time_ordered_id


def test_ids_are_uuid7s_each_new_across_refills_of_the_buffer() -> None:
    now = time.time()
    ids = [time_ordered_id(now) for _ in range(3 * RANDOM.size // 10 + 7)]
    assert len(set(ids)) == len(ids)
    for made in ids:
        assert len(made) == 32 and made[12] == "7" and made[16] in "89ab"
        assert int(made[:12], 16) == int(now * 1000)


def test_the_ids_a_process_makes_at_one_clock_reading_increase_in_the_order_it_makes_them() -> None:
    """Two runs of a key queued at the same clock reading are told apart by their ids (the one made last is the key's
    latest): ids of the same millisecond follow each other, each still a UUIDv7 of that millisecond, and one of a later
    millisecond follows them too."""
    now = time.time()
    ids = [time_ordered_id(now) for _ in range(50)] + [time_ordered_id(now + 0.001)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for made in ids[:-1]:
        assert made[12] == "7" and made[16] in "89ab" and int(made[:12], 16) == int(now * 1000)
    back = time_ordered_id(now - 1.0)  # a clock set back: its own millisecond, not the last id's
    assert int(back[:12], 16) == int((now - 1.0) * 1000)


def test_an_id_after_the_last_value_of_its_millisecond_carries_into_the_next_and_stays_a_uuid7() -> None:
    """Past the greatest value of a millisecond (its 74 random bits all ones, so every new value of that millisecond is
    below it), the next id of the same millisecond carries through rand_b and rand_a into the next millisecond: never
    into the version or the variant."""
    ms = 1_700_000_000_000
    random = RandomBytes(size=16)
    last = ms << 80 | 0x7 << 76 | 0xFFF << 64 | 0b10 << 62 | RAND_B
    random.last = last
    made = random.id_value(ms)
    found = uuid.UUID(int=made)
    assert made > last and found.version == 7 and found.variant == uuid.RFC_4122
    assert (made >> 80, made >> 64 & 0xFFF, made & RAND_B < 2**32) == (ms + 1, 0, True)


def test_bytes_are_handed_out_each_once_and_a_take_larger_than_the_buffer_is_whole() -> None:
    random = RandomBytes(size=16)
    taken = [random.take(10) for _ in range(5)] + [random.take(40)]
    assert [len(part) for part in taken] == [10] * 5 + [40]
    assert len(set(taken)) == len(taken)


def test_a_forked_child_makes_ids_its_parent_does_not() -> None:
    """The child does not hand out again the bytes its parent had read and not yet used."""
    time_ordered_id(time.time())  # the parent's buffer read, most of it unused
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent, then out without the parent's exit handlers
        try:
            os.write(write, "".join(time_ordered_id(0.0) for _ in range(8)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        child = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = [time_ordered_id(0.0) for _ in range(8)]
    children = [child[i : i + 32] for i in range(0, len(child), 32)]
    assert len(children) == 8
    assert not set(children) & set(parent)
