"""Celery tasks: they take ids and call services/agent, nothing else."""
