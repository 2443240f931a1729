"""``normbench <command> ...``: strips the sub-command and hands the rest to its handler.

``train`` is the Hydra application: its overrides are checked first (one line, exit 2, before
any run directory exists), then everything goes to Hydra, so ``-m``, ``--cfg job``, ``--info``
and ``--help`` work behind it exactly as behind a plain Hydra app. A multirun runs every job,
prints a tally and exits 1 when any job failed; a signal stops the whole command after the
running job has checkpointed (exit 128 + signal number).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from normbench.errors import ConfigError, DivergedError, NormbenchError

log = logging.getLogger("normbench")

#: Environment variable naming the file where each job of a multirun appends its outcome
#: (inherited by launcher worker processes).
TALLY_ENV = "NORMBENCH_MULTIRUN_TALLY"

USAGE = """usage: normbench <command> [args]

commands:
  train [overrides]   train one configuration (Hydra overrides; -m for a multirun sweep,
                      --cfg job to print the composed config, --help for the config groups)
  eval RUN_DIR... [key=value ...] [-m]
                      re-evaluate finished runs from their checkpoints under a statistics mode
                      (mode=running|precise|batch|adapt|partial|tent) on some data; one row per
                      evaluation in RUN_DIR/evals.csv (-m sweeps comma-separated values;
                      `normbench eval --help` for every key)
  study ACTION NAME   a declared study (list | plan | run | status | report): its training
                      grid, evaluation phases, report and claims; `normbench study --help`
  report DIR...       turn run or sweep directories into the paper's figure, CSV and README
  data                list every dataset: found or not, where, and how to get it
  bench NAME          benchmarks (`normbench bench NAME --help` for options):
                        norms   forward+backward time of every norm variant
                        models  our ResNet-50 / VGG-16 forward time against torchvision's
                        train   share of training-step time in normalization layers, eager vs
                                compiled, fp32 vs bf16; images/s and the data share of a step
                        corruptions  time to corrupt N images per corruption, relative to one
                                forward pass of the evaluated model
                        inference  per-image latency at small batches, each norm and BN folded
                        lstm    our LSTM cell against torch.nn.LSTM, forward+backward, eager
                                and compiled

examples:
  normbench train experiment=bn_fig1 norm=batch trainer.steps=2000
  normbench train -m experiment=bn_fig1
  normbench eval runs/bn_fig1/norm=batch -m mode=running,precise,batch batch_size=1,60
  normbench study run bn_fig1
  normbench report runs/bn_fig1 --out results/bn_fig1
  normbench bench train --threads 1
