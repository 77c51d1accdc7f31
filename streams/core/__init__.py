"""The pure stream core: rates, merge, flags and spike rules as plain functions over plain data.

Imports only itself, hangwatch.schemas, the standard library, orjson, msgspec and yaml
(tests/test_layers.py holds it to that). These modules may be compiled with mypyc
(hangwatch.platform.native); the worker refuses a compiled build that no longer matches its
source when it starts (hangwatch.streams.worker), not at import."""
