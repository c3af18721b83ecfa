"""The Dask engine on long stacks in Zarr: time, peak memory per process, accuracy.

Run from the repository root, one scenario at a time (each writes its own Zarr stack to
a temporary folder, deleted at the end)::

    python benchmarks/bench_dask.py a   # 2,000 x 512^2 (2 GiB), band 32, workers of 1 GiB
    python benchmarks/bench_dask.py b   # 10,000 x 256^2 (2.4 GiB), band 32
    python benchmarks/bench_dask.py c   # 1,000 x 512^2, all pairs
    python benchmarks/bench_dask.py a --frames 200   # smaller, for a quick look

Each scenario prints: the time to write the stack (not part of the registration); the
time to start the ``LocalCluster`` (reported apart); the registration time through
``daskreg.register`` on that cluster; the peak resident memory of every process (the
client, which also hosts the scheduler, and each worker) sampled every 20 ms, next to
the workers' memory limit and the bytes they spilled; the shift error against the
truth; and the ratio to the in-process numpy engine, timed in this same process on the
first frames of the same stack and scaled by the number of pairs (a ratio below 1 means
the cluster beats one process; 2 workers bound it at about 0.5).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_dask_data import synthetic_zarr  # noqa: E402

import daskreg  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    frames: int
    size: int
    band: int | None
    memory_limit: str
    subset: int  # frames of the numpy baseline


SCENARIOS = {
    "a": Scenario(2000, 512, 32, "1GiB", 96),
    "b": Scenario(10_000, 256, 32, "1GiB", 192),
    "c": Scenario(1000, 512, None, "4GiB", 48),
}


class PeakMemory:
    """Peak RSS of this process and each of its children, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peaks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            try:
                rss = proc.memory_info().rss
                command = " ".join(proc.cmdline())
            except psutil.Error:
                continue
            if "resource_tracker" in command:  # multiprocessing's helper, not a worker
                continue
            kind = "client+scheduler" if proc.pid == me.pid else "worker"
            self.peaks[proc.pid] = (kind, max(rss, self.peaks.get(proc.pid, (kind, 0))[1]))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _rms_error(shifts: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    used = np.isfinite(shifts).all(axis=1)
    err = shifts[used] - truth[used]
    err -= err.mean(axis=0)
    return float(np.sqrt((err**2).sum(axis=1).mean())), float(np.abs(err).max())


def _pairs(n_frames: int, band: int | None) -> int:
    w = n_frames - 1 if band is None else min(band, n_frames - 1)
    return w * n_frames - w * (w + 1) // 2


def run(name: str, scenario: Scenario, workers: int) -> None:
    from distributed import Client

    from daskreg.parallel.cluster import local_cluster

    s = scenario
    gib = s.frames * s.size**2 * 4 / 2**30
    print(f"# scenario {name}: {s.frames} frames of {s.size}^2 float32 ({gib:.2f} GiB), "
          f"band {s.band or 'all pairs'} ({_pairs(s.frames, s.band):,} pairs), "
          f"{workers} workers x {s.memory_limit}")
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        path = Path(tmp) / "stack.zarr"
        start = time.perf_counter()
        truth = synthetic_zarr(path, s.frames, (s.size, s.size), chunk=32)
        print(f"  write the stack              {time.perf_counter() - start:8.1f} s")
        stack = daskreg.open_stack(path)

        start = time.perf_counter()
        with local_cluster(workers, s.memory_limit) as cluster, Client(cluster) as client:
            print(f"  start the LocalCluster       {time.perf_counter() - start:8.1f} s")
            with PeakMemory() as peak:
                start = time.perf_counter()
                result = daskreg.register(stack, band=s.band, threshold=2.0, progress=False)
                elapsed = time.perf_counter() - start
            spilled = client.run(
                lambda dask_worker: int(sum(dask_worker.data.spilled_total))
                if hasattr(dask_worker.data, "spilled_total")
                else 0
            )
        # The numpy baseline runs after the cluster, so that its arrays and threads do
        # not count in this process's memory during the Dask registration.
        subset = stack.isel(frame=slice(0, s.subset)).values
        daskreg.register(subset, band=s.band, threshold=2.0)  # warm the FFT plans
        start = time.perf_counter()
        daskreg.register(subset, band=s.band, threshold=2.0)
        t_sub = time.perf_counter() - start
        per_pair = t_sub / _pairs(s.subset, s.band)
        t_numpy = per_pair * _pairs(s.frames, s.band)
        print(f"  numpy engine, {s.subset} frames     {t_sub:8.1f} s  "
              f"({per_pair * 1e6:.0f} us/pair incl. average) -> {t_numpy:.0f} s for all")
        rms, worst = _rms_error(result.shifts.values, truth)
        print(f"  daskreg.register (dask)      {elapsed:8.1f} s  ratio to numpy "
              f"{elapsed / t_numpy:.2f}  ({elapsed / _pairs(s.frames, s.band) * 1e6:.0f} us/pair)")
        print(f"  shift error vs truth: rms {rms:.3f} px, max {worst:.3f} px; "
              f"bad frames {int(result.bad_frames.values.sum())}")
        for pid, (kind, rss) in sorted(peak.peaks.items(), key=lambda kv: kv[1][0]):
            print(f"  peak RSS {kind:17s} pid {pid:7d} {rss / 2**30:6.2f} GiB")
        total = sum(rss for _, rss in peak.peaks.values())
        print(f"  sum of the peaks                   {total / 2**30:6.3f} GiB")
        print(f"  workers' memory limit {s.memory_limit} each; spilled to disk: "
              f"{sum(spilled.values()) / 2**20:.0f} MiB in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--frames", type=int, help="override the number of frames")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    for name in SCENARIOS if args.scenario == "all" else [args.scenario]:
        scenario = SCENARIOS[name]
        if args.frames:
            scenario = Scenario(args.frames, scenario.size, scenario.band,
                                scenario.memory_limit, min(scenario.subset, args.frames))
        run(name, scenario, args.workers)


if __name__ == "__main__":
    main()
