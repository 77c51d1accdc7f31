"""The platform floor: settings, Kafka admin, logging, the one time parser, the native-build
check and the gc policy. Imports only hangwatch.schemas below it; streams, sinks, simulator and
the application import it."""
