"""The app's shared resources: the only `st.cache_resource` getters (one Workbench per process).

The Workbench is thread-safe (one DuckDB connection, a cursor per call), so every session of the
server shares it. Its settings come from the environment (`analyst/config.py`); `sleuth app --db
PATH` passes the path either as `SLEUTH_DB` or as `streamlit run app.py -- --db PATH`. With
`SLEUTH_STREAM` (`sleuth app --stream SOURCE`) the Workbench also streams new events from it.
"""
from __future__ import annotations

import argparse
import logging
import sys

import streamlit as st

from analyst.config import Settings
from analyst.service import Workbench

_LOG = logging.getLogger("sleuth.app")


def _argv_db(argv: list[str] | None = None) -> str | None:
    """`--db PATH` from the script arguments (those after `streamlit run app.py --`), if any."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.db


def settings() -> Settings:
    """This process's settings (environment, then `--db`)."""
    return Settings.from_env(db=_argv_db())


def _close(wb: Workbench) -> None:
    wb.close()


@st.cache_resource(show_spinner="Opening the case store...", on_release=_close)
def _workbench(key: str, _settings: Settings) -> Workbench:
    # `key` (the settings' repr) is what the cache hashes; `_settings` is passed through unhashed
    wb = Workbench(_settings)
    if _settings.stream:   # SLEUTH_STREAM: new events stream in on a thread of this (store-owning) process
        try:
            wb.start_stream(_settings.stream)
        except Exception as exc:   # the app still serves; the sidebar says why nothing streams
            _LOG.warning("the stream did not start: %s", wb.stream_error or exc)
    return wb


def workbench() -> Workbench:
    """The process-wide Workbench for the current settings (created on first use)."""
    s = settings()
    return _workbench(repr(s), s)
