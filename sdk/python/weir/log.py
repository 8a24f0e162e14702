"""Log lines into weir's structured logs, tagged with processor, topic and partition."""

from weir._host import log as _host

_Level = _host.Level


def trace(message):
    _host.log(_Level.TRACE, str(message))


def debug(message):
    _host.log(_Level.DEBUG, str(message))


def info(message):
    _host.log(_Level.INFO, str(message))


def warn(message):
    _host.log(_Level.WARN, str(message))


def error(message):
    """An error line; weir shows the last one with the trap or error it explains."""
    _host.log(_Level.ERROR, str(message))
