"""Credits: the `Ledger` door (interface), the double-entry ledger behind it (rules, store,
cache), the actor and its client, pricing and payments."""
