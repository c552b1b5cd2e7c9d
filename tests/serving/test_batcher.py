"""The batcher on its own, with a translator that records what it is asked: which jobs share a batch,
when the batcher waits for more, how many batches are decoded at once, and what failure does."""
import threading
import time

import pytest

from tests.helpers.batching import Recorder, job, started
from transformer_mt.serving.batcher import QueueFull


def test_jobs_waiting_together_are_one_batch_and_each_gets_its_own_results():
    hold = threading.Event()
    translator = Recorder(hold=hold)
    batcher = started(translator, max_wait_ms=0)
    first = batcher.submit(job("a"))
    time.sleep(0.1)  # "a" is decoding; the next three wait for it
    rest = [batcher.submit(job("b", "c")), batcher.submit(job("d")), batcher.submit(job("e"))]
    hold.set()
    assert [t.text for t in first.result(5)[0]] == ["A"]
    assert [[hyps[0].text for hyps in f.result(5)] for f in rest] == [["B", "C"], ["D"], ["E"]]
    assert translator.batches == [["a"], ["b", "c", "d", "e"]]
    batcher.stop(5)


def test_a_lone_worker_waits_up_to_max_wait_for_more():
    translator = Recorder()
    batcher = started(translator, max_wait_ms=300)
    first = batcher.submit(job("a"))
    time.sleep(0.05)
    second = batcher.submit(job("b"))
    first.result(5), second.result(5)
    assert translator.batches == [["a", "b"]]
    batcher.stop(5)


def test_with_a_worker_free_a_batch_is_decoded_at_once_else_it_waits_for_company():
    hold = threading.Event()
    translator = Recorder(parallel_batches=2, hold=hold)
    batcher = started(translator, max_wait_ms=5000)
    first = batcher.submit(job("a"))
    time.sleep(0.2)  # no 5-s wait: the other worker is free
    assert translator.batches == [["a"]]
    second = batcher.submit(job("b"))  # both workers busy now: "b" waits for company (up to 5 s)
    time.sleep(0.05)
    third = batcher.submit(job("c"))
    hold.set()
    for future in (first, second, third):
        future.result(10)
    assert translator.batches == [["a"], ["b", "c"]]  # and "b" went as soon as "a" freed its worker
    batcher.stop(5)


def test_a_worker_coming_free_never_takes_a_job_from_under_the_batch_waiting_for_it():
    """The worker freed by "a" and the one gathering "b" both wake when "c" arrives just before:
    however their threads are scheduled, "c" joins "b" rather than going alone ahead of it."""
    for _ in range(30):
        hold = threading.Event()
        translator = Recorder(parallel_batches=2, hold=hold)
        batcher = started(translator, max_wait_ms=5000)
        first = batcher.submit(job("a"))
        time.sleep(0.01)
        second = batcher.submit(job("b"))
        time.sleep(0.005)
        third = batcher.submit(job("c"))
        hold.set()
        for future in (first, second, third):
            future.result(10)
        batcher.stop(5)
        assert translator.batches == [["a"], ["b", "c"]]


def test_as_many_batches_decode_at_once_as_the_translator_can():
    hold = threading.Event()
    translator = Recorder(parallel_batches=2, hold=hold)
    batcher = started(translator, max_wait_ms=0)
    futures = []
    for sentence in "abc":
        futures.append(batcher.submit(job(sentence)))
        time.sleep(0.1)
    assert translator.at_once == 2 and translator.batches == [["a"], ["b"]]  # "c" waits for a worker
    hold.set()
    assert [f.result(5)[0][0].text for f in futures] == ["A", "B", "C"]
    batcher.stop(5)


def test_without_batching_one_job_at_a_time_on_one_worker():
    hold = threading.Event()
    translator = Recorder(parallel_batches=2, hold=hold)
    batcher = started(translator, batching=False)
    futures = [batcher.submit(job(s)) for s in "abc"]
    time.sleep(0.1)
    hold.set()
    for future in futures:
        future.result(5)
    assert translator.batches == [["a"], ["b"], ["c"]] and translator.at_once == 1
    batcher.stop(5)


def test_a_full_queue_refuses_at_once_and_a_failing_batch_fails_only_its_requests():
    hold = threading.Event()
    translator = Recorder(hold=hold)
    batcher = started(translator, max_wait_ms=0, queue_sentences=2)
    decoding = batcher.submit(job("a"))
    time.sleep(0.1)
    waiting = batcher.submit(job("b", "c"))
    with pytest.raises(QueueFull):
        batcher.submit(job("d"))
    hold.set()
    decoding.result(5), waiting.result(5)
    with pytest.raises(RuntimeError, match="this batch fails"):
        batcher.submit(job("fail")).result(5)
    assert batcher.alive and [h[0].text for h in batcher.submit(job("e")).result(5)] == ["E"]
    batcher.stop(5)


def test_stop_finishes_what_is_queued_then_ends_every_worker():
    hold = threading.Event()
    translator = Recorder(parallel_batches=2, hold=hold)
    batcher = started(translator, max_wait_ms=0)
    futures = [batcher.submit(job(s)) for s in "abcd"]
    stopper = threading.Thread(target=batcher.stop, args=(10,))
    stopper.start()
    time.sleep(0.1)
    assert not batcher.alive  # stopping: readiness is gone at once
    hold.set()
    stopper.join(10)
    assert sorted(f.result(0)[0][0].text for f in futures) == ["A", "B", "C", "D"]
    assert not any(worker.is_alive() for worker in batcher._workers)
