"""Kafka to ClickHouse: backends, numbered migrations, the writer, queries, reconciliation."""

if __name__ != "hangwatch.sinks":  # the checkout root on sys.path would load a second copy
    raise ImportError(f"import hangwatch.sinks, not {__name__} (the package lives in the hangwatch namespace)")
