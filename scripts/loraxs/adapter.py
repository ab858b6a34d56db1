"""The old import path of the adapter file code, kept for scripts not yet moved: use `loraxs.format`."""

from loraxs.format import *  # noqa: F403
from loraxs.format import __all__  # noqa: F401
