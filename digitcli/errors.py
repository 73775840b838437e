"""Exceptions raised by the digitcli core.

The core never prints and never exits: it raises one of these, and the command line turns
them into a one-line message with the right exit code.
"""

from __future__ import annotations


class DigitcliError(Exception):
    """Base class of every error digitcli raises on purpose."""


class ModelError(DigitcliError):
    """A model file is missing, unreadable, corrupt or of an unsupported format."""


class ImageError(DigitcliError):
    """An image file cannot be turned into Digits features (one row's error, not the run's)."""


class DataError(DigitcliError):
    """A data file (for instance an optdigits CSV) or a labelled folder is malformed."""
