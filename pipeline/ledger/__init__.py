"""Credits: the double-entry ledger (rules, store, cache), its actor and client, pricing and
payments."""
