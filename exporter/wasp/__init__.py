"""wasp: monitoring for a multi-tenant WhatsApp booking service on PostgreSQL."""

__version__ = "0.1.0"
