"""Errors a user can act on: the CLI prints them on one line and exits with status 2."""

from __future__ import annotations


class MirrorlabError(Exception):
    """Base of every error caused by input (files, references, flags), not by a bug."""


class ConfigError(MirrorlabError):
    """A configuration file that containers/image (or OpenShift) would refuse."""
