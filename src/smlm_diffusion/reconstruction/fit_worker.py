"""A helper process for the phi path's likelihood fits.

The batched fits (``analysis/scoring.py``) are many small numpy operations, and several of
them hold the GIL (LAPACK's batched solves, scipy's ``erf``, fancy indexing): in two
threads they run no faster than in one (docs/performance.md, "Reduced precision and a
helper process for the fits").
With two or more threads, the engine fits the second part of each chunk in this process
while its own thread fits the first. It is the same function on the same (pickled) inputs,
so the localizations are the same as without it.

The helper is a plain ``python -m smlm_diffusion.reconstruction.fit_worker`` child that
reads requests on its stdin and answers on its stdout (pickles over private pipes). It is
not started through ``multiprocessing``, whose ``spawn`` re-runs the user's main script in
the child. It is started once per process and kept; ``SMLM_DIFFUSION_FIT_PROCESS=0``
switches it off. If it cannot start or dies, the part is fitted in the calling thread.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading

#: a part needs at least this many candidates to be sent (below, the round trip and the
#: pickling, ~10 ms, outweigh the gain)
MIN_CANDIDATES = 200

_LOCK = threading.Lock()
_WORKER: subprocess.Popen | None = None
_FAILED = False


def enabled() -> bool:
    """Whether fits may go to the helper process (not in frozen apps, not when switched off)."""
    return os.environ.get("SMLM_DIFFUSION_FIT_PROCESS", "1") != "0" and not getattr(sys, "frozen", False)


def start() -> None:
    """Start the helper now (it imports for about a second), so that it is ready for the
    first chunk's fits."""
    with _LOCK:
        _running()


def _running() -> subprocess.Popen | None:
    global _WORKER, _FAILED
    if _WORKER is not None and _WORKER.poll() is None:
        return _WORKER
    if _FAILED or not enabled() or not sys.executable:
        return None
    # the child imports this package from where this process found it (a script may have
    # put a source folder on sys.path) and runs numpy on one thread
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    try:
        _WORKER = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
    except OSError:
        _FAILED = True
        return None
    return _WORKER


def refine_frames_in_helper(
    candidates, photons, background, psf_sigma_px: float, settings, decide_rows: bool = True
) -> list | None:
    """``refine.refine_frames`` of one part in the helper process; None when it is off,
    the part is small, or the helper failed (the caller then fits it itself)."""
    global _FAILED
    if sum(len(c) for c in candidates) < MIN_CANDIDATES:
        return None
    with _LOCK:
        worker = _running()
        if worker is None:
            return None
        try:
            pickle.dump(
                (candidates, photons, background, psf_sigma_px, settings, decide_rows),
                worker.stdin,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            worker.stdin.flush()
            return pickle.load(worker.stdout)
        except (OSError, EOFError, pickle.UnpicklingError):
            _FAILED = True  # a helper that died once is not restarted in this process
            worker.kill()
            return None


@atexit.register
def _stop() -> None:
    if _WORKER is not None and _WORKER.poll() is None:
        _WORKER.stdin.close()
        try:
            _WORKER.wait(timeout=2)
        except subprocess.TimeoutExpired:
            _WORKER.kill()


def _serve() -> None:
    """The helper's loop: a request on stdin, its localizations on stdout, until stdin closes."""
    requests, answers = sys.stdin.buffer, os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, never into the answers
    from .refine import refine_frames

    while True:
        try:
            job = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(refine_frames(*job), answers, protocol=pickle.HIGHEST_PROTOCOL)
        answers.flush()


if __name__ == "__main__":
    _serve()
