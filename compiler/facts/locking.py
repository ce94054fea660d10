"""The project write lock: how long a command waits for another writer before giving up."""

LOCK_WAIT_SECONDS = 30.0  # a rollout or build waits this long for another writer to finish
LOCK_WAIT_ENV = "VILMS_LOCK_WAIT"  # seconds, overrides LOCK_WAIT_SECONDS (0: do not wait)
LOCK_POLL_SECONDS = 0.05  # how often a waiting command tries the lock again
