#!/bin/bash
# One PBS job that starts its own Dask cluster and registers a stack with a checkpoint:
# the PBS twin of slurm_job.sbatch (see there). At the walltime PBS sends SIGTERM to the
# job (kill_delay seconds before SIGKILL: keep it >= 60 for the stop); the job reruns
# itself with qrerun, and the rerun resumes from the checkpoint.
#
#   qsub -v IN=/scratch/$USER/stack.zarr,OUT=/scratch/$USER/out workflows/pbs_job.sh
#
# OUT must be on a file system every node sees (checkpoint, spilled spectra).
#PBS -N daskreg
#PBS -l select=2:ncpus=16:mem=64gb
#PBS -l walltime=04:00:00
#PBS -r y
#PBS -j oe

set -uo pipefail
IN=${IN:-$1}
OUT=${OUT:-$2}
[ $# -ge 2 ] && shift 2
cd "${PBS_O_WORKDIR:-.}"
mkdir -p "$OUT"
# source venv/bin/activate   # or: module load ...; conda activate daskreg

JOB=${PBS_JOBID:-local}
SCHED="$OUT/scheduler-$JOB.json"
rm -f "$SCHED"
WORKERS=${DASKREG_WORKERS:-$(( $(wc -l < "${PBS_NODEFILE:-/dev/null}") - 1 ))}
MEMORY=${DASKREG_WORKER_MEMORY:-3.5GiB}
# glibc's defaults make the pair kernels 2.5x slower (every large temporary mapped and
# unmapped): 32 MiB thresholds, as daskreg's own clusters have. The nanny sets the trim
# threshold itself, from the Dask config (an environment variable would be lowercased).
export MALLOC_MMAP_THRESHOLD_=$(( 32 * 1024 * 1024 ))
export DASK_CONFIG="$OUT/dask-config"
mkdir -p "$DASK_CONFIG"
printf 'distributed:\n  nanny:\n    pre-spawn-environ:\n      MALLOC_TRIM_THRESHOLD_: %d\n' \
    $(( 32 * 1024 * 1024 )) > "$DASK_CONFIG/daskreg-malloc.yaml"

dask scheduler --scheduler-file "$SCHED" --host "${DASKREG_HOST:-$(hostname)}" \
    --port 0 --dashboard-address :0 &
SCHEDULER=$!
until [ -s "$SCHED" ]; do
    kill -0 "$SCHEDULER" 2>/dev/null || { echo "the Dask scheduler did not start" >&2; exit 1; }
    sleep 1
done
if [ -n "${PBS_JOBID:-}" ]; then
    # One worker per core of the node file but the scheduler's (mpiexec only launches
    # the processes: the workers talk over TCP).
    mpiexec -n "$WORKERS" dask worker --scheduler-file "$SCHED" \
        --nthreads 1 --memory-limit "$MEMORY" --no-dashboard &
else
    # Outside PBS (a test, a workstation): the workers in this shell.
    dask worker --scheduler-file "$SCHED" --nworkers "$WORKERS" --nthreads 1 \
        --memory-limit "$MEMORY" --no-dashboard &
fi
WORKER=$!

# --resume continues a checkpoint left by an earlier (requeued) job, or starts one.
daskreg register "$IN" -o "$OUT/average.tif" --save-result "$OUT/result.zarr" \
    --scheduler-file "$SCHED" --checkpoint "$OUT/checkpoint.zarr" --resume \
    --temp-dir "$OUT" --no-progress "$@" &
RUN=$!
# Pass the walltime's SIGTERM on to daskreg (and wait for it to stop).
trap 'kill -TERM "$RUN" 2>/dev/null' TERM
# wait returns early when the trap runs: wait again for daskreg to finish stopping.
while :; do
    wait "$RUN"
    CODE=$?
    kill -0 "$RUN" 2>/dev/null || break
done

kill "$WORKER" 2>/dev/null
kill "$SCHEDULER" 2>/dev/null
wait 2>/dev/null
rm -f "$SCHED"
if [ "$CODE" -eq 143 ]; then
    # Stopped at the walltime with its checkpoint: run again, resuming.
    ${DASKREG_REQUEUE:-qrerun} "$JOB"
fi
exit "$CODE"
