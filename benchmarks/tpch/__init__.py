"""TPC-H: data generation, loading into lakehouse tables, and the 22 queries."""
