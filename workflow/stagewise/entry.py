"""The one entry every rule's script calls: plain dicts in, the log file as stdout/stderr, clean errors."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from typing import Any

from .errors import StagewiseError

Step = Callable[[dict, dict, dict], None]


def run_step(step: Step, smk: Any) -> None:
    """Call `step(inputs, outputs, params)` with the rule's named files and params; log to `log[0]`."""
    import torch

    torch.set_num_threads(max(1, int(smk.threads)))
    inputs, outputs, params = (dict(named.items()) for named in (smk.input, smk.output, smk.params))
    terminal = logging.StreamHandler(sys.__stderr__)  # what a step says to the user beyond its log (check warnings)
    terminal.setFormatter(logging.Formatter("stagewise %(levelname)s: %(message)s"))
    logging.getLogger("stagewise").addHandler(terminal)
    with open(smk.log[0], "w") as log, redirect_stdout(log), redirect_stderr(log):
        try:
            step(inputs, outputs, params)
        except StagewiseError as error:
            print(f"stagewise error: {error}", file=log)
            print(f"stagewise error: {error}", file=sys.__stderr__)
            sys.exit(1)
        except (
            Exception
        ) as error:  # a bug in user code, user data or stagewise: one paragraph here, the traceback in the log
            traceback.print_exc(file=log)
            print(
                f"stagewise error: unexpected {type(error).__name__} in rule {smk.rule}: {error}\n"
                f"  the traceback is in {smk.log[0]}",
                file=sys.__stderr__,
            )
            sys.exit(1)
