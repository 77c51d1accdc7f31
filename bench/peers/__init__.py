"""Peers the benchmark runs side by side with hangwatch on the same events."""
