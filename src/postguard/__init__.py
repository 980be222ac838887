"""postguard: a secure-by-default mail server and SMTP toolkit."""

__version__ = "0.1.0"