"""

# Benchmark name -> module with a `main(argv) -> int`.
BENCHMARKS = {
    "norms": "normbench.bench.norms",
    "models": "normbench.bench.models",
    "train": "normbench.bench.train",
    "corruptions": "normbench.bench.corruptions",
    "inference": "normbench.bench.inference",
    "lstm": "normbench.bench.lstm",
}


def train_command(argv: list[str]) -> int:
    """``normbench train [-m] overrides``: one run or a multirun; the exit status."""
    import hydra

    from normbench.cli.precheck import is_multirun, precheck
    from normbench.config import config_dir, register_resolvers

    argv = rank_overrides(argv)
    precheck(argv)
    register_resolvers()
    from normbench.cli.sweep_stop import SweepStop

    multirun = is_multirun(argv)
    fd, tally = tempfile.mkstemp(prefix="normbench-multirun-", suffix=".tsv")
    os.close(fd)
    os.environ[TALLY_ENV] = tally
    sys.argv = ["normbench train", *argv]
    main = hydra.main(config_path=str(config_dir()), config_name="train", version_base="1.3")(
        hydra_task
    )
    # A multirun's first signal stops its jobs at their next step boundary (see sweep_stop).
    stop = SweepStop(tally) if multirun else contextlib.nullcontext()
    try:
        with stop:
            main()
    except SystemExit:  # Hydra's own exit (a job's exception, --help, ...)
        if getattr(stop, "signum", None) is None:
            raise
    finally:
        outcomes = Path(tally).read_text().splitlines()
        Path(tally).unlink(missing_ok=True)
        os.environ.pop(TALLY_ENV, None)
    return _report_tally(outcomes, getattr(stop, "signum", None)) if multirun else 0


def rank_overrides(argv: list[str]) -> list[str]:
    """Under torchrun, every process runs this application on the same run directory: the
    ranks other than 0 write nothing of Hydra's (no .hydra/, no train.log). A multirun under
    torchrun is refused (one run per torchrun; many runs: a launcher)."""
    from normbench.cli.precheck import is_multirun
    from normbench.engine.distributed import launched_rank, launched_world_size

    if launched_world_size() <= 1:
        return argv
    if is_multirun(argv):
        raise ConfigError(
            "normbench train -m under torchrun: torchrun runs one run on several processes; run "
            "sweeps with a Hydra launcher whose jobs use torchrun, e.g. hydra/launcher=slurm "
            "with hydra.launcher.tasks_per_node=P (see the README)."
        )
    if launched_rank() == 0:
        return argv
    return [*argv, "hydra.output_subdir=null", "hydra/job_logging=disabled"]


def hydra_task(cfg: Any) -> dict[str, Any] | None:
    """One Hydra job, holding its run directory's lock. A user error ends a single run with
    its message alone (exit 2); in a multirun, a failed run is recorded as failed and the sweep
    goes on. A signal stops the whole multirun: a job in a launcher's worker process (joblib)
    records that it stopped and returns, so that the launcher waits for the other jobs to
    checkpoint too; a job that starts after the stop does not train."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from normbench.cli import sweep_stop
    from normbench.engine.signals import RunStopped

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    tally = os.environ.get(TALLY_ENV)
    if not (multirun and tally):
        return _run_job(cfg, run_dir, multirun)
    stop_file = sweep_stop.stop_file(tally)
    if not sweep_stop.in_worker_process():  # jobs one after another here: a stop ends them all
        signum = sweep_stop.requested_signal(stop_file)
        if signum is not None:
            log.warning("%s: not started, the sweep was stopped; the same command runs it", run_dir)
            raise RunStopped(signum)
        return _run_job(cfg, run_dir, multirun)
    if "joblib" not in str(hydra_cfg.launcher.get("_target_", "")).lower():
        return _run_job(cfg, run_dir, multirun)  # submitit: a job's RunStopped is its failure
    with sweep_stop.job_stop(tally) as stop:
        if stop.requested or sweep_stop.requested_signal(stop_file) is not None:
            log.info("%s: not started, the sweep is stopping; the same command runs it", run_dir)
            _tally("not started", run_dir)
            return None
        _use_job_gpu(cfg, hydra_cfg.job.num)
        try:
            return _run_job(cfg, run_dir, multirun)
        except RunStopped as stopped:  # checkpointed; raised on, joblib would kill the others
            sweep_stop.request_stop(stop_file, stopped.signum)
            from normbench.recorder import read_summary

            done = read_summary(run_dir / "summary.json").get("status") == "complete"
            _tally("complete" if done else "interrupted", run_dir)
            return None


def _use_job_gpu(cfg: Any, job_num: int) -> None:
    """Where there are several GPUs, the job's GPU is chosen from its number (job_num modulo the
    GPU count); on one GPU or none, nothing changes."""
    if str(cfg.trainer.device) not in ("auto", "cuda"):
        return
    import torch

    count = torch.cuda.device_count()
    if count > 1:
        torch.cuda.set_device(job_num % count)
        log.info("job %d on cuda:%d (of %d GPUs)", job_num, job_num % count, count)


def _run_job(cfg: Any, run_dir: Path, multirun: bool) -> dict[str, Any] | None:
    """Train ``cfg`` into ``run_dir`` under its lock; record the outcome in the tally."""
    from normbench.engine.lock import RunLock, RunLockedError
    from normbench.engine.train import train
    from normbench.files import find_disk_error

    try:
        with RunLock(run_dir):
            try:
                summary = train(cfg, run_dir)
            except KeyboardInterrupt:  # a second Ctrl-C: no checkpoint, but say so on disk
                _mark(run_dir, "interrupted", "a second Ctrl-C; resumes from the last checkpoint")
                raise
            except Exception as err:
                err = find_disk_error(err, run_dir) or err
                ended = "diverged" if isinstance(err, DivergedError) else "failed"
                _mark(run_dir, ended, f"{type(err).__name__}: {err}")
                raise err from None
    except Exception as err:
        err = find_disk_error(err, run_dir) or err
        status = "diverged" if isinstance(err, DivergedError) else "failed"
        if isinstance(err, RunLockedError):
            status = "locked"
        _tally(status, run_dir)
        if isinstance(err, NormbenchError):
            log.error("error: %s", err)
        elif multirun:
            log.exception("run %s failed", run_dir)
        else:
            raise
        if not multirun:
            raise SystemExit(2) from None
        log.error("run %s %s; the sweep goes on", run_dir, status)
        return None
    _tally("at chance level" if summary.get("at_chance") else summary["status"], run_dir)
    return summary


