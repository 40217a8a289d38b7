"""Accounts: mail, single-use email tokens (verification, password reset), account deletion."""
