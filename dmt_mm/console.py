"""What the tools print: the project's own progress and results, not the deprecation
notices of the libraries underneath (each is about the library's own code, and a user can
do nothing about it).

:func:`quiet_third_party_warnings` filters Python warnings at a tool's entry point;
:class:`LibraryDeprecationFilter` drops the notices mmengine logs through its logger
(``"FileClient" will be deprecated ...``, emitted by its own CheckpointHook).
"""
import logging
import warnings

# (message regex, category) of third-party warnings that say nothing about the user's run
THIRD_PARTY_WARNINGS = (
    (r'pkg_resources is deprecated as an API', UserWarning),  # mmengine / mmcv imports
    (r'.*torch\.meshgrid: in an upcoming release', UserWarning),  # mmdet anchor code
)


def quiet_third_party_warnings():
    for message, category in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


class LibraryDeprecationFilter(logging.Filter):
    """Drop mmengine's logged deprecation notices about its own internals."""

    NOTICES = ('will be deprecated in future', 'is the alias of')

    def filter(self, record):
        message = record.getMessage()
        return not (record.levelno == logging.WARNING
                    and any(notice in message for notice in self.NOTICES))
