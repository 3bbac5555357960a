"""Helpers for the backup tests: configurations, a tiny application schema, local S3."""
