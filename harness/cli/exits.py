"""What each exit status means: the table the generated reference prints
(docs/reference/exit-status.md). The statuses themselves are returned by the commands."""

from __future__ import annotations

# Every command.
COMMON: dict[int, str] = {
    0: "Done. For `run`, also when some configs failed: a failure is a record with a status.",
    2: "Usage error: bad input named in one line on stderr; no file was created or changed.",
    130: "Interrupted (Ctrl-C, or SIGTERM from CI); what was recorded before is kept.",
}

# Statuses with a command's own meaning.
BY_COMMAND: dict[str, dict[int, str]] = {
    "compare": {1: "a regression (speed, memory, accuracy or status)",
                3: "no regression, but a verdict is inconclusive and may hide one "
                   "(`--allow-inconclusive` makes it 0)"},
    "ab": {1: "a confirmed regression", 3: "inconclusive, as for `compare`"},
    "baseline check": {1: "a confirmed regression", 3: "inconclusive, as for `compare`"},
    "bisect": {0: "the first bad commit was found and confirmed",
               3: "BAD is not a regression against GOOD, or the answer was not confirmed"},
    "verify": {1: "a config does not reproduce"},
    "backfill": {1: "some commit could not run the suite (the others' records are kept)"},
    "fleet": {1: "a job ended without recording some configs (they are recorded as crashed or "
                 "timeout, with Slurm's reason)"},
    "history": {0: "always, when the files could be read: history is a view, the gate is "
                   "`ab` / `compare`"},
}
