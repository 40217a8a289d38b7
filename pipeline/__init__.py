"""The studio's domains, side by side: `render` (spec to film), `jobs` (submission, running,
scheduling), `ledger` (credits, pricing, payments), `publish` (Google and YouTube), `accounts`
(mail, email tokens, deletion), `lifecycle` (the job state machine); beside them, `storage` and
the domain errors."""
