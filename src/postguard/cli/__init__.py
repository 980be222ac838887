"""Command-line interface: one module per subcommand, no business logic."""
