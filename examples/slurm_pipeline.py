"""The seed's "Adding New Pipeline Types" example: a SLURM pipeline, corrected.

``SLURMPipeline`` is a custom executor: like ``florin.Multiprocess`` it only
decides how a step is mapped over the items of a collection (the tiles of a
volume), by overriding ``Pipeline.map``. For each item it

1. serializes the per-item work and the item (cloudpickle),
2. writes a job script with the ``#SBATCH`` directives given as keyword
   arguments,
3. submits one job per item with ``sbatch`` and
4. blocks until every job has finished (``sacct``), then returns the results
   in order, so the implicit join reassembles the volume as usual.

On a machine without SLURM (no ``sbatch`` on the PATH) the script uses
``LocalSLURMPipeline``, which runs the very same job scripts with ``bash`` in
background processes, so the example runs anywhere.

Corrections to the seed's sketch: the job script path was an undefined name,
``subprocess`` output is bytes (decoded here), ``completed`` was a list used
as a set, the pipeline pickled *itself* (so each job would have submitted
jobs again), and job failures went unnoticed.

Outputs in OUTPUT_DIR (default ``slurm-pipeline-output``): ``volume.tif``,
``segmented.tiff``, ``jobs/`` (job script, tasks, results, logs) and
``summary.json``.

Run: ``python examples/slurm_pipeline.py [OUTPUT_DIR]``
"""

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time

import cloudpickle
import numpy as np

import florin
import florin.morphology as morphology
import florin.thresholding as thresholding
from florin.data import phantom
from florin.errors import PipelineError
from florin.pipelines import Pipeline

SHAPE = (32, 128, 128)
SEED = 0


# [slurm]
class SLURMPipeline(Pipeline):
    """Pipeline that maps its steps over items as SLURM jobs, one job per item.

    Parameters
    ----------
    *steps : callables
        The functions of the pipeline.
    workdir : str
        Directory (on a file system shared with the compute nodes) for the job
        script, the serialized tasks, their results and the job logs.
    poll : float
        Seconds between two ``sacct`` queries.

    Other Parameters
    ----------------
    **directives
        SLURM directives, e.g. ``qos='debug', time=60``; each becomes an
        ``#SBATCH --key=value`` line of the job script.
    """

    name = "slurm"
    #: Command that starts the task inside the allocation.
    launcher = "srun"

    def __init__(self, *steps, workdir="slurm-jobs", poll=10.0, **directives):
        super().__init__(*steps)
        self.workdir = os.path.abspath(workdir)
        self.poll = poll
        self.slurm_directives = directives

    def map(self, func, items):
        """Run ``func`` on every item in its own SLURM job; results in order."""
        os.makedirs(self.workdir, exist_ok=True)
        jobscript = self.write_jobscript()
        jobs = []
        for i, item in enumerate(items):
            task = os.path.join(self.workdir, f"task-{i}.pkl")
            result = os.path.join(self.workdir, f"result-{i}.pkl")
            with open(task, "wb") as f:
                cloudpickle.dump((func, item), f)
            if os.path.exists(result):
                os.remove(result)
            jobs.append((self.submit(jobscript, task, result), result))
        self.wait([jobid for jobid, _ in jobs])
        results = []
        for jobid, result in jobs:
            if not os.path.exists(result):
                raise PipelineError(f"SLURM job {jobid} wrote no result; see its log in {self.workdir}")
            with open(result, "rb") as f:
                ok, value = pickle.load(f)
            if not ok:
                raise PipelineError(f"SLURM job {jobid} failed: {value}")
            results.append(value)
        return results

    def write_jobscript(self):
        """Write the job script; it runs one task: ``jobscript TASK RESULT``."""
        lines = ["#!/usr/bin/env bash"]
        lines += [f"#SBATCH --{key.replace('_', '-')}={val}" for key, val in self.slurm_directives.items()]
        lines += [f"#SBATCH --output={self.workdir}/slurm-%j.out"]
        runner = f"{sys.executable} {os.path.abspath(__file__)} --run-task"
        lines += [f'{self.launcher} {runner} "$1" "$2"'.strip(), ""]
        path = os.path.join(self.workdir, "florin-task.job")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return path

    def submit(self, jobscript, *args):
        """Submit the job script and return the job id."""
        out = subprocess.check_output(["sbatch", "--parsable", jobscript, *args], text=True)
        return re.search(r"(\d+)", out).group(1)

    def finished(self, jobid):
        """Whether the job has left the queue (completed, failed, cancelled, ...)."""
        out = subprocess.check_output(["sacct", "-n", "-X", "-P", "-j", jobid, "-o", "State"], text=True)
        state = out.strip().split("\n")[0] if out.strip() else "PENDING"
        return not re.match(r"(PENDING|RUNNING|REQUEUED|RESIZING|SUSPENDED|CONFIGURING|COMPLETING)", state)

    def wait(self, jobids):
        """Block until every job has finished."""
        pending = set(jobids)
        while pending:
            pending = {jobid for jobid in pending if not self.finished(jobid)}
            if pending:
                time.sleep(self.poll)
