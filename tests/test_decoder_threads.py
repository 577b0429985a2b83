"""A busy worker decodes each window with one thread; a window alone uses every core."""

from __future__ import annotations

import threading

from activities import decode as media
from activities.decode import DecoderThreads, decode_window, probe
from activities.offline import analyse_file


def test_threads_follow_how_many_windows_decode_at_once() -> None:
    threads = DecoderThreads(fixed=0, cores=4)
    assert threads.acquire() == 0  # alone: FFmpeg picks, one thread per core
    assert threads.acquire() == 2  # two windows share four cores
    assert threads.acquire() == 1
    assert threads.acquire() == 1  # more windows than cores: never fewer than one
    for _ in range(4):
        threads.release()
    assert threads.decoding == 0
    assert threads.acquire() == 0


def test_a_fixed_count_wins() -> None:
    threads = DecoderThreads(fixed=3, cores=16)
    assert [threads.acquire() for _ in range(3)] == [3, 3, 3]


def test_every_window_gives_its_decoder_back(clips) -> None:
    """After whole analyses, in parallel, and after a window abandoned half-way, no decoder
    is left counted (a leak would pin a busy worker to one thread per window forever)."""
    path = str(clips("main"))
    reports = []
    runs = [threading.Thread(target=lambda: reports.append(analyse_file(path, window_s=4.0))) for _ in range(3)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(reports) == 3 and reports[0] == reports[1] == reports[2] and reports[0]
    assert media.DECODER_THREADS.decoding == 0

    chunks, _ = decode_window(path, probe(path), start_s=0.0, end_s=8.0)
    next(chunks)  # decoding has started...
    assert media.DECODER_THREADS.decoding == 1
    chunks.close()  # ...and the consumer goes away (a failed detector, a cancelled window)
    assert media.DECODER_THREADS.decoding == 0
