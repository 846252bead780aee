"""One exception type per failure family; tasks turn them into one line and an exit code."""


class CerniqError(Exception):
    """Base of every error a user can act on. `exit_code` is what the CLI exits with."""

    exit_code = 1


class BadInput(CerniqError):
    """The command line, a setting or a secret is wrong; nothing was changed."""

    exit_code = 2


class LockHeld(CerniqError):
    """Another run holds the lock of this environment."""

    exit_code = 3


class StepFailed(CerniqError):
    """A procedure step failed; the message names the step and the state left behind."""

    exit_code = 1


class TestbedError(CerniqError):
    """The local testbed could not be built, reached or removed."""

    exit_code = 1


class Interrupted(CerniqError):
    """The user pressed Ctrl-C; the safety hooks ran."""

    exit_code = 130
