"""The error type for bad input, and how the tools report it: one line naming the problem
and the fix, a non-zero exit status, and the traceback only with ``--debug``. Each
subclass keeps a built-in base (``ValueError``, ``OSError``, ...) so callers can catch it
the usual way."""
import sys


class UserError(Exception):
    """Bad input (a file, a config value, a data sample): the message names the problem
    and the fix; a traceback would only hide it."""


class ConfigError(UserError, ValueError):
    """A config value or ``--cfg-options`` key that cannot work."""


class DataError(UserError, ValueError):
    """A dataset file (image, annotation, label map) that cannot be used as it is."""


# built-in errors that always mean a wrong path or permission given by the user
_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def is_user_error(exc):
    """Bad input rather than a bug: our :class:`UserError` family (also when mmengine's
    builder re-raised it with the class name in front), a wrong path, or a type name that
    is not in a registry."""
    if isinstance(exc, (UserError,) + _PATH_ERRORS):
        return True
    return isinstance(exc, KeyError) and 'registry' in str(exc) and 'is not in the' in str(exc)


def user_error_message(exc):
    message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return str(message).strip()


def run_tool_main(main, argv=None):
    """Run a tool's ``main(argv)`` without third-party deprecation noise; report bad input
    as ``error: ...`` on stderr and exit with status 1, unless ``--debug`` is among the
    arguments (then raise as usual)."""
    from .console import quiet_third_party_warnings
    quiet_third_party_warnings()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = '--debug' in argv
    if debug:
        argv.remove('--debug')
    try:
        return main(argv)
    except Exception as exc:  # noqa: BLE001 -- re-raised unless it is bad input
        if debug or not is_user_error(exc):
            raise
        print(f'error: {user_error_message(exc)}\n(run again with --debug for the traceback)',
              file=sys.stderr, flush=True)
        sys.exit(1)
