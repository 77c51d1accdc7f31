"""Contracts shared by every part of the pipeline: the CallOutcome event, the records the
stream emits, and the topic registry. Imports nothing of the project."""

if __name__ != "hangwatch.schemas":  # the checkout root on sys.path would load a second copy
    raise ImportError(f"import hangwatch.schemas, not {__name__} (the package lives in the hangwatch namespace)")
