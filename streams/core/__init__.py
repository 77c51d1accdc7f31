"""The pure stream core: rates, merge, flags and spike rules as plain functions over plain data.

These modules may be compiled with mypyc (hangwatch.native); a compiled build that no longer
matches its source must not run, so importing the package checks it first."""

from hangwatch.native import verify_core

verify_core()
