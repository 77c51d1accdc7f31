"""hangwatch: streaming analytics for mortgage follow-up calls (房贷回访).

Floors, each importing only the ones below it (tests/test_layers.py checks it):
    hangwatch.schemas                                   the contract
    hangwatch.platform                                  settings, clients, logging, time parsing
    hangwatch.streams, hangwatch.sinks, hangwatch.simulator
    hangwatch.cli, hangwatch.grafana, hangwatch.report  the application
streams/, sinks/, schemas/ and simulator/ live at the top of the checkout (where users look for
them) and are linked into this package, so everything installs under one name."""
