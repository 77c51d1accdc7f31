"""Contracts shared by every part of the pipeline: the CallOutcome event, the records the
stream emits, and the topic registry. Imports nothing of the project."""
