"""The only asyncio/socket code: streams, STARTTLS and the exception boundary."""
