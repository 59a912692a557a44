"""The admin's hand in the background work: a dead job retried, audited with it (app/jobs
keeps the jobs; auditing who retried one is the admin pages' concern)."""

from app import audit, jobs
from app.db.unit_of_work import write_transaction


def retry(job_id: int) -> bool:
    """A dead job due again now; False where there is no dead job of that id."""
    with write_transaction():
        retried = jobs.retry_dead(job_id)
        if retried:
            audit.record("job_retried", {"job": job_id})
    return retried
