"""For tests that stop a child with SIGINT, as a terminal's Ctrl-C does."""
from __future__ import annotations

import signal


def ctrl_c_reaches_it() -> None:
    """preexec_fn of such a child: SIGINT at its default, whatever the suite inherited. A suite
    started in the background (`make test &`, nohup, a CI runner's background job) has SIGINT
    ignored, Python keeps an inherited ignore, and the child would never see the test's Ctrl-C:
    it trained on (the test's hang guard then failed it) or, in extract, held the test forever."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
