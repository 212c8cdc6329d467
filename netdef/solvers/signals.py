"""Caffe's signal effects: ``--sigint_effect`` / ``--sighup_effect`` (stop, snapshot, none).

The handler only records the signal; the solver asks for it once per iteration (and
once per test iteration) and acts between steps, so a snapshot is never taken half-way
through an update.  SIGTERM has the SIGINT effect, so a scheduler's polite stop ends a
run the way Ctrl-C does.
"""

import signal

from ..errors import UsageError
from ..log import logger

NONE, STOP, SNAPSHOT = "none", "stop", "snapshot"
EFFECTS = (STOP, SNAPSHOT, NONE)


class SignalHandler:
    """Context manager installing the handlers; calling it returns the next action."""

    def __init__(self, sigint_effect=STOP, sighup_effect=SNAPSHOT):
        for flag, value in (("sigint_effect", sigint_effect), ("sighup_effect", sighup_effect)):
            if value not in EFFECTS:
                raise UsageError(f"--{flag} must be one of {', '.join(EFFECTS)}, not {value!r}")
        self.effects = {signal.SIGINT: sigint_effect, signal.SIGTERM: sigint_effect}
        if hasattr(signal, "SIGHUP"):
            self.effects[signal.SIGHUP] = sighup_effect
        self.pending = []
        self._old = {}

    def __enter__(self):
        for sig in self.effects:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

    def _handle(self, signum, frame):
        self.pending.append(signum)

    def __call__(self):
        """NONE, STOP or SNAPSHOT: the effect of the oldest signal not yet acted on."""
        while self.pending:
            signum = self.pending.pop(0)
            effect = self.effects.get(signum, NONE)
            name = signal.Signals(signum).name
            if effect == NONE:
                logger.info("%s received: ignored (its effect is 'none')", name)
                continue
            logger.info("%s received: %s", name, "stopping" if effect == STOP else
                        "taking a snapshot")
            return effect
        return NONE
