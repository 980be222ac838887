"""The server side: listeners, the connection pump, sessions, authentication, the app."""