# [/slurm]


class LocalSLURMPipeline(SLURMPipeline):
    """SLURMPipeline stand-in: runs the job scripts with bash in background processes."""

    launcher = ""

    def __init__(self, *steps, **kwargs):
        kwargs.setdefault("poll", 0.1)
        super().__init__(*steps, **kwargs)
        self._procs = {}

    def submit(self, jobscript, *args):
        jobid = str(len(self._procs) + 1)
        with open(os.path.join(self.workdir, f"slurm-{jobid}.out"), "w") as log:
            self._procs[jobid] = subprocess.Popen(["bash", jobscript, *args], stdout=log, stderr=subprocess.STDOUT)
        return jobid

    def finished(self, jobid):
        return self._procs[jobid].poll() is not None


def run_task(task, result):
    """What a job runs: apply the serialized work to its item, store the outcome."""
    with open(task, "rb") as f:
        func, item = pickle.load(f)
    try:
        outcome = (True, func(item))
    except Exception as exc:  # reported by the submitting process
        outcome = (False, f"{type(exc).__name__}: {exc}")
    tmp = result + ".tmp"
    with open(tmp, "wb") as f:
        cloudpickle.dump(outcome, f)
    os.replace(tmp, result)


def main(out_dir="slurm-pipeline-output"):
    os.makedirs(out_dir, exist_ok=True)
    sample = phantom(SHAPE, seed=SEED)
    volume = os.path.join(out_dir, "volume.tif")
    florin.io.write(volume, sample.image, overwrite=True)
    segmented_path = os.path.join(out_dir, "segmented.tiff")
    Slurm = SLURMPipeline if shutil.which("sbatch") else LocalSLURMPipeline

    # [pipeline]
    pipeline = florin.Serial(
        florin.load(volume),
        # Two big tiles: one SLURM job each
        florin.tile(shape=(32, 128, 64), stride=(32, 128, 64)),
        Slurm(
            thresholding.ndnt(shape=(10, 64, 64), threshold=0.3),
            morphology.binary_opening(),
            workdir=os.path.join(out_dir, "jobs"),
            time=10,
            qos="debug",
        ),
        florin.save(segmented_path, overwrite=True),
    )
    segmented = pipeline()
    # [/pipeline]

    whole = florin.Serial(thresholding.ndnt(shape=(10, 64, 64), threshold=0.3), morphology.binary_opening())(
        sample.image
    )
    mask, truth = segmented.values, sample.labels > 0
    dice = 2 * np.logical_and(mask, truth).sum() / (mask.sum() + truth.sum())
    summary = {
        "phantom": {"shape": list(SHAPE), "seed": SEED},
        "executor": Slurm.__name__,
        "jobs": len([n for n in os.listdir(os.path.join(out_dir, "jobs")) if n.startswith("result-")]),
        "outputs": {"segmented": "segmented.tiff"},
        "dice": float(dice),
        "equal_to_whole_volume": bool(np.array_equal(mask, whole.values)),
    }
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(
        f"{summary['jobs']} jobs via {Slurm.__name__}; Dice vs. ground truth {dice:.3f}; "
        f"identical to the whole-volume result: {summary['equal_to_whole_volume']}"
    )
    return summary


if __name__ == "__main__":
    if sys.argv[1:2] == ["--run-task"]:
        run_task(*sys.argv[2:4])
    else:
        main(*sys.argv[1:])
