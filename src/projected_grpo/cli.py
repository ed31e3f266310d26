"""One CLI style for train, rewards and results.

An error is one line on stderr, `error: <what, naming the file, row or flag>`, and the exit status says whose
fault it was: 2 bad input (the user can fix the command), 1 a failure inside (the run itself went wrong),
130 an interrupt. Tracebacks are for bugs only (and go to the run's train.log when there is one).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


BAD_INPUT, FAILED, INTERRUPTED = 2, 1, 130


class Failure(RuntimeError):
    """Something went wrong inside a run, not in its input (exit 1)."""


class Interrupted(Exception):
    """A clean stop on SIGINT/SIGTERM; the message says where the run stopped and how to continue (exit 130)."""


def setup_logging() -> None:
    """Log lines as `LEVEL   message` on stderr (LOGLEVEL=DEBUG shows more), the same in every CLI."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("LOGLEVEL", "INFO"), format="<level>{level: <7}</level> {message}")


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn the exceptions a CLI expects into one line and its exit status."""
    try:
        yield
    except Interrupted as e:
        say(str(e))
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(INTERRUPTED)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        say(f"error: {e}")
        sys.exit(BAD_INPUT)
    except (Failure, OSError) as e:  # OSError here: the disk filled up, a file vanished mid-run, ...
        say(f"error: {e}")
        sys.exit(FAILED)


_BOX = str.maketrans("", "", "│╭╮╰╯─")


def parse_flags(parse, prog: str):
    """Run a tyro parser, turning its boxed message for a malformed flag (`--steps abc`, an unknown option) into
    the one-line form (ValueError -> `error: ...`, exit 2). Help and a successful parse are untouched."""
    import io
    from contextlib import redirect_stderr

    captured = io.StringIO()
    try:
        with redirect_stderr(captured):
            return parse()
    except SystemExit as e:
        text = captured.getvalue()
        if not e.code:  # --help: tyro printed it (to stdout); nothing to translate
            sys.stderr.write(text)
            raise
        # the box: a title line, the message (wrapped over lines), a ─── rule, the flag's help
        lines = [" ".join(line.translate(_BOX).split()) for line in text.splitlines()][1:]
        message = []
        for line in lines:
            if not line and message:
                break
            message += [line] if line else []
        what = " ".join(message) or "bad arguments"
        raise ValueError(f"{what} (see {prog} --help)") from None


def check_writable(directory: Path, what: str) -> None:
    """Create `directory` and write a probe file into it, so a read-only or full disk fails before any work."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"{what} {directory} is not writable ({e.strerror or e})") from None


class StopSignals:
    """SIGINT/SIGTERM. During the training steps the first one lets the current step finish; the loop then writes a
    checkpoint and stops (cli.Interrupted). A second one, or one during setup or the final eval, abandons the work
    at once (KeyboardInterrupt): the last checkpoint on disk is where a resume starts."""

    def __init__(self) -> None:
        self.requested = False
        self.during_steps = False
        self._previous: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # Python delivers signals to the main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.during_steps and not self.requested:
            self.requested = True
            from tqdm import tqdm  # above the progress bar

            tqdm.write(f"{signal.Signals(signum).name}: finishing this step, then a checkpoint (again: stop at once, losing it)")
            return
        raise KeyboardInterrupt
