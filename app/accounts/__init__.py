"""Accounts: who may log in, and how. `passwords` hashes and checks passwords (Argon2, on a
bounded pool of threads); `users` adds users, sets roles, disables them and issues set-password
links; `sessions` keeps one row per login; `throttle` checks passwords and two-factor codes under
login throttling, with device cookies; `two_factor` holds TOTP and backup codes; `routes` the pages.
"""