def _mark(run_dir: Path, status: str, error: str) -> None:
    """Record in summary.json that the run ended early, unless it is complete (a later command
    that failed, e.g. on a damaged data file, does not undo finished results)."""
    from normbench.recorder import read_summary, write_json_atomic

    summary = read_summary(run_dir / "summary.json")
    if summary.get("status") == "complete" or summary.get("status") == status == "diverged":
        return  # a run found diverged again keeps the first divergence's message
    summary.update(status=status, error=error)
    try:
        write_json_atomic(run_dir / "summary.json", summary)
    except NormbenchError:
        pass  # the directory is not writable: the error itself says so


def _tally(status: str, run_dir: Path) -> None:
    """Append a job's outcome to the multirun's tally file (one short line, one write). A job
    of several processes (submitit tasks_per_node > 1) is counted once, by rank 0."""
    from normbench.engine.distributed import launched_rank

    path = os.environ.get(TALLY_ENV)
    if path and launched_rank() == 0:
        with open(path, "a") as f:
            f.write(f"{status}\t{run_dir}\n")


def _report_tally(lines: list[str], signum: int | None = None) -> int:
    """Print the multirun's one-line tally and each job that failed or ended at chance level;
    return 1 if any job failed. A multirun stopped by signal ``signum``: one line with the tally
    and how to resume; return 128 + signum."""
    outcomes = [line.split("\t", 1) for line in lines if "\t" in line]
    if signum is not None:
        from normbench.engine.signals import signal_name

        counts = Counter(s for s, _ in outcomes)
        parts = [
            f"{n} {status}" + (" (checkpointed)" if status == "interrupted" else "")
            for status, n in sorted(counts.items())
        ]
        jobs = f"{len(outcomes)} jobs: {', '.join(parts)}" if outcomes else "no job had started"
        print(
            f"multirun stopped by {signal_name(signum)}: {jobs}; run the same command to resume",
            file=sys.stderr,
        )
        return 128 + signum
    flagged = [(s, d) for s, d in outcomes if s == "at chance level"]
    counts = Counter("complete" if s == "at chance level" else s for s, _ in outcomes)
    bad = [(s, d) for s, d in outcomes if s not in ("complete", "stopped", "at chance level")]
    parts = [
        f"{n} {status}"
        + (f" ({len(flagged)} at chance level)" if status == "complete" and flagged else "")
        for status, n in sorted(counts.items())
    ]
    print(f"multirun: {len(outcomes)} jobs: {', '.join(parts)}", file=sys.stderr)
    for status, run_dir in bad + flagged:
        print(f"  {status}: {run_dir} (see its train.log and summary.json)", file=sys.stderr)
    return 1 if bad else 0


def _eval(argv: list[str]) -> int:
    from normbench.cli.eval import main as eval_main

    return eval_main(argv)


def _study(argv: list[str]) -> int:
    from normbench.cli.study import main as study_main

    return study_main(argv)


def _report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="normbench report",
        description=(
            "Collect run directories (searched recursively) and draw the study's figure, "
            "the CSV it plotted and a README table beside the paper's numbers."
        ),
    )
    parser.add_argument("dirs", nargs="+", help="run or sweep directories")
    parser.add_argument(
        "--out", default=None, help="output directory (default: <first DIR>/report)"
    )
    args = parser.parse_args(argv)
    from normbench.report.make import make_report

    make_report(args.dirs, args.out)
    return 0


def _data(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="normbench data",
        description=("List every dataset: whether and where it was found, and how to get it."),
    )
    parser.add_argument(
        "--root", default=None, help="data root to search (default: $NORMBENCH_DATA or ./data)"
    )
    parser.add_argument("--check", metavar="NAME", help="exit 0 if dataset NAME is found, 1 if not")
    parser.add_argument(
        "--download", metavar="NAME", help="download dataset NAME into --root (needs network)"
    )
    args = parser.parse_args(argv)
    from normbench.data.datasets import data_command

    return data_command(root=args.root, check=args.check, download_name=args.download)


def _bench(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: normbench bench {{{','.join(BENCHMARKS)}}} [options]", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[argv[0]])
    return module.main(argv[1:])


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train_command,
    "eval": _eval,
    "study": _study,
    "report": _report,
    "data": _data,
    "bench": _bench,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``normbench`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"normbench: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
        return 2
    from normbench.cli.quiet import quiet_banners
    from normbench.engine.signals import RunStopped

    quiet_banners()
    try:
        return COMMANDS[command](rest) or 0
    except NormbenchError as err:
        print(f"normbench {command}: error: {err}", file=sys.stderr)
        return 2
    except RunStopped as stop:
        return stop.exit_code
    except KeyboardInterrupt:
        print(
            f"normbench {command}: interrupted; a run resumes from its last checkpoint when "
            "the same command is run again",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
