"""The one exception type the command turns into a single error line and exit status 1."""


class DumpError(Exception):
    """A failure the user can act on: bad input, missing interface, full disk.

    The message is printed as one line (``dumpfilter: <message>``); no traceback.
    """

    exit_code = 1
