"""Statistics for the risk team's questions (issue 16): did a change work, is a difference real,
when to call. Pure functions over counts; floor 1, beside the platform: it imports only the
standard library, so the rooms and the application can all use it."""
