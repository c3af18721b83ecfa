"""Cost of one added frame of a live registration, as the series grows.

Run from the repository root::

    python benchmarks/bench_live.py                    # 2,000 frames of 256^2, band 32
    python benchmarks/bench_live.py --frames 600 --big-frames 48
    python benchmarks/bench_live.py --frames 0 --cluster 2   # part 2 with the pairs on a cluster

Part 1 adds ``--frames`` frames of 256^2 (band 32) to one
:class:`daskreg.LiveRegistration` and prints the mean time per ``add`` in windows of 200
frames, and the spread of those means (the cost must not grow with the series). Part 2
times single adds at 512^2 with band 64 (after the warm-up and the first window): the
median, mean and slowest of ``--big-frames`` adds. Both run in one thread for the
transforms (``scipy.fft`` default), as one core of an acquisition computer would.
With ``--cluster N`` part 2 runs each frame's pairs on a ``LocalCluster`` of N
single-threaded worker processes (``LiveRegistration(client=...)``): this thread's CPU
time is then what the acquisition computer pays, the wall time what a frame waits.

The frames are rendered once (:func:`daskreg.synthetic.lattice_series`, dose 5, a slow
drift) and played forwards and backwards in turn, so the drift stays continuous and the
benchmark measures ``add``, not the generator.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from daskreg import LiveRegistration
from daskreg.errors import RegistrationWarning
from daskreg.method.pairs import measure_pairs, pair_setup
from daskreg.synthetic import lattice_series

WINDOW = 200


def _frames(count: int, shape: tuple[int, int], rendered: int, seed: int) -> np.ndarray:
    """``count`` frames cycling through ``rendered`` synthetic ones, back and forth."""
    series = lattice_series(
        rendered, shape, dose=5.0, drift_step=(0.2, -0.15), drift_jitter=0.1, seed=seed
    )
    stack = np.asarray(series.stack, dtype=np.float32)
    cycle = np.concatenate([stack, stack[::-1]])
    return cycle[np.arange(count) % len(cycle)]


def _add_times(live: LiveRegistration, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Seconds of CPU (this thread) and of wall clock per ``add``."""
    cpu, wall = np.empty(len(frames)), np.empty(len(frames))
    for k, frame in enumerate(frames):
        start, start_cpu = time.perf_counter(), time.thread_time()
        live.add(frame)
        cpu[k], wall[k] = time.thread_time() - start_cpu, time.perf_counter() - start
    return cpu, wall


def _pairs_alone(frames: np.ndarray, band: int) -> float:
    """CPU seconds of the band's pairs of one frame by the batch kernels (for scale)."""
    live = LiveRegistration(frames.shape[1:], band=band)
    live.add_many(frames[: band + 1])
    setup = pair_setup(live.params, frames.shape[1:])
    spectra = setup.spectra(frames[: band + 1])
    i, j = np.arange(band), np.full(band, band)
    measure_pairs(spectra, spectra, i, j, setup)
    start = time.thread_time()
    for _ in range(5):
        measure_pairs(spectra, spectra, i, j, setup)
    return (time.thread_time() - start) / 5


def main() -> None:  # noqa: D103
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--big-frames", type=int, default=100)
    parser.add_argument("--cluster", type=int, default=0, help="workers for part 2's pairs")
    args = parser.parse_args()
    # A long synthetic series leaves frames out now and then (the forward-backward turn);
    # the benchmark is about time.
    warnings.simplefilter("ignore", RegistrationWarning)

    if args.frames:
        _part_one(args.frames)
    if args.cluster:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=args.cluster, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster) as client,
        ):
            _part_two(args.big_frames, client)
    else:
        _part_two(args.big_frames, None)


def _part_one(n_frames: int) -> None:
    frames = _frames(n_frames, (256, 256), 300, seed=1)
    live = LiveRegistration((256, 256), band=32)
    times, wall = _add_times(live, frames)
    print(
        f"256^2, band 32, {n_frames} frames: ms per add in windows of {WINDOW} frames "
        "(CPU time of this thread: other processes on a shared machine do not count; wall "
        "clock beside it)"
    )
    means = []
    for start in range(0, len(times), WINDOW):
        part = times[start : start + WINDOW]
        means.append(part.mean())
        print(
            f"  frames {start:5d}-{start + len(part) - 1:5d}: CPU mean {1e3 * part.mean():6.2f}"
            f"  median {1e3 * np.median(part):6.2f}  max {1e3 * part.max():7.2f}"
            f"  | wall mean {1e3 * wall[start : start + WINDOW].mean():6.2f}"
        )
    # The first window holds the warm-up (all its frames measured at once): left out.
    steady = np.array(means[1:] if len(means) > 2 else means)
    print(
        f"  windows after the first: mean {1e3 * steady.mean():.2f} ms, spread "
        f"(max - min) / mean = {(steady.max() - steady.min()) / steady.mean():.1%}"
    )
    start = time.perf_counter()
    result = live.finish()
    print(
        f"  finish(): {time.perf_counter() - start:.2f} s, "
        f"{int((~result.bad_frames.values).sum())} of {n_frames} frames used"
    )


def _part_two(n_adds: int, client) -> None:
    big = 16 + 64 + n_adds
    frames = _frames(big, (512, 512), big, seed=2)
    live = LiveRegistration((512, 512), band=64, client=client)
    _add_times(live, frames[: big - n_adds])
    times, wall = _add_times(live, frames[big - n_adds :])
    where = "" if client is None else f", pairs on {len(client.nthreads())} workers"
    print(
        f"512^2, band 64{where}, {n_adds} adds after {big - n_adds} frames, CPU: "
        f"median {1e3 * np.median(times):.1f} ms, mean {1e3 * times.mean():.1f} ms, "
        f"slowest {1e3 * times.max():.1f} ms (wall: median {1e3 * np.median(wall):.1f}, "
        f"mean {1e3 * wall.mean():.1f} ms)"
    )
    print(f"  the band's 64 pairs alone: {1e3 * _pairs_alone(frames, 64):.1f} ms CPU")


if __name__ == "__main__":
    main()
