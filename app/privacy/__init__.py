"""Keeping personal data only as long as allowed: retention by age, and erasure on request.

- settings: the days to keep messages and audit events (an admin's, else the environment's),
  and when the last purge finished.
- purge: deleting what is older than those days, in batches; and the daily periodic job
  (`daily_purge`, registered on import) that runs it, one process at a time.
- erasure: deleting one conversation and everything about its number on request, what the
  audit trail and the dead letters held about the person included.
- scrubbing: SQLite's files keep no copy of what a purge or an erasure deleted.
- cascade: rows of other tables that go along with a deleted conversation or message.
"""
