"""Operations the Airflow DAGs run (dbt builds, validation, cleanup), importable without Airflow."""
