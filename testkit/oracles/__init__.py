"""The batch oracles: plain, deliberately naive recomputations from the raw events (dedupe by
event_id, then count or walk the rules from scratch), the ground truth the stream's output is
compared with.

- rates: window cell counts (window_counts, oracle_counts).
- flags: the borrower flag transitions (oracle_flags, oracle_flag_records).
- alerts: the spike alert transitions (oracle_alerts, oracle_alerts_from_counts, oracle_window_counts).
"""
