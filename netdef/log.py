"""Caffe-shaped log lines (glog's classic prefix) so existing log parsers keep working.

``I1123 12:00:00.123456  1234 solver.py:218] Iteration 100, loss = 0.31``
"""

import logging
import os
import sys
import time

logger = logging.getLogger("netdef")


class GlogFormatter(logging.Formatter):
    LETTERS = {logging.DEBUG: "I", logging.INFO: "I", logging.WARNING: "W",
               logging.ERROR: "E", logging.CRITICAL: "F"}

    def format(self, record):
        t = time.localtime(record.created)
        micro = int((record.created % 1) * 1e6)
        prefix = (f"{self.LETTERS.get(record.levelno, 'I')}{t.tm_mon:02d}{t.tm_mday:02d} "
                  f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{micro:06d} "
                  f"{os.getpid() % 100000:5d} {record.filename}:{record.lineno}] ")
        return prefix + record.getMessage()


def setup_logging(level=logging.INFO, stream=None):
    """Attach the glog-style handler once (the command line calls this)."""
    if any(getattr(h, "_netdef", False) for h in logger.handlers):
        logger.setLevel(level)
        return logger
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(GlogFormatter())
    handler._netdef = True
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger
