"""The raw and quality schemas: migrations, partitions, roles and database access."""
