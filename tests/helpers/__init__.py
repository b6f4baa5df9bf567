"""What the tests share that is not a fixture: the ledger, a private PostgreSQL, the fuzz run's figures."""
