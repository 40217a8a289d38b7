"""Jobs: submission, running, the scheduler, the job state machine and moderation."""
