"""Where a run starts: from its checkpoint (``trainer.resume=auto``) or over from step 0.

The checkpoint (``<run>/ckpt/last.pt``, see :mod:`normbench.engine.checkpoint`) holds the
trainer's whole state; loading it refuses another process count or another configuration
(:func:`~normbench.engine.checkpoint.check_resumable`). Under torchrun rank 0 decides (it may
remove the checkpoint) and the other ranks load the same file. A run whose summary.json says
it diverged is not trained again with ``trainer.resume=auto`` (one process): it would diverge
again; the error says so and ``trainer.resume=never`` starts it over.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from normbench.engine.checkpoint import load_checkpoint
from normbench.errors import DivergedError
from normbench.recorder import Recorder, read_summary

if TYPE_CHECKING:
    from normbench.engine.train import Trainer

log = logging.getLogger("normbench")


def restore(trainer: Trainer) -> int | None:
    """Load ``trainer``'s checkpoint or start over; say which. Returns the step resumed from,
    or None for a start from step 0."""
    dist = trainer.dist
    if not dist.enabled:
        return _restore_main(trainer)
    resumed = _restore_main(trainer) if dist.is_main else None
    dist.barrier()  # rank 0 has read (or removed) the checkpoint
    resumed = dist.broadcast_object(resumed)
    if resumed is not None and not dist.is_main:
        trainer.load_state_dict(load_checkpoint(trainer.ckpt_path, trainer.device))
    return resumed


def _restore_main(trainer: Trainer) -> int | None:
    resumed = _restore_checkpoint(trainer)
    if trainer.tcfg.resume == "auto" and not trainer.dist.enabled:
        previous = read_summary(trainer.run_dir / "summary.json")
        if previous.get("status") == "diverged":
            # The same configuration from the same checkpoint diverges again: say so at once.
            raise DivergedError(
                f"{trainer.run_dir} diverged before ({previous.get('error', 'see its summary.json')}"
                "); training it again from its checkpoint would repeat that. Its outcome is "
                "recorded; trainer.resume=never trains it over from step 0."
            )
    return resumed


def _restore_checkpoint(trainer: Trainer) -> int | None:
    path, run_dir = trainer.ckpt_path, trainer.run_dir
    if trainer.tcfg.resume == "never" and path.exists():
        # First the checkpoint: a kill while the old files are cleared then starts over again.
        path.unlink()
        log.info("trainer.resume=never: starting %s over from step 0", run_dir)
        return None
    if not path.exists():
        earlier = (run_dir / "metrics.csv").exists()
        log.info(
            "no checkpoint in %s: starting from step 0%s",
            run_dir,
            " (an earlier attempt stopped before its first checkpoint)" if earlier else "",
        )
        return None
    saved = datetime.fromtimestamp(path.stat().st_mtime).strftime("%Y-%m-%d %H:%M:%S")
    trainer.load_state_dict(load_checkpoint(path, trainer.device))
    log.info("resuming %s from its checkpoint at step %d (saved %s)", run_dir, trainer.step, saved)
    return trainer.step


def finished_already(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint is at the last step. A complete summary is left alone; otherwise the run
    was stopped between its final checkpoint and its summary: complete it now."""
    run_dir, step = trainer.run_dir, trainer.step
    previous = read_summary(run_dir / "summary.json")
    if not trainer.dist.is_main:
        return previous
    if previous.get("status") == "complete":
        log.info(
            "%s is already complete (%d steps); trainer.resume=never trains it again", run_dir, step
        )
        return previous
    trainer.recorder = Recorder(run_dir, trainer.cfg.logging.tensorboard, step)
    log.info(
        "%s: training had finished (step %d) but its summary was not written; completing it",
        run_dir,
        step,
    )
    return trainer.finish("complete")
