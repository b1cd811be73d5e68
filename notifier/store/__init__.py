"""Storage: the schema, the engine, migrations, and the only code that maps rows to domain values."""
