"""The stream processing: Faust-hosted stages around the pure core (hangwatch.streams.core)."""

if __name__ != "hangwatch.streams":  # the checkout root on sys.path would load a second copy
    raise ImportError(f"import hangwatch.streams, not {__name__} (the package lives in the hangwatch namespace)")
