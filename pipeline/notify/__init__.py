"""Job notifications: a user's webhook (signed, retried with backoff) and email, told when a job
ends. `outbox` queues them in the transaction that ends the job and sends them after it;
`webhooks` checks the receiving address and signs and posts the body; `preferences` holds what
the user asked for and the record of every delivery."""
